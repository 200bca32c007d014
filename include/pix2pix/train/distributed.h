// Data-parallel training across processes: who this process is (rank, world size, rendezvous
// address, from torchrun/SLURM-style environment variables) and a Communicator, the few
// collectives training needs (broadcast, all-reduce, barrier) over libtorch's c10d Gloo process
// group. The c10d headers (which differ between libtorch versions and need libgloo-dev) stay in
// src/train/distributed.cpp; to support another backend or libtorch version, change only that file.
//
// Every collective is blocking and must be called by every rank in the same order. A peer that
// dies or stops answering makes the call throw pix2pix::Error ("distributed: rank R: ...",
// ErrorKind::kRuntime) within the timeout, instead of hanging.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace pix2pix {

/// Where this process sits in a data-parallel job.
struct DistributedOptions {
  int rank = 0;        ///< this process, 0..world_size-1 (RANK)
  int local_rank = 0;  ///< this process on its machine (LOCAL_RANK; selects a GPU, unused on CPU)
  int world_size = 1;  ///< processes in the job (WORLD_SIZE); 1: not distributed
  std::string master_addr = "127.0.0.1";  ///< rank 0's host, where the TCPStore listens
  int master_port = 29500;                ///< the TCPStore's port (MASTER_PORT)
  /// "gloo" (CPU) or "nccl" (CUDA; not available in a CPU-only libtorch: connect() says so).
  std::string backend = "gloo";
  /// Seconds a rendezvous or collective may wait for the other ranks before failing.
  double timeout_seconds = 300;
};

/// DistributedOptions from the environment: RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and
/// MASTER_PORT (torchrun, `pix2pix launch`), falling back to SLURM_PROCID, SLURM_LOCALID and
/// SLURM_NTASKS under srun. Unset: a single process. Throws pix2pix::Error naming a variable
/// whose value is not a number or out of range.
DistributedOptions distributed_from_environment();

/// A connected group of ranks and its collectives. Tensors are CPU tensors; they are changed in
/// place. Not thread-safe: one thread per process calls it (tests may run one Communicator per
/// thread).
class Communicator {
 public:
  /// Rendezvous through a TCPStore at master_addr:master_port (rank 0 serves it) and a Gloo
  /// process group on top. Blocks until all world_size ranks have joined or the timeout passes.
  /// Throws pix2pix::Error for an unknown or unavailable backend (nccl here) or a failed
  /// rendezvous.
  static std::shared_ptr<Communicator> connect(const DistributedOptions& options);
  /// The same over a FileStore at `path` (a file every rank can reach, e.g. for tests running
  /// ranks as threads of one process).
  static std::shared_ptr<Communicator> connect_file(const std::string& path, int rank,
                                                    int world_size, double timeout_seconds);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const;
  int world_size() const;

  /// Copies rank `root`'s tensors into every rank's tensors (same shapes and types everywhere).
  void broadcast(const std::vector<at::Tensor>& tensors, int root = 0);
  /// Sums the tensors element-wise across ranks, in place. Tensors are packed into flat buffers
  /// of at most `bucket_bytes` per dtype, so that many small tensors cost a few collectives.
  void all_reduce_sum(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes = 32 << 20);
  /// all_reduce_sum, then divided by world_size (gradient averaging).
  void all_reduce_mean(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes = 32 << 20);
  /// The largest value of `value` over the ranks (agreeing on a flag or a count).
  double all_reduce_max(double value);
  /// Returns when every rank has called it.
  void barrier();

 private:
  struct State;
  explicit Communicator(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace pix2pix
