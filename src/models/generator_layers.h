// The generators' own layers (private to the library): declared here so that code that walks a
// generator's modules (the ONNX export) can recognise them; built in generator.cpp.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/upsampling.h>

#include <cstdint>

#include "models/convolution.h"
#include "pix2pix/models/generator.h"

namespace pix2pix::detail {

/// nn::ReflectionPad2d that also takes bfloat16 activations (libtorch 1.13 has no bfloat16
/// reflection padding): they are padded in float32; the convolution that follows rounds them
/// back. No parameters, so state_dict keys are unchanged.
struct ReflectionPadImpl : torch::nn::Module {
  explicit ReflectionPadImpl(int64_t size) : size(size) {}
  at::Tensor forward(const at::Tensor& x);
  int64_t size;
};
TORCH_MODULE(ReflectionPad);

/// Resize-convolution: upsample x2, then a 3x3 convolution (keys `<index>.conv.*`).
struct ResizeConvImpl : torch::nn::Module {
  ResizeConvImpl(Upsampling mode, int64_t in, int64_t out, bool bias,
                 torch::nn::detail::conv_padding_mode_t padding_mode);
  at::Tensor forward(at::Tensor x) { return conv->forward(upsample->forward(x)); }
  torch::nn::Upsample upsample{nullptr};
  Conv2d conv{nullptr};
};
TORCH_MODULE(ResizeConv);

/// One U-Net level: down, the inner levels, up; its output is cat(input, inner output) except at
/// the outermost level. Layer indices in `model` follow the reference so state_dict keys match.
class UNetBlockImpl : public torch::nn::Module {
 public:
  UNetBlockImpl(int64_t outer_nc, int64_t inner_nc, int64_t input_nc,
                torch::nn::AnyModule submodule, bool outermost, bool innermost,
                const GeneratorOptions& options, bool use_dropout);
  at::Tensor forward(at::Tensor x);

  bool outermost;
  torch::nn::Sequential model{nullptr};
};
TORCH_MODULE(UNetBlock);

/// The ResNet's residual block: x + (pad, conv, norm, relu, [dropout], pad, conv, norm)(x).
struct ResNetBlockImpl : torch::nn::Module {
  ResNetBlockImpl(int64_t dim, const GeneratorOptions& options);
  at::Tensor forward(at::Tensor x) { return x + conv_block->forward(x); }
  torch::nn::Sequential conv_block{nullptr};
};
TORCH_MODULE(ResNetBlock);

}  // namespace pix2pix::detail
