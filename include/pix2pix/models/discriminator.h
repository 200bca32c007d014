// Discriminators: the PatchGAN of the paper (N-layer; `basic` = 3 layers = 70x70 patches), the
// 1x1 pixel discriminator, and an image-level discriminator that makes one decision per image.
// Layer names and order match the reference's, so state_dicts are interchangeable. To add one:
// derive from Discriminator and name it in make_discriminator.
#pragma once

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "pix2pix/models/norm.h"

namespace torch::nn {
class SequentialImpl;
class Conv2dImpl;
}  // namespace torch::nn

namespace pix2pix {

/// Everything that defines a discriminator. Defaults are the paper's (70x70 PatchGAN).
struct DiscriminatorOptions {
  /// basic (= n_layers with 3) | n_layers | pixel | image.
  std::string net = "basic";
  int64_t input_nc = 6;  ///< input channels: condition + image (3 + 3) for the conditional GAN
  int64_t ndf = 64;      ///< filters in the first convolution
  /// Strided layers for n_layers and image: 1..5 give 16, 34, 70, 142, 286 pixel patches.
  int64_t n_layers = 3;
  Norm norm = Norm::kBatch;
};

/// One convolution's geometry, for receptive field and output-size arithmetic.
struct ConvGeometry {
  int64_t kernel, stride, padding;
};

/// Base of all discriminators: N x input_nc x H x W -> N x 1 x h x w logits (no sigmoid).
class Discriminator : public torch::nn::Module {
 public:
  virtual at::Tensor forward(at::Tensor input) = 0;
  /// Side of the square input patch that one output logit sees; -1 for the whole image.
  virtual int64_t receptive_field() const;
  /// {1, h, w}: the logits' shape per sample for an input of height x width. Throws
  /// pix2pix::Error if the input is too small.
  virtual std::vector<int64_t> output_shape(int64_t height, int64_t width) const;
  const DiscriminatorOptions& options() const { return options_; }

 protected:
  explicit Discriminator(DiscriminatorOptions options) : options_(std::move(options)) {}
  DiscriminatorOptions options_;
  std::vector<ConvGeometry> convs_;  // the convolutions in order, for the arithmetic above
};

/// Builds `options.net`; throws pix2pix::Error for unknown names or n_layers outside 1..5.
std::shared_ptr<Discriminator> make_discriminator(const DiscriminatorOptions& options);

/// PatchGAN: classifies each overlapping patch as real or fake.
class NLayerDiscriminator : public Discriminator {
 public:
  explicit NLayerDiscriminator(const DiscriminatorOptions& options);
  at::Tensor forward(at::Tensor input) override;

 private:
  std::shared_ptr<torch::nn::SequentialImpl> model_;  // "model"
};

/// PixelGAN: 1x1 convolutions, classifies every pixel (receptive field 1).
class PixelDiscriminator : public Discriminator {
 public:
  explicit PixelDiscriminator(const DiscriminatorOptions& options);
  at::Tensor forward(at::Tensor input) override;

 private:
  std::shared_ptr<torch::nn::SequentialImpl> net_;  // "net", as the reference names it
};

/// ImageGAN: the PatchGAN trunk (n_layers strided convolutions), features averaged over the
/// whole image, then a 1x1 convolution to one logit per image (output N x 1 x 1 x 1).
class ImageDiscriminator : public Discriminator {
 public:
  explicit ImageDiscriminator(const DiscriminatorOptions& options);
  at::Tensor forward(at::Tensor input) override;
  int64_t receptive_field() const override { return -1; }
  std::vector<int64_t> output_shape(int64_t height, int64_t width) const override;

 private:
  std::shared_ptr<torch::nn::SequentialImpl> model_;  // "model": the trunk
  std::shared_ptr<torch::nn::Conv2dImpl> head_;       // "head": the 1x1 classifier
};

}  // namespace pix2pix
