// The pix2pix objective's pieces: the GAN loss in its three forms (the reference's GANLoss),
// the WGAN-GP gradient penalty, and the discriminator's accuracy on real and fake patches (a
// health signal: 50-60% is considered balanced). To add a GAN form: extend GanMode, gan_loss and
// discriminator_accuracy.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "pix2pix/names.h"

namespace pix2pix {

/// The reference's --gan_mode.
enum class GanMode {
  kVanilla,  ///< binary cross-entropy on logits (the paper's)
  kLsgan,    ///< least squares: mean squared error to targets 1 (real) and 0 (fake)
  kWgangp,   ///< Wasserstein: -mean for real, +mean for fake (use with a gradient penalty)
};
/// The GAN losses' names (names.h).
template <>
const std::vector<std::string>& names<GanMode>();

/// "vanilla" | "lsgan" | "wgangp"; throws pix2pix::Error otherwise.
GanMode parse_gan_mode(const std::string& name);
std::string to_string(GanMode mode);

/// The GAN loss of discriminator outputs (logits) against "real" or "fake" for every patch,
/// averaged over all of them, exactly as the reference's GANLoss.
at::Tensor gan_loss(const at::Tensor& prediction, bool target_is_real, GanMode mode);

/// Gradient penalty of Gulrajani et al. 2017 as the reference computes it: for each sample an
/// interpolation x = alpha * real + (1 - alpha) * fake with alpha ~ U(0, 1) drawn from
/// `generator` (not torch's default one, so dropout's random stream stays untouched), then
/// mean over samples of (||d D(x) / d x||_2 - constant)^2, times `weight`. `real` and `fake` are
/// the discriminator's full inputs (condition and image concatenated). The result keeps the graph
/// so that it can be back-propagated into D's weights.
at::Tensor gradient_penalty(const std::function<at::Tensor(const at::Tensor&)>& discriminator,
                            const at::Tensor& real, const at::Tensor& fake, double weight,
                            at::Generator generator, double constant = 1.0);

/// Fraction (0..1) of patches that the discriminator classifies correctly: logit > 0 means
/// "real" for vanilla and wgangp, output > 0.5 for lsgan.
double discriminator_accuracy(const at::Tensor& prediction, bool target_is_real, GanMode mode);

}  // namespace pix2pix
