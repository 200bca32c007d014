// The pix2pix training step: a discriminator update, then a generator update with the
// discriminator frozen, over a generator, a discriminator and their Adam optimisers, with a guard
// that undoes a step whose numbers are not finite. The step uses the reference's operations in
// the reference's order, so that from the same weights, inputs and seed it produces the
// reference's weights bit for bit. The trainer (trainer.h) runs it over epochs.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <utility>
#include <vector>

#include "pix2pix/models/discriminator.h"
#include "pix2pix/models/generator.h"
#include "pix2pix/train/distributed.h"
#include "pix2pix/train/losses.h"
#include "pix2pix/train/optim.h"

namespace pix2pix {

/// The objective. Defaults are the paper's: vanilla GAN + 100 * L1, conditional D.
struct ObjectiveOptions {
  GanMode gan_mode = GanMode::kVanilla;
  double lambda_l1 = 100.0;  ///< weight of the L1 term in G's loss
  /// Weight of the WGAN-GP gradient penalty in D's loss (0: none). Usable with any GAN mode.
  double lambda_gp = 0.0;
  bool no_gan = false;           ///< ablation: L1 only, no discriminator updates
  bool unconditional_d = false;  ///< ablation: D sees only the (real or fake) output, not the input
};

/// Losses and D accuracies of one step (host doubles, for logging).
struct StepStats {
  double g_gan = 0, g_l1 = 0;                       ///< G's GAN term and its (unweighted) L1
  double d_real = 0, d_fake = 0;                    ///< D's loss on real and on fake pairs
  double gradient_penalty = 0;                      ///< weighted, 0 when off
  double d_accuracy_real = 0, d_accuracy_fake = 0;  ///< fractions of patches classified right
  /// The non-finite guard: a loss or gradient was inf or NaN, so that network's update was
  /// skipped (weights, optimiser moments and batch-norm statistics are as before the step).
  bool skipped_d = false, skipped_g = false;
};

/// A generator, a discriminator, their optimisers and the objective: one training step at a time.
class Pix2PixStep {
 public:
  /// `discriminator` may be null when objective.no_gan. The optimisers' learning rates come from
  /// `adam_g` and `adam_d` (the trainer sets D's to lr * lr_d_ratio).
  Pix2PixStep(std::shared_ptr<Generator> generator, std::shared_ptr<Discriminator> discriminator,
              ObjectiveOptions objective, AdamOptions adam_g, AdamOptions adam_d,
              uint64_t penalty_seed = 0);

  /// One step on a batch: real_a is G's input, real_b its target (N x C x H x W in [-1, 1]).
  /// Models are put in train mode. A network whose loss or gradients are not finite is not
  /// updated (StepStats::skipped_d / skipped_g). Draws random numbers only through dropout (torch's
  /// default generator) and the gradient penalty's own generator.
  StepStats step(const at::Tensor& real_a, const at::Tensor& real_b);
  /// One step accumulated over micro-batches (gradient accumulation): the gradients, and so the
  /// update, are those of the mean loss over them, as one batch of all of them would give when
  /// no layer mixes samples (instance norm or none; batch norm sees each micro-batch alone).
  /// Every micro-batch's generator graph is kept until the generator update.
  StepStats step(const std::vector<std::pair<at::Tensor, at::Tensor>>& batches);
  using Batches = std::vector<std::pair<at::Tensor, at::Tensor>>;

  void set_learning_rates(double lr_g, double lr_d);
  /// Data parallelism: every rank runs the same steps on its own batch; before each optimiser
  /// step the gradients are averaged over the ranks (bucketed all-reduce) and so are the step's
  /// losses, so that every rank takes the same update and the same non-finite decision.
  /// Batch-norm buffers are then copied from rank 0 (as PyTorch's DDP does); SyncBatchNorm2d
  /// layers get the communicator. Null or one rank: a single process.
  void set_communicator(std::shared_ptr<Communicator> communicator);
  Generator& generator() { return *generator_; }
  Discriminator* discriminator() { return discriminator_.get(); }
  Adam& optimizer_g() { return optimizer_g_; }
  Adam* optimizer_d() { return optimizer_d_.get(); }
  const ObjectiveOptions& objective() const { return objective_; }
  /// The gradient penalty's random generator (its state goes into checkpoints).
  at::Generator& penalty_generator();

 private:
  at::Tensor discriminate(const at::Tensor& real_a, const at::Tensor& image);
  /// D's half of a step: its losses on fake and real pairs, their gradients (averaged over the
  /// ranks) and its update, skipped when they are not finite (stats.skipped_d).
  void update_discriminator(const Batches& batches, const std::vector<at::Tensor>& fakes,
                            StepStats& stats);
  /// G's half: the GAN term through the frozen D plus lambda * L1, and G's update, skipped when
  /// not finite (stats.skipped_g).
  void update_generator(const Batches& batches, const std::vector<at::Tensor>& fakes,
                        StepStats& stats);

  std::shared_ptr<Generator> generator_;
  std::shared_ptr<Discriminator> discriminator_;
  ObjectiveOptions objective_;
  Adam optimizer_g_;
  std::unique_ptr<Adam> optimizer_d_;
  at::Generator penalty_generator_;
  std::shared_ptr<Communicator> communicator_;
};

}  // namespace pix2pix
