#include "pix2pix/train/step.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/module.h>

#include <cmath>

#include "models/convolution.h"
#include "pix2pix/error.h"
#include "pix2pix/models/sync_batch_norm.h"

namespace pix2pix {

namespace {

void set_requires_grad(torch::nn::Module& module, bool requires_grad) {
  for (auto& p : module.parameters()) p.requires_grad_(requires_grad);
}

// The gradients to average over the ranks, in float32 (bf16 training leaves convolution weight
// gradients in bfloat16; the sum over ranks is taken in float32, as in one process).
std::vector<at::Tensor> gradients(torch::nn::Module& module) {
  std::vector<at::Tensor> grads;
  for (auto& p : module.parameters()) {
    if (!p.grad().defined()) continue;
    if (p.grad().scalar_type() != at::kFloat) p.mutable_grad() = p.grad().to(at::kFloat);
    grads.push_back(p.mutable_grad());
  }
  return grads;
}

// Averages a step's host statistics over the ranks; `values` gains nothing, loses nothing.
void average(Communicator* communicator, std::vector<double*> values) {
  if (!communicator || communicator->world_size() == 1) return;
  at::Tensor packed = at::empty({static_cast<int64_t>(values.size())}, at::kDouble);
  for (size_t i = 0; i < values.size(); ++i) packed[static_cast<int64_t>(i)] = *values[i];
  communicator->all_reduce_mean({packed});
  for (size_t i = 0; i < values.size(); ++i)
    *values[i] = packed[static_cast<int64_t>(i)].item<double>();
}

// Batch-norm statistics change in every forward pass: kept to undo a step that is not finite.
class BufferSnapshot {
 public:
  explicit BufferSnapshot(torch::nn::Module* module) {
    if (module)
      for (auto& buffer : module->buffers()) saved_.emplace_back(buffer, buffer.clone());
  }
  void restore() {
    at::NoGradGuard no_grad;
    for (auto& [buffer, copy] : saved_) buffer.copy_(copy);
  }
  bool finite() const {
    std::vector<at::Tensor> checks;  // fetched together: one host synchronisation on a GPU
    for (const auto& [buffer, copy] : saved_)
      if (buffer.is_floating_point()) checks.push_back(at::isfinite(buffer).all());
    return checks.empty() || at::stack(checks).all().item<bool>();
  }
  void add_buffers_to(std::vector<at::Tensor>& buffers) const {
    for (const auto& [buffer, copy] : saved_) buffers.push_back(buffer);
  }

 private:
  std::vector<std::pair<at::Tensor, at::Tensor>> saved_;
};

// With several micro-batches every loss is divided by their number, so the summed gradients are
// those of their mean; with one, nothing is divided (the reference's exact operations).
at::Tensor share(const at::Tensor& loss, size_t count) {
  return count == 1 ? loss : loss / static_cast<double>(count);
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
  // bf16 training: each step also rewrites the convolutions' bfloat16 working copies, in the
  // same pass, instead of the layers casting every weight again on their next forward.
  for (auto& [weight, copy] : detail::bf16_working_copies(*generator_))
    optimizer_g_.set_bfloat16_copy(weight, copy);
  if (optimizer_d_)
    for (auto& [weight, copy] : detail::bf16_working_copies(*discriminator_))
      optimizer_d_->set_bfloat16_copy(weight, copy);
}

void Pix2PixStep::set_communicator(std::shared_ptr<Communicator> communicator) {
  communicator_ = std::move(communicator);
  pix2pix::set_communicator(*generator_, communicator_);
  if (discriminator_) pix2pix::set_communicator(*discriminator_, communicator_);
}

void Pix2PixStep::set_learning_rates(double lr_g, double lr_d) {
  optimizer_g_.set_lr(lr_g);
  if (optimizer_d_) optimizer_d_->set_lr(lr_d);
}

at::Tensor Pix2PixStep::discriminate(const at::Tensor& real_a, const at::Tensor& image) {
  return discriminator_->forward(objective_.unconditional_d ? image : at::cat({real_a, image}, 1));
}

StepStats Pix2PixStep::step(const at::Tensor& real_a, const at::Tensor& real_b) {
  return step({{real_a, real_b}});
}

StepStats Pix2PixStep::step(const Batches& batches) {
  if (batches.empty()) throw Error("Pix2PixStep", "no batch to train on", ErrorKind::kRuntime);
  BufferSnapshot g_buffers(generator_.get()), d_buffers(discriminator_.get());
  StepStats stats;
  generator_->train();
  std::vector<at::Tensor> fakes;
  for (const auto& batch : batches) fakes.push_back(generator_->forward(batch.first));
  if (!objective_.no_gan) update_discriminator(batches, fakes, stats);
  update_generator(batches, fakes, stats);

  // The guard. D's statistics also move in the G pass, so any skipped update (or statistics that
  // overflowed) restores both networks' buffers. Rank 0's buffers go everywhere first (plain
  // batch norm's running statistics differ per rank), so that every rank decides the same.
  if (communicator_ && communicator_->world_size() > 1) {
    std::vector<at::Tensor> buffers;
    g_buffers.add_buffers_to(buffers);
    d_buffers.add_buffers_to(buffers);
    communicator_->broadcast(buffers);
  }
  if (stats.skipped_d || stats.skipped_g || !g_buffers.finite() || !d_buffers.finite()) {
    g_buffers.restore();
    d_buffers.restore();
  }
  return stats;
}

void Pix2PixStep::update_discriminator(const Batches& batches, const std::vector<at::Tensor>& fakes,
                                       StepStats& stats) {
  // Fake and real pairs in two separate passes (one concatenated batch would mix their
  // batch-norm statistics; docs/design.md, "Measured facts").
  const size_t count = batches.size();
  const double n = static_cast<double>(count);
  discriminator_->train();
  optimizer_d_->zero_grad();
  for (size_t k = 0; k < count; ++k) {
    const at::Tensor& real_a = batches[k].first;
    const at::Tensor& real_b = batches[k].second;
    at::Tensor pred_fake = discriminate(real_a, fakes[k].detach());
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
          input(fakes[k].detach()), objective_.lambda_gp, penalty_generator_);
      loss_d = loss_d + penalty;
      stats.gradient_penalty += penalty.item<double>() / n;
    }
    share(loss_d, count).backward();
    stats.d_fake += loss_d_fake.item<double>() / n;
    stats.d_real += loss_d_real.item<double>() / n;
    stats.d_accuracy_fake += discriminator_accuracy(pred_fake, false, objective_.gan_mode) / n;
    stats.d_accuracy_real += discriminator_accuracy(pred_real, true, objective_.gan_mode) / n;
  }
  // Data parallel: mean gradients and losses. A non-finite value on any rank becomes a
  // non-finite mean on every rank, so all ranks skip (or take) the update together.
  if (communicator_) {
    communicator_->all_reduce_mean(gradients(*discriminator_));
    average(communicator_.get(), {&stats.d_fake, &stats.d_real, &stats.gradient_penalty,
                                  &stats.d_accuracy_fake, &stats.d_accuracy_real});
  }
  if (std::isfinite(stats.d_fake + stats.d_real + stats.gradient_penalty) &&
      optimizer_d_->gradients_finite()) {
    optimizer_d_->step();
  } else {
    stats.skipped_d = true;
    optimizer_d_->zero_grad();
  }
}

void Pix2PixStep::update_generator(const Batches& batches, const std::vector<at::Tensor>& fakes,
                                   StepStats& stats) {
  // Fool D (frozen: no weight gradients are computed for it) and stay close to the target.
  const size_t count = batches.size();
  const double n = static_cast<double>(count);
  optimizer_g_.zero_grad();
  if (!objective_.no_gan) set_requires_grad(*discriminator_, false);
  try {
    for (size_t k = 0; k < count; ++k) {
      const at::Tensor& real_a = batches[k].first;
      const at::Tensor& real_b = batches[k].second;
      at::Tensor loss_g;
      at::Tensor loss_l1;
      if (objective_.no_gan) {
        loss_l1 = (fakes[k] - real_b).abs().mean();
        loss_g = objective_.lambda_l1 * loss_l1;
      } else {
        at::Tensor pred_fake = discriminate(real_a, fakes[k]);
        at::Tensor loss_g_gan = gan_loss(pred_fake, true, objective_.gan_mode);
        loss_l1 = (fakes[k] - real_b).abs().mean();  // after D's pass, in the reference's order
        loss_g = loss_g_gan + objective_.lambda_l1 * loss_l1;
        stats.g_gan += loss_g_gan.item<double>() / n;
      }
      share(loss_g, count).backward();
      stats.g_l1 += loss_l1.item<double>() / n;
    }
  } catch (...) {
    if (discriminator_) set_requires_grad(*discriminator_, true);
    throw;
  }
  if (communicator_) {
    communicator_->all_reduce_mean(gradients(*generator_));
    average(communicator_.get(), {&stats.g_gan, &stats.g_l1});
  }
  if (std::isfinite(stats.g_gan + stats.g_l1) && optimizer_g_.gradients_finite()) {
    optimizer_g_.step();
  } else {
    stats.skipped_g = true;
    optimizer_g_.zero_grad();
  }
  if (!objective_.no_gan) set_requires_grad(*discriminator_, true);
}

at::Generator& Pix2PixStep::penalty_generator() { return penalty_generator_; }

}  // namespace pix2pix
