// Batches for training: a Loader shuffles a Dataset once per epoch, decodes and transforms its
// samples on worker threads and hands out batches in order through a bounded prefetch queue.
//
// Determinism: the shuffle comes from (seed, epoch) and each sample's transform params from
// (seed, epoch, position in the epoch), all on a private generator (SplitMix64), so the batches
// of an epoch are bitwise the same whatever the number of workers and their timing, and torch's
// global generator (used by dropout and initialisation) is never drawn from.
//
// Threads: each worker runs ATen ops (resize, stack) single-threaded, by OpenMP's per-thread
// setting; at::set_num_threads is process-wide and is left alone (see loader.cpp). Throughput on
// the 2-core machine: `pix2pix bench loader` (cmd_bench_loader.cpp has the numbers).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pix2pix/data/dataset.h"
#include "pix2pix/data/transforms.h"

namespace pix2pix {

/// How a Loader batches, shuffles and prefetches.
struct LoaderOptions {
  int64_t batch_size = 1;  ///< samples per batch (the reference's default is 1)
  /// Worker threads decoding and transforming; 0 does the work inside next() on the caller.
  int workers = 2;
  int prefetch = 4;     ///< batches prepared ahead of the consumer (at least 1)
  bool shuffle = true;  ///< new order every epoch (false: dataset order)
  /// Keep every decoded Sample in memory after its first load (decode each file once). The
  /// transforms still run every time (their params change per epoch).
  bool cache = false;
  uint64_t seed = 0;       ///< seeds the shuffles and the transform params
  bool drop_last = false;  ///< drop the last batch when it is smaller than batch_size
  /// Data parallelism: this process's share of each epoch. Batch k of the epoch is the
  /// rank-th slice of batch_size samples of the global batch k of world_size * batch_size
  /// samples in the epoch's order, so that the ranks' batches together are, sample for sample
  /// (transform params included), one process's batch of world_size * batch_size. With
  /// world_size > 1 an incomplete last global batch is dropped (every rank takes the same
  /// number of steps).
  int rank = 0;
  int world_size = 1;  ///< ranks sharing the epoch (1: all of it)
};

/// One batch, in the epoch's order.
struct Batch {
  at::Tensor input;   ///< N x C_in x H x W float32 in [-1, 1]
  at::Tensor target;  ///< N x C_out x H x W float32 in [-1, 1]; undefined for single-image data
  std::vector<std::string> names;  ///< the samples' names (file stems), N of them
  std::vector<size_t> indices;     ///< the samples' indices in the Dataset, N of them
};

/// The seed of the sample at `position` of `epoch`'s order: its transform params are
/// draw_transform_params(options, width, height, sample_seed(seed, epoch, position)).
uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t position);

/// The order in which `epoch` visits `size` samples: a permutation from (seed, epoch) with
/// shuffle, else 0..size-1.
std::vector<size_t> epoch_order(size_t size, uint64_t seed, int64_t epoch, bool shuffle);

/// A dataset entry that cannot be loaded, and why.
struct BadEntry {
  size_t index = 0;     ///< position in the Dataset
  std::string message;  ///< "<path>: <reason>", as the Loader's error would say it
};

/// The up-front scan before training: every entry whose file headers show that loading it would
/// fail (Dataset::probe: unreadable or corrupt header, too many pixels, odd-width aligned image,
/// A/B size mismatch) or that is smaller than the crop after resizing (check_fits). Headers only,
/// no pixels decoded, so files corrupt further in are found only when loaded. In dataset order.
std::vector<BadEntry> scan_entries(const Dataset& dataset, const TransformOptions& transform);

/// Threaded, deterministic batch loader over a Dataset.
///
///     Loader loader(dataset, transform_options, loader_options);
///     for (int64_t epoch = 0; epoch < n; ++epoch) {
///       loader.start_epoch(epoch);
///       while (auto batch = loader.next()) train(batch->input, batch->target);
///     }
///
/// Errors (a bad file, an image smaller than the crop, samples of different sizes in a batch) are
/// rethrown by next() as the worker saw them, at the position of the batch that failed:
/// pix2pix::Error naming the file. That batch is skipped; the next call goes on with the
/// following one. Destroying a Loader mid-epoch stops and joins the workers (each finishes at
/// most the sample it is transforming).
class Loader {
 public:
  /// Throws pix2pix::Error for invalid options (batch_size, workers, prefetch, transforms).
  Loader(std::shared_ptr<const Dataset> dataset, TransformOptions transform,
         LoaderOptions options = {});
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  /// Starts (or restarts) `epoch`: a fresh order; batches prepared for an earlier epoch are
  /// dropped. next() without a start_epoch starts epoch 0. `first_position` skips that many
  /// samples of the epoch's order (all ranks' together: a resume mid-epoch, whatever the world
  /// size before); batches then start there.
  void start_epoch(int64_t epoch, int64_t first_position = 0);

  /// The next batch of the current epoch, or nullopt when the epoch is over. Blocks until the
  /// batch is ready. Not thread-safe: one consumer.
  std::optional<Batch> next();

  /// Batches in one epoch: ceil(size / batch_size), or floor with drop_last; with world_size > 1,
  /// floor(size / (world_size * batch_size)).
  int64_t batches_per_epoch() const;
  /// Samples in the dataset.
  size_t size() const;
  /// The current epoch (-1 before the first start_epoch).
  int64_t epoch() const;
  /// The current epoch's order (dataset indices), empty before the first start_epoch.
  std::vector<size_t> order() const;

  const TransformOptions& transform_options() const;
  const LoaderOptions& options() const;
  const Dataset& dataset() const;

 private:
  void stop_workers();

  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace pix2pix
