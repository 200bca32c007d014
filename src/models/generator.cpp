#include "pix2pix/models/generator.h"

#include <torch/nn.h>

#include <regex>

#include "models/convolution.h"
#include "models/generator_layers.h"
#include "models/layers.h"
#include "names_table.h"
#include "pix2pix/error.h"

namespace pix2pix {

namespace nn = torch::nn;

template <>
const std::vector<std::string>& names<Upsampling>() {
  static const std::vector<std::string> list = {"transposed", "resize-nearest", "resize-bilinear"};
  return list;
}

Upsampling parse_upsampling(const std::string& name) {
  if (name == "resize-conv") return Upsampling::kResizeNearest;  // the CLI's older name for it
  return detail::parse_name<Upsampling>(name, "upsampling", "upsampling");
}

std::string to_string(Upsampling upsampling) { return detail::name_of(upsampling); }

namespace {

nn::AnyModule leaky_relu() {
  return nn::AnyModule(nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.2).inplace(true)));
}
nn::AnyModule relu() { return nn::AnyModule(nn::ReLU(nn::ReLUOptions(true))); }

// A x2 upsampling layer from `in` to `out` channels. Transposed: kernel 4 (U-Net) or 3 with
// output padding 1 (ResNet), stride 2, padding 1. Resize: upsample x2, then a 3x3 convolution
// whose padding mode is `resize_padding`.
nn::AnyModule upsampling_layer(Upsampling mode, int64_t in, int64_t out, bool bias,
                               int64_t transposed_kernel,
                               nn::detail::conv_padding_mode_t resize_padding = torch::kZeros) {
  if (mode == Upsampling::kTransposed) {
    auto options =
        nn::ConvTranspose2dOptions(in, out, transposed_kernel).stride(2).padding(1).bias(bias);
    if (transposed_kernel == 3) options.output_padding(1);
    return nn::AnyModule(detail::ConvTranspose2d(options));
  }
  return nn::AnyModule(detail::ResizeConv(mode, in, out, bias, resize_padding));
}

}  // namespace

namespace detail {

at::Tensor ReflectionPadImpl::forward(const at::Tensor& x) {
  return at::reflection_pad2d(x.scalar_type() == at::kBFloat16 ? x.to(at::kFloat) : x,
                              {size, size, size, size});
}

ResizeConvImpl::ResizeConvImpl(Upsampling mode, int64_t in, int64_t out, bool bias,
                               nn::detail::conv_padding_mode_t padding_mode) {
  auto options = nn::UpsampleOptions().scale_factor(std::vector<double>{2.0, 2.0});
  if (mode == Upsampling::kResizeNearest)
    options.mode(torch::kNearest);
  else
    options.mode(torch::kBilinear).align_corners(false);
  upsample = register_module("upsample", nn::Upsample(options));
  conv = register_module(
      "conv",
      Conv2d(nn::Conv2dOptions(in, out, 3).padding(1).bias(bias).padding_mode(padding_mode)));
}

// Layers are built in separate statements, in the reference's order, so that the default
// initialisers draw random numbers in the same order as Python does.
UNetBlockImpl::UNetBlockImpl(int64_t outer_nc, int64_t inner_nc, int64_t input_nc,
                             nn::AnyModule submodule, bool outermost, bool innermost,
                             const GeneratorOptions& options, bool use_dropout)
    : outermost(outermost) {
  const bool bias = conv_bias_for(options.norm);
  Conv2d down(nn::Conv2dOptions(input_nc, inner_nc, 4).stride(2).padding(1).bias(bias));
  nn::Sequential layers;
  if (outermost) {
    auto up = upsampling_layer(options.upsampling, inner_nc * 2, outer_nc, true, 4);
    layers->push_back(down);
    layers->push_back(std::move(submodule));
    layers->push_back(relu());
    layers->push_back(std::move(up));
    layers->push_back(nn::Tanh());
  } else if (innermost) {
    auto up = upsampling_layer(options.upsampling, inner_nc, outer_nc, bias, 4);
    layers->push_back(leaky_relu());
    layers->push_back(down);
    layers->push_back(relu());
    layers->push_back(std::move(up));
    layers->push_back(make_norm_layer(options.norm, outer_nc));
  } else {
    auto up = upsampling_layer(options.upsampling, inner_nc * 2, outer_nc, bias, 4);
    layers->push_back(leaky_relu());
    layers->push_back(down);
    layers->push_back(make_norm_layer(options.norm, inner_nc));
    layers->push_back(std::move(submodule));
    layers->push_back(relu());
    layers->push_back(std::move(up));
    layers->push_back(make_norm_layer(options.norm, outer_nc));
    if (use_dropout) layers->push_back(nn::Dropout(0.5));
  }
  model = register_module("model", layers);
}

at::Tensor UNetBlockImpl::forward(at::Tensor x) {
  if (outermost) return model->forward(x);
  // The first layer (an in-place LeakyReLU) rewrites x, so, as in the reference, the skip
  // connection carries the activated input.
  at::Tensor inner = model->forward(x);
  return at::cat({x, inner}, 1);
}

ResNetBlockImpl::ResNetBlockImpl(int64_t dim, const GeneratorOptions& options) {
  const bool bias = conv_bias_for(options.norm);
  nn::Sequential block;
  block->push_back(ReflectionPad(1));
  Conv2d conv1(nn::Conv2dOptions(dim, dim, 3).bias(bias));
  block->push_back(conv1);
  block->push_back(make_norm_layer(options.norm, dim));
  block->push_back(relu());
  if (options.dropout) block->push_back(nn::Dropout(0.5));
  block->push_back(ReflectionPad(1));
  Conv2d conv2(nn::Conv2dOptions(dim, dim, 3).bias(bias));
  block->push_back(conv2);
  block->push_back(make_norm_layer(options.norm, dim));
  conv_block = register_module("conv_block", block);
}

}  // namespace detail

namespace {

// Depth from a name "unet_<side>" with side a power of two >= 32 (unet_256 = 8, unet_128 = 7).
int64_t unet_depth(const GeneratorOptions& options) {
  int64_t from_name = 0;
  std::smatch match;
  if (std::regex_match(options.net, match, std::regex("unet_([0-9]+)"))) {
    const int64_t side = std::stoll(match[1]);
    for (int64_t d = 5; d <= 16; ++d)
      if ((int64_t{1} << d) == side) from_name = d;
    if (from_name == 0)
      throw Error::option("netG", "'" + options.net +
                                      "': the side must be a power of two from 32 "
                                      "(e.g. unet_256, unet_128)");
  } else if (options.net != "unet") {
    throw Error::option("netG", "unknown U-Net '" + options.net + "'");
  }
  if (options.num_downs != 0 && from_name != 0 && options.num_downs != from_name)
    throw Error::option("num_downs", std::to_string(options.num_downs) + " contradicts `netG` " +
                                         options.net + " (depth " + std::to_string(from_name) +
                                         "); use `netG` unet with `num_downs`");
  const int64_t depth = options.num_downs != 0 ? options.num_downs : from_name;
  if (depth == 0) throw Error::option("num_downs", "`netG` unet needs `num_downs` (5 or more)");
  if (depth < 5 || depth > 16)
    throw Error::option("num_downs", std::to_string(depth) + " is outside 5..16");
  return depth;
}

void check_channels(const GeneratorOptions& options) {
  if (options.input_nc < 1 || options.output_nc < 1)
    throw Error::option("input_nc/output_nc", "channel counts must be at least 1");
  if (options.ngf < 1) throw Error::option("ngf", "must be at least 1");
}

}  // namespace

UNetGenerator::UNetGenerator(const GeneratorOptions& options) : Generator(options) {
  check_channels(options);
  options_.num_downs = unet_depth(options);
  const int64_t ngf = options.ngf;
  auto block = [&](int64_t outer, int64_t inner, int64_t input_nc, nn::AnyModule sub,
                   bool outermost, bool innermost, bool dropout) {
    return nn::AnyModule(detail::UNetBlock(outer, inner, input_nc, std::move(sub), outermost,
                                           innermost, options_, dropout));
  };
  nn::AnyModule level = block(ngf * 8, ngf * 8, ngf * 8, {}, false, true, false);
  for (int64_t i = 0; i < options_.num_downs - 5; ++i)
    level = block(ngf * 8, ngf * 8, ngf * 8, std::move(level), false, false, options.dropout);
  level = block(ngf * 4, ngf * 8, ngf * 4, std::move(level), false, false, false);
  level = block(ngf * 2, ngf * 4, ngf * 2, std::move(level), false, false, false);
  level = block(ngf, ngf * 2, ngf, std::move(level), false, false, false);
  level = block(options.output_nc, ngf, options.input_nc, std::move(level), true, false, false);
  model_ = register_module("model", level.get<detail::UNetBlock>());
}

// bf16 networks carry bfloat16 activations inside; outputs are float32 whatever the precision.
at::Tensor UNetGenerator::forward(at::Tensor input) {
  return model_->forward(input).to(at::kFloat);
}

int64_t UNetGenerator::size_multiple() const { return int64_t{1} << options_.num_downs; }

ResNetGenerator::ResNetGenerator(const GeneratorOptions& options, int64_t n_blocks)
    : Generator(options) {
  check_channels(options);
  const bool bias = detail::conv_bias_for(options.norm);
  const int64_t ngf = options.ngf;
  nn::Sequential layers;
  layers->push_back(detail::ReflectionPad(3));
  detail::Conv2d first(nn::Conv2dOptions(options.input_nc, ngf, 7).bias(bias));
  layers->push_back(first);
  layers->push_back(detail::make_norm_layer(options.norm, ngf));
  layers->push_back(relu());
  constexpr int64_t kDownsamplings = 2;
  for (int64_t i = 0; i < kDownsamplings; ++i) {
    const int64_t mult = int64_t{1} << i;
    detail::Conv2d down(
        nn::Conv2dOptions(ngf * mult, ngf * mult * 2, 3).stride(2).padding(1).bias(bias));
    layers->push_back(down);
    layers->push_back(detail::make_norm_layer(options.norm, ngf * mult * 2));
    layers->push_back(relu());
  }
  const int64_t dim = ngf << kDownsamplings;
  for (int64_t i = 0; i < n_blocks; ++i) {
    detail::ResNetBlock residual(dim, options);
    layers->push_back(residual);
  }
  for (int64_t i = 0; i < kDownsamplings; ++i) {
    const int64_t mult = int64_t{1} << (kDownsamplings - i);
    layers->push_back(
        upsampling_layer(options.upsampling, ngf * mult, ngf * mult / 2, bias, 3, torch::kReflect));
    layers->push_back(detail::make_norm_layer(options.norm, ngf * mult / 2));
    layers->push_back(relu());
  }
  layers->push_back(detail::ReflectionPad(3));
  detail::Conv2d last(nn::Conv2dOptions(ngf, options.output_nc, 7));
  layers->push_back(last);
  layers->push_back(nn::Tanh());
  model_ = register_module("model", layers);
}

at::Tensor ResNetGenerator::forward(at::Tensor input) {
  return model_->forward(input).to(at::kFloat);
}

std::shared_ptr<Generator> make_generator(const GeneratorOptions& options) {
  if (options.net.rfind("unet", 0) == 0) return std::make_shared<UNetGenerator>(options);
  std::smatch match;
  if (std::regex_match(options.net, match, std::regex("resnet_([0-9]+)blocks"))) {
    const int64_t n_blocks = std::stoll(match[1]);
    if (n_blocks < 1 || n_blocks > 64)
      throw Error::option("netG", "'" + options.net + "': block count must be 1..64");
    return std::make_shared<ResNetGenerator>(options, n_blocks);
  }
  throw Error::option("netG", "unknown generator '" + options.net +
                                  "' (expected unet_256, unet_128, unet, resnet_6blocks or "
                                  "resnet_9blocks)");
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t total = 0;
  for (const auto& p : module.parameters()) total += p.numel();
  return total;
}

}  // namespace pix2pix
