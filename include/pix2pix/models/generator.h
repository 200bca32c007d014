// Generators: the U-Net of the paper and the ResNet of Johnson et al., built so that their
// state_dict keys, shapes and parameter counts equal the PyTorch reference's
// (junyanz/pytorch-CycleGAN-and-pix2pix, models/networks.py). Weights therefore move both ways.
// To add an architecture: derive from Generator, give it a name in make_generator.
#pragma once

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "pix2pix/models/norm.h"
#include "pix2pix/names.h"

namespace torch::nn {
class SequentialImpl;
}

namespace pix2pix {

namespace detail {
class UNetBlockImpl;
}

/// How a decoder doubles the resolution.
enum class Upsampling {
  kTransposed,      ///< ConvTranspose2d, as the reference (can show checkerboard artifacts)
  kResizeNearest,   ///< nearest-neighbour x2 then a 3x3 convolution (Odena et al. 2016)
  kResizeBilinear,  ///< bilinear x2 (align_corners false) then a 3x3 convolution
};
/// The canonical upsampling names (names.h).
template <>
const std::vector<std::string>& names<Upsampling>();

/// "transposed" | "resize-nearest" | "resize-bilinear" (also "resize-conv" = resize-nearest).
Upsampling parse_upsampling(const std::string& name);
/// The canonical name parse_upsampling accepts.
std::string to_string(Upsampling upsampling);

/// Everything that defines a generator's architecture. Defaults are the paper's pix2pix.
struct GeneratorOptions {
  /// unet_256 | unet_128 | unet (depth from num_downs) | resnet_6blocks | resnet_9blocks.
  std::string net = "unet_256";
  int64_t input_nc = 3;   ///< input channels
  int64_t output_nc = 3;  ///< output channels
  int64_t ngf = 64;       ///< filters in the first (and last) convolution
  /// U-Net depth: downsamplings down to the bottleneck. 0: from the name (unet_256 = 8,
  /// unet_128 = 7). Must be >= 5.
  int64_t num_downs = 0;
  Norm norm = Norm::kBatch;  ///< normalisation layers
  bool dropout = true;       ///< dropout 0.5 (U-Net: in the inner 512-channel decoder blocks)
  Upsampling upsampling = Upsampling::kTransposed;  ///< decoder upsampling
};

/// Base of all generators: maps N x input_nc x H x W in [-1, 1] to N x output_nc x H x W.
class Generator : public torch::nn::Module {
 public:
  /// Translates a batch.
  virtual at::Tensor forward(at::Tensor input) = 0;
  /// Height and width of the input must be multiples of this.
  virtual int64_t size_multiple() const = 0;
  /// The options it was built from, resolved (num_downs filled in).
  const GeneratorOptions& options() const { return options_; }

 protected:
  explicit Generator(GeneratorOptions options) : options_(std::move(options)) {}
  GeneratorOptions options_;
};

/// Builds the generator `options.net` (weights as torch's default constructors leave them; call
/// init_weights for the paper's initialisation). Throws pix2pix::Error for unknown names or
/// impossible settings.
std::shared_ptr<Generator> make_generator(const GeneratorOptions& options);

/// U-Net generator: encoder-decoder with skip connections between mirrored layers.
class UNetGenerator : public Generator {
 public:
  explicit UNetGenerator(const GeneratorOptions& options);
  at::Tensor forward(at::Tensor input) override;
  int64_t size_multiple() const override;

 private:
  std::shared_ptr<detail::UNetBlockImpl> model_;  // registered as "model", the outermost block
};

/// ResNet generator: 2 stride-2 downsamplings, n residual blocks, 2 upsamplings, reflection
/// padding.
class ResNetGenerator : public Generator {
 public:
  ResNetGenerator(const GeneratorOptions& options, int64_t n_blocks);
  at::Tensor forward(at::Tensor input) override;
  int64_t size_multiple() const override { return 4; }

 private:
  std::shared_ptr<torch::nn::SequentialImpl> model_;  // registered as "model"
};

/// Number of elements in all parameters (the reference's parameter count).
int64_t count_parameters(const torch::nn::Module& module);

}  // namespace pix2pix
