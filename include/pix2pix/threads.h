// Intra-op threads that follow the machine's load. Threads that wait for each other at every
// parallel region collapse when other processes share the cores (one of ours descheduled holds
// up the rest): measured on 2 cores beside 2 busy processes, 1.8 s per step on 2 threads against
// 0.45 s on 1 (docs/cpus.md). Off by default in the library; the CLI turns it on unless
// --threads is given.
#pragma once

namespace pix2pix {

/// Adapts the intra-op thread count (at::set_num_threads) between 1 and max_threads to the
/// cores that other processes leave free, measured from /proc between steps; 0 turns it off
/// (the thread count then stays as set). Process-wide, like at::set_num_threads.
void set_adaptive_threads(int max_threads);

/// Called between steps by train() and the benchmarks: at most once a second, measures the CPU
/// time other processes took since the last call and sets the thread count to the cores left
/// (at least 1). Does nothing when adaptive threads are off or /proc cannot be read.
void adapt_threads();

}  // namespace pix2pix
