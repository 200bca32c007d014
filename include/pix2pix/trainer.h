// Training: the pix2pix step (a discriminator update, then a generator update with the
// discriminator frozen) over a generator, a discriminator and their Adam optimisers. The step
// uses the reference's operations in the reference's order, so that from the same weights,
// inputs and seed it produces the reference's weights bit for bit. The epoch loop, run
// directory and checkpoints build on it.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>

#include "pix2pix/discriminator.h"
#include "pix2pix/generator.h"
#include "pix2pix/losses.h"
#include "pix2pix/optim.h"

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
  /// Models are put in train mode. Draws random numbers only through dropout (torch's default
  /// generator) and the gradient penalty's own generator.
  StepStats step(const at::Tensor& real_a, const at::Tensor& real_b);

  void set_learning_rates(double lr_g, double lr_d);
  Generator& generator() { return *generator_; }
  Discriminator* discriminator() { return discriminator_.get(); }
  Adam& optimizer_g() { return optimizer_g_; }
  Adam* optimizer_d() { return optimizer_d_.get(); }
  const ObjectiveOptions& objective() const { return objective_; }

 private:
  at::Tensor discriminate(const at::Tensor& real_a, const at::Tensor& image);

  std::shared_ptr<Generator> generator_;
  std::shared_ptr<Discriminator> discriminator_;
  ObjectiveOptions objective_;
  Adam optimizer_g_;
  std::unique_ptr<Adam> optimizer_d_;
  at::Generator penalty_generator_;
};

}  // namespace pix2pix
