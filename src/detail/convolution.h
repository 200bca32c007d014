// Convolution layers whose arithmetic follows ComputeOptions (private to the library). They are
// torch's Conv2d and ConvTranspose2d (same parameters, state_dict keys and initialisation) with
// a forward that can run in bfloat16 and compute transposed convolutions as convolution
// gradients. The generators and discriminators build their convolutions from these.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/conv.h>

#include <cstdint>
#include <vector>

#include "pix2pix/compute.h"

namespace pix2pix::detail {

/// conv_transpose2d(x, weight, no bias, stride, padding, output_padding) (dilation 1, groups 1)
/// computed as the input gradient of conv2d(., weight, stride, padding): forward and backward
/// run on oneDNN's convolution kernels. Differentiable in x and weight; any float dtype.
at::Tensor conv_transpose2d_as_gradient(const at::Tensor& x, const at::Tensor& weight,
                                        std::vector<int64_t> stride, std::vector<int64_t> padding,
                                        std::vector<int64_t> output_padding);

/// Keeps the bfloat16 working copy of a float32 parameter: it is refreshed (in place) when the
/// parameter's storage or version (any in-place change, such as an optimiser step) differs.
class Bf16Cache {
 public:
  Bf16Cache() = default;
  // A copied layer starts without a copy: sharing one would let either layer refresh the
  // other's in place.
  Bf16Cache(const Bf16Cache&) {}
  Bf16Cache& operator=(const Bf16Cache&) {
    copy_ = at::Tensor();
    data_ = nullptr;
    version_ = -1;
    return *this;
  }

  /// `parameter` in bfloat16. While autograd records and the parameter requires a gradient,
  /// the copy is differentiable: its gradient is left, in bfloat16, on `parameter.grad()` (summed
  /// in float32 when several arrive), never cast back to float32 by autograd.
  at::Tensor get(const at::Tensor& parameter);

 private:
  at::Tensor copy_;
  const void* data_ = nullptr;
  int64_t version_ = -1;
};

/// torch::nn::Conv2d whose forward follows `compute`.
class Conv2dImpl : public torch::nn::Conv2dImpl {
 public:
  using torch::nn::Conv2dImpl::Conv2dImpl;
  at::Tensor forward(const at::Tensor& input);
  ComputeOptions compute;

 private:
  Bf16Cache weight16_;
};
TORCH_MODULE(Conv2d);

/// torch::nn::ConvTranspose2d whose forward follows `compute`.
class ConvTranspose2dImpl : public torch::nn::ConvTranspose2dImpl {
 public:
  using torch::nn::ConvTranspose2dImpl::ConvTranspose2dImpl;
  at::Tensor forward(const at::Tensor& input,
                     const c10::optional<at::IntArrayRef>& output_size = c10::nullopt);
  ComputeOptions compute;

 protected:
  FORWARD_HAS_DEFAULT_ARGS({1, torch::nn::AnyValue(c10::optional<at::IntArrayRef>())})

 private:
  Bf16Cache weight16_;
};
TORCH_MODULE(ConvTranspose2d);

}  // namespace pix2pix::detail
