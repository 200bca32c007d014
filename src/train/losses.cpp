#include "pix2pix/train/losses.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include "names_table.h"
#include "pix2pix/error.h"

namespace pix2pix {

template <>
const std::vector<std::string>& names<GanMode>() {
  static const std::vector<std::string> list = {"vanilla", "lsgan", "wgangp"};
  return list;
}

GanMode parse_gan_mode(const std::string& name) {
  return detail::parse_name<GanMode>(name, "gan_mode", "GAN loss");
}

std::string to_string(GanMode mode) { return detail::name_of(mode); }

at::Tensor gan_loss(const at::Tensor& prediction, bool target_is_real, GanMode mode) {
  switch (mode) {
    case GanMode::kVanilla: {
      at::Tensor target = target_is_real ? at::ones_like(prediction) : at::zeros_like(prediction);
      return at::binary_cross_entropy_with_logits(prediction, target);
    }
    case GanMode::kLsgan: {
      at::Tensor target = target_is_real ? at::ones_like(prediction) : at::zeros_like(prediction);
      return at::mse_loss(prediction, target);
    }
    case GanMode::kWgangp:
      return target_is_real ? -prediction.mean() : prediction.mean();
  }
  throw Error("gan_loss", "unknown GAN mode", ErrorKind::kRuntime);
}

at::Tensor gradient_penalty(const std::function<at::Tensor(const at::Tensor&)>& discriminator,
                            const at::Tensor& real, const at::Tensor& fake, double weight,
                            at::Generator generator, double constant) {
  const int64_t batch = real.size(0);
  // Drawn on the CPU (the penalty's own CPU generator, saved in checkpoints) on every device.
  at::Tensor alpha = at::rand({batch, 1}, generator, real.options().device(at::kCPU))
                         .to(real.device())
                         .expand({batch, real.numel() / batch})
                         .reshape(real.sizes());
  at::Tensor interpolates =
      (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(true);
  at::Tensor output = discriminator(interpolates);
  at::Tensor gradients = torch::autograd::grad({output}, {interpolates}, {at::ones_like(output)},
                                               /*retain_graph=*/true, /*create_graph=*/true)[0];
  gradients = gradients.reshape({batch, -1});
  return ((gradients + 1e-16).norm(2, 1) - constant).pow(2).mean() * weight;
}

double discriminator_accuracy(const at::Tensor& prediction, bool target_is_real, GanMode mode) {
  at::Tensor says_real =
      mode == GanMode::kLsgan ? prediction.detach() > 0.5 : prediction.detach() > 0;
  at::Tensor correct = target_is_real ? says_real : says_real.logical_not();
  return correct.to(at::kDouble).mean().item<double>();
}

}  // namespace pix2pix
