#include "pix2pix/models/discriminator.h"

#include <torch/nn.h>

#include <algorithm>

#include "models/convolution.h"
#include "models/layers.h"
#include "pix2pix/error.h"

namespace pix2pix {

namespace nn = torch::nn;

namespace {

nn::AnyModule leaky_relu() {
  return nn::AnyModule(nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.2).inplace(true)));
}

void check_options(const DiscriminatorOptions& options) {
  if (options.input_nc < 1)
    throw Error::option("input_nc", "the discriminator needs at least 1 channel");
  if (options.ndf < 1) throw Error::option("ndf", "must be at least 1");
  if (options.n_layers < 1 || options.n_layers > 5)
    throw Error::option("n_layers_D", std::to_string(options.n_layers) + " is outside 1..5");
}

// The PatchGAN's layers (the reference's NLayerDiscriminator, up to but excluding the final
// 1-channel convolution): conv s2 + LReLU; (n_layers - 1) x [conv s2, norm, LReLU]; conv s1, norm,
// LReLU. Returns the channel count at the end; appends each convolution's geometry to `convs`.
int64_t patchgan_trunk(const DiscriminatorOptions& options, nn::Sequential& layers,
                       std::vector<ConvGeometry>& convs) {
  const bool bias = detail::conv_bias_for(options.norm);
  const int64_t ndf = options.ndf;
  detail::Conv2d first(nn::Conv2dOptions(options.input_nc, ndf, 4).stride(2).padding(1));
  layers->push_back(first);
  layers->push_back(leaky_relu());
  convs.push_back({4, 2, 1});
  int64_t mult = 1;
  for (int64_t n = 1; n <= options.n_layers; ++n) {
    const int64_t prev = mult;
    mult = std::min<int64_t>(int64_t{1} << n, 8);
    const int64_t stride = n < options.n_layers ? 2 : 1;
    detail::Conv2d conv(
        nn::Conv2dOptions(ndf * prev, ndf * mult, 4).stride(stride).padding(1).bias(bias));
    layers->push_back(conv);
    layers->push_back(detail::make_norm_layer(options.norm, ndf * mult));
    layers->push_back(leaky_relu());
    convs.push_back({4, stride, 1});
  }
  return ndf * mult;
}

std::vector<int64_t> conv_output_shape(const std::vector<ConvGeometry>& convs, int64_t height,
                                       int64_t width) {
  int64_t h = height, w = width;
  for (const auto& c : convs) {
    if (h + 2 * c.padding < c.kernel || w + 2 * c.padding < c.kernel)
      throw Error("input size", std::to_string(height) + "x" + std::to_string(width) +
                                    " is too small for this discriminator");
    h = (h + 2 * c.padding - c.kernel) / c.stride + 1;
    w = (w + 2 * c.padding - c.kernel) / c.stride + 1;
  }
  return {1, h, w};
}

}  // namespace

int64_t Discriminator::receptive_field() const {
  int64_t field = 1;
  for (auto it = convs_.rbegin(); it != convs_.rend(); ++it)
    field = (field - 1) * it->stride + it->kernel;
  return field;
}

std::vector<int64_t> Discriminator::output_shape(int64_t height, int64_t width) const {
  return conv_output_shape(convs_, height, width);
}

NLayerDiscriminator::NLayerDiscriminator(const DiscriminatorOptions& options)
    : Discriminator(options) {
  check_options(options);
  nn::Sequential layers;
  const int64_t channels = patchgan_trunk(options, layers, convs_);
  detail::Conv2d last(nn::Conv2dOptions(channels, 1, 4).stride(1).padding(1));
  layers->push_back(last);
  convs_.push_back({4, 1, 1});
  model_ = register_module("model", layers);
}

// bf16 networks carry bfloat16 activations inside; outputs are float32 whatever the precision.
at::Tensor NLayerDiscriminator::forward(at::Tensor input) {
  return model_->forward(input).to(at::kFloat);
}

PixelDiscriminator::PixelDiscriminator(const DiscriminatorOptions& options)
    : Discriminator(options) {
  check_options(options);
  const bool bias = detail::conv_bias_for(options.norm);
  const int64_t ndf = options.ndf;
  nn::Sequential layers;
  detail::Conv2d first(nn::Conv2dOptions(options.input_nc, ndf, 1));
  layers->push_back(first);
  layers->push_back(leaky_relu());
  detail::Conv2d second(nn::Conv2dOptions(ndf, ndf * 2, 1).bias(bias));
  layers->push_back(second);
  layers->push_back(detail::make_norm_layer(options.norm, ndf * 2));
  layers->push_back(leaky_relu());
  detail::Conv2d last(nn::Conv2dOptions(ndf * 2, 1, 1).bias(bias));
  layers->push_back(last);
  convs_ = {{1, 1, 0}, {1, 1, 0}, {1, 1, 0}};
  net_ = register_module("net", layers);
}

at::Tensor PixelDiscriminator::forward(at::Tensor input) {
  return net_->forward(input).to(at::kFloat);
}

ImageDiscriminator::ImageDiscriminator(const DiscriminatorOptions& options)
    : Discriminator(options) {
  check_options(options);
  nn::Sequential layers;
  const int64_t channels = patchgan_trunk(options, layers, convs_);
  model_ = register_module("model", layers);
  head_ = register_module("head", nn::Conv2d(nn::Conv2dOptions(channels, 1, 1)));
}

at::Tensor ImageDiscriminator::forward(at::Tensor input) {
  at::Tensor features = model_->forward(input);
  // Average over every position: one decision for the whole image, whatever its size.
  at::Tensor pooled = features.to(at::kFloat).mean({2, 3}, /*keepdim=*/true);
  return head_->forward(pooled);
}

std::vector<int64_t> ImageDiscriminator::output_shape(int64_t height, int64_t width) const {
  conv_output_shape(convs_, height, width);  // throws if the trunk cannot take the input
  return {1, 1, 1};
}

std::shared_ptr<Discriminator> make_discriminator(const DiscriminatorOptions& options) {
  if (options.net == "basic") {
    DiscriminatorOptions basic = options;
    basic.n_layers = 3;
    return std::make_shared<NLayerDiscriminator>(basic);
  }
  if (options.net == "n_layers") return std::make_shared<NLayerDiscriminator>(options);
  if (options.net == "pixel") return std::make_shared<PixelDiscriminator>(options);
  if (options.net == "image") return std::make_shared<ImageDiscriminator>(options);
  throw Error::option("netD", "unknown discriminator '" + options.net +
                                  "' (expected basic, n_layers, pixel or image)");
}

}  // namespace pix2pix
