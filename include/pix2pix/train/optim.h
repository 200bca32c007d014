// Optimisation: a fused single-pass Adam that is bitwise equal to torch.optim.Adam (about 2x
// faster here: one pass over memory instead of five), and the learning-rate schedules of the
// reference (linear decay, step, cosine, plateau). To add a schedule: extend LrPolicy and
// LrSchedule::factor.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "pix2pix/io/pytorch_import.h"
#include "pix2pix/names.h"

namespace pix2pix {

/// Adam's hyper-parameters; defaults are the paper's (lr 2e-4, betas 0.5 and 0.999).
struct AdamOptions {
  double lr = 2e-4;
  double beta1 = 0.5;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  ///< L2 penalty added to the gradient, as torch.optim.Adam
  /// CPU parameters: the fused one-pass update (bitwise equal to torch.optim.Adam, about 2x
  /// faster). false: torch's tensor operations, the form every other device uses (the same
  /// numbers, which tests check on the CPU).
  bool fused = true;
};

/// Adam over a fixed list of float32 parameters, all on one device (CPU: the fused update; a GPU:
/// torch's tensor operations, AdamOptions::fused). A parameter whose gradient is undefined is
/// skipped (its step count does not advance), as torch does. Gradients may be float32 or
/// bfloat16 (bf16 training leaves its convolution weights' gradients in bfloat16, see
/// compute.h); a bfloat16 gradient is widened exactly, element by element, inside the update.
class Adam {
 public:
  Adam(std::vector<at::Tensor> parameters, AdamOptions options = {});

  /// One update of every parameter that has a gradient.
  void step();
  /// Resets gradients to undefined (torch's set_to_none): no memory traffic, and the next
  /// backward writes instead of accumulating.
  void zero_grad();
  /// True when every gradient is finite (no inf or NaN): the non-finite guard's check. On a GPU
  /// one host synchronisation for all of them.
  bool gradients_finite() const;
  /// Registers `copy`, a contiguous bfloat16 tensor of `parameter`'s shape (bf16 training's
  /// working copy of a convolution weight, see compute.h), to be rewritten by every step with
  /// the updated parameter rounded to bfloat16, in the same pass as the update; its version is
  /// bumped with the parameter's. Throws pix2pix::Error if `parameter` is not one of this
  /// optimiser's or `copy` does not fit.
  void set_bfloat16_copy(const at::Tensor& parameter, at::Tensor copy);

  double lr() const { return options_.lr; }
  void set_lr(double lr) { options_.lr = lr; }
  const AdamOptions& options() const { return options_; }

  /// The moments and step counts, for checkpoints: keys "<i>.exp_avg", "<i>.exp_avg_sq",
  /// "<i>.step" for parameter i (those never stepped are absent); CPU tensors on every device.
  StateDict state() const;
  /// Restores state() output onto the parameters' device; throws pix2pix::Error (naming `source`)
  /// on a shape mismatch.
  void load_state(const StateDict& state, const std::string& source);

 private:
  struct ParamState {
    at::Tensor exp_avg, exp_avg_sq;
    int64_t step = 0;
    at::Tensor bf16_copy;  ///< set_bfloat16_copy's tensor, or undefined
  };
  void fused_update(at::Tensor& p, const at::Tensor& grad, ParamState& state) const;
  void tensor_update(at::Tensor& p, const at::Tensor& grad, ParamState& state) const;
  std::vector<at::Tensor> parameters_;
  std::vector<ParamState> states_;
  AdamOptions options_;
};

/// The reference's --lr_policy.
enum class LrPolicy {
  kLinear,   ///< constant for n_epochs, then linear decay over n_epochs_decay (the paper's)
  kStep,     ///< times gamma every lr_decay_epochs
  kCosine,   ///< cosine annealing to 0 over the whole run
  kPlateau,  ///< times plateau_factor when the watched metric stops improving
};
/// The learning-rate policies' names (names.h).
template <>
const std::vector<std::string>& names<LrPolicy>();

LrPolicy parse_lr_policy(const std::string& name);
std::string to_string(LrPolicy policy);

/// Schedule settings; defaults are the paper's 100 + 100 epochs.
struct ScheduleOptions {
  LrPolicy policy = LrPolicy::kLinear;
  int64_t n_epochs = 100;           ///< epochs at the initial rate
  int64_t n_epochs_decay = 100;     ///< epochs of linear decay after them
  int64_t epoch_count = 1;          ///< the reference's --epoch_count: number of the first epoch
  int64_t lr_decay_epochs = 50;     ///< step policy: epochs between decays
  double gamma = 0.1;               ///< step policy: factor per decay
  double plateau_factor = 0.2;      ///< plateau: factor per reduction (the reference's)
  double plateau_threshold = 0.01;  ///< plateau: relative improvement that counts
  int64_t plateau_patience = 5;     ///< plateau: epochs without improvement before reducing
};

/// Learning-rate factor per epoch, stepped once per epoch like the reference's schedulers.
class LrSchedule {
 public:
  explicit LrSchedule(ScheduleOptions options = {});

  /// The factor (multiplying the initial lr) for training epoch `epoch`, counted from
  /// epoch_count (1 in a fresh run). For plateau: the factor reached so far.
  double factor(int64_t epoch) const;
  /// Plateau only: reports the epoch's validation metric (lower is better, e.g. L1).
  void observe(double metric);

  const ScheduleOptions& options() const { return options_; }
  /// Plateau state for checkpoints: {best, bad_epochs, factor}.
  std::vector<double> state() const { return {best_, double(bad_epochs_), plateau_factor_}; }
  void load_state(const std::vector<double>& state);

 private:
  ScheduleOptions options_;
  double best_;
  int64_t bad_epochs_ = 0;
  double plateau_factor_ = 1.0;
};

}  // namespace pix2pix
