// A run's checkpoints (RUN/checkpoints/): the networks' weights as PyTorch state_dicts
// (<prefix>_net_G.pth, <prefix>_net_D.pth) and latest_state.pt, one atomic file with everything
// a --resume needs to continue exactly: the weights again, the optimisers' moments, where the
// run is, both random generators, the schedule and the options the run started with.
#pragma once

#include <cstdint>
#include <string>

#include "pix2pix/train/optim.h"
#include "pix2pix/train/run_directory.h"
#include "pix2pix/train/step.h"

namespace pix2pix {

struct TrainOptions;

/// Where a run is.
struct RunPosition {
  int64_t epoch = 1;          ///< the epoch to work on next (or on, when mid-epoch)
  int64_t epoch_samples = 0;  ///< samples of that epoch's order consumed by all ranks together
  int64_t global_step = 0;    ///< optimiser steps done
  double best_val_l1 = 0;     ///< the best validation L1 so far (infinity: none yet)
};

/// Writes a run's checkpoints. On ranks other than 0 (`writer` false) it writes nothing.
class Checkpointer {
 public:
  /// `options_json`: the run's options (options_to_json), stored in the state; `batch_size`:
  /// per rank (the state's epoch_step, for older readers).
  Checkpointer(RunDirectory run, std::string options_json, int64_t batch_size, bool writer);

  /// <prefix>_net_G.pth (and _net_D.pth). Refuses (Error naming the file) weights that are not
  /// finite: the non-finite guard skips such updates, and this is the proof.
  void save_weights(const std::string& prefix, Pix2PixStep& model) const;
  /// latest_net_*.pth and latest_state.pt.
  void save_state(Pix2PixStep& model, const LrSchedule& schedule,
                  const RunPosition& position) const;

 private:
  RunDirectory run_;
  std::string options_json_;
  int64_t batch_size_;
  bool writer_;
};

/// Restores RUN/checkpoints/latest_state.pt into `model` and `schedule` (weights, moments,
/// torch's default generator and the penalty generator) after checking that `options` may
/// continue the run: only options that steer logging, speed or the run's length may differ from
/// those the run started with. Returns where the run is. Throws Error naming the file or the run
/// for a missing or incomplete state, or naming the options that differ.
RunPosition restore_checkpoint(const RunDirectory& run, const TrainOptions& options,
                               Pix2PixStep& model, LrSchedule& schedule);

}  // namespace pix2pix
