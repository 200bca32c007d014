// Process-wide tuning for speed: the allocator (tune_allocator) and intra-op threads that follow
// the machine's load. Threads that wait for each other at every parallel region collapse when
// other processes share the cores (one of ours descheduled holds up the rest): measured on 2
// cores beside 2 busy processes, 1.8 s per step on 2 threads against 0.45 s on 1
// (docs/cpus.md). Adaptive threads are off by default in the library; the CLI turns them on
// unless --threads is given.
#pragma once

namespace pix2pix {

/// Keeps freed memory in the process (glibc malloc: no mmap for blocks under 1 GB, no trimming)
/// instead of returning large activation buffers to the OS after every step and faulting them
/// in again: measured ~0.55 s per training step instead of ~1.8 s (docs/design.md, "Measured
/// facts"). Process-wide and idempotent; train() and the CLI call it, other programs may. No-op
/// without glibc.
void tune_allocator();

/// Makes every thread allocate from glibc's main heap (M_ARENA_MAX 1). Threads other than the
/// main one otherwise get arenas of at most 64 MB, where tune_allocator's thresholds cannot keep
/// a network's activations: the server's connection threads translated 2.4x slower than the main
/// thread (docs/serve.md). Call before starting such threads. No-op without glibc.
void share_main_heap();

/// Adapts the intra-op thread count (at::set_num_threads) between 1 and max_threads to the
/// cores that other processes leave free, measured from /proc between steps; 0 turns it off
/// (the thread count then stays as set). Process-wide, like at::set_num_threads.
void set_adaptive_threads(int max_threads);

/// Called between steps by train() and the benchmarks: at most once a second, measures the CPU
/// time other processes took since the last call and sets the thread count to the cores left
/// (at least 1). Does nothing when adaptive threads are off or /proc cannot be read.
void adapt_threads();

}  // namespace pix2pix
