// Weight initialisation, as the reference's init_weights: convolution and linear weights from the
// chosen distribution, their biases zero; batch-norm weights N(1, gain), biases zero. Modules are
// visited in the order PyTorch visits them, so with the same seed the weights equal the
// reference's.
#pragma once

#include <string>
#include <vector>

#include "pix2pix/names.h"

namespace torch::nn {
class Module;
}

namespace pix2pix {

/// The reference's --init_type.
enum class InitType {
  kNormal,      ///< N(0, gain) (the paper's; gain 0.02)
  kXavier,      ///< Xavier/Glorot normal with the given gain
  kKaiming,     ///< Kaiming normal, a = 0, fan_in (gain unused, as the reference)
  kOrthogonal,  ///< orthogonal with the given gain
};
/// The initialisations' names (names.h).
template <>
const std::vector<std::string>& names<InitType>();

/// "normal" | "xavier" | "kaiming" | "orthogonal"; throws pix2pix::Error otherwise.
InitType parse_init_type(const std::string& name);
/// The name parse_init_type accepts.
std::string to_string(InitType type);

/// Initialisation settings (defaults are the paper's).
struct InitOptions {
  InitType type = InitType::kNormal;  ///< distribution of conv/linear weights
  double gain = 0.02;  ///< std of normal init, gain of xavier/orthogonal, std of norm weights
};

/// Re-initialises every Conv2d, ConvTranspose2d, Linear and BatchNorm2d inside `module` in place.
/// Draws from torch's default generator.
void init_weights(torch::nn::Module& module, const InitOptions& options = {});

}  // namespace pix2pix
