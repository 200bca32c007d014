#include "pix2pix/trainer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "pix2pix/error.h"

namespace pix2pix {

namespace {

void set_requires_grad(torch::nn::Module& module, bool requires_grad) {
  for (auto& p : module.parameters()) p.requires_grad_(requires_grad);
}

}  // namespace

Pix2PixStep::Pix2PixStep(std::shared_ptr<Generator> generator,
                         std::shared_ptr<Discriminator> discriminator, ObjectiveOptions objective,
                         AdamOptions adam_g, AdamOptions adam_d, uint64_t penalty_seed)
    : generator_(std::move(generator)),
      discriminator_(std::move(discriminator)),
      objective_(objective),
      optimizer_g_(generator_->parameters(), adam_g),
      penalty_generator_(at::detail::createCPUGenerator(penalty_seed)) {
  if (!objective_.no_gan) {
    if (!discriminator_) throw Error("Pix2PixStep", "a discriminator is needed unless no_gan");
    optimizer_d_ = std::make_unique<Adam>(discriminator_->parameters(), adam_d);
  }
}

void Pix2PixStep::set_learning_rates(double lr_g, double lr_d) {
  optimizer_g_.set_lr(lr_g);
  if (optimizer_d_) optimizer_d_->set_lr(lr_d);
}

at::Tensor Pix2PixStep::discriminate(const at::Tensor& real_a, const at::Tensor& image) {
  return discriminator_->forward(objective_.unconditional_d ? image : at::cat({real_a, image}, 1));
}

StepStats Pix2PixStep::step(const at::Tensor& real_a, const at::Tensor& real_b) {
  StepStats stats;
  generator_->train();
  at::Tensor fake_b = generator_->forward(real_a);

  if (!objective_.no_gan) {
    // D: fake and real pairs in two separate passes (one concatenated batch would mix their
    // batch-norm statistics; DESIGN.md section 5).
    discriminator_->train();
    optimizer_d_->zero_grad();
    at::Tensor pred_fake = discriminate(real_a, fake_b.detach());
    at::Tensor pred_real = discriminate(real_a, real_b);
    at::Tensor loss_d_fake = gan_loss(pred_fake, false, objective_.gan_mode);
    at::Tensor loss_d_real = gan_loss(pred_real, true, objective_.gan_mode);
    at::Tensor loss_d = 0.5 * (loss_d_fake + loss_d_real);
    if (objective_.lambda_gp > 0) {
      auto input = [&](const at::Tensor& image) {
        return objective_.unconditional_d ? image : at::cat({real_a, image}, 1);
      };
      at::Tensor penalty = gradient_penalty(
          [&](const at::Tensor& x) { return discriminator_->forward(x); }, input(real_b),
          input(fake_b.detach()), objective_.lambda_gp, penalty_generator_);
      loss_d = loss_d + penalty;
      stats.gradient_penalty = penalty.item<double>();
    }
    loss_d.backward();
    optimizer_d_->step();
    stats.d_fake = loss_d_fake.item<double>();
    stats.d_real = loss_d_real.item<double>();
    stats.d_accuracy_fake = discriminator_accuracy(pred_fake, false, objective_.gan_mode);
    stats.d_accuracy_real = discriminator_accuracy(pred_real, true, objective_.gan_mode);
  }

  // G: fool D (frozen: no weight gradients are computed for it) and stay close to the target.
  optimizer_g_.zero_grad();
  at::Tensor loss_g;
  at::Tensor loss_l1;
  if (objective_.no_gan) {
    loss_l1 = (fake_b - real_b).abs().mean();
    loss_g = objective_.lambda_l1 * loss_l1;
  } else {
    set_requires_grad(*discriminator_, false);
    at::Tensor pred_fake = discriminate(real_a, fake_b);
    at::Tensor loss_g_gan = gan_loss(pred_fake, true, objective_.gan_mode);
    loss_l1 = (fake_b - real_b).abs().mean();  // after D's pass, in the reference's order
    loss_g = loss_g_gan + objective_.lambda_l1 * loss_l1;
    stats.g_gan = loss_g_gan.item<double>();
  }
  try {
    loss_g.backward();
  } catch (...) {
    if (discriminator_) set_requires_grad(*discriminator_, true);
    throw;
  }
  optimizer_g_.step();
  if (!objective_.no_gan) set_requires_grad(*discriminator_, true);
  stats.g_l1 = loss_l1.item<double>();
  return stats;
}

}  // namespace pix2pix
