// Convolution layers whose arithmetic follows ComputeOptions (private to the library). They are
// torch's Conv2d and ConvTranspose2d (same parameters, state_dict keys and initialisation) with
// a forward that can run in bfloat16 and compute transposed convolutions as convolution
// gradients. The generators and discriminators build their convolutions from these.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/conv.h>

#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

#include "models/onednn_convolution.h"
#include "pix2pix/models/compute.h"

namespace pix2pix::detail {

/// The output side of a transposed convolution (dilation 1): (input - 1) * stride - 2 padding +
/// kernel + output padding.
int64_t transposed_output_side(int64_t input, int64_t kernel, int64_t stride, int64_t padding,
                               int64_t output_padding);

/// conv_transpose2d(x, weight, no bias, stride, padding, output_padding) (dilation 1, groups 1)
/// computed as the input gradient of conv2d(., weight, stride, padding): forward and backward
/// run on oneDNN's convolution kernels. Differentiable in x and weight; any float dtype.
at::Tensor conv_transpose2d_as_gradient(const at::Tensor& x, const at::Tensor& weight,
                                        std::vector<int64_t> stride, std::vector<int64_t> padding,
                                        std::vector<int64_t> output_padding);

/// Keeps the bfloat16 working copy of a float32 parameter. The copy is current while the
/// parameter's storage is the same and the parameter and the copy have changed in place equally
/// often since the copy was made: pix2pix::Adam::set_bfloat16_copy rewrites the copy in the same
/// pass as each step and bumps both versions. Any other in-place change of the parameter (a
/// step without the copy registered, loading a checkpoint) makes the copy stale, and it is then
/// refreshed (in place) on the next use.
class Bf16Cache {
 public:
  Bf16Cache() = default;
  // A copied layer starts without a copy: sharing one would let either layer refresh the
  // other's in place.
  Bf16Cache(const Bf16Cache&) {}
  Bf16Cache& operator=(const Bf16Cache&) {
    copy_ = at::Tensor();
    sum_ = at::Tensor();
    data_ = nullptr;
    version_offset_ = 0;
    return *this;
  }

  /// `parameter` in bfloat16. While autograd records and the parameter requires a gradient,
  /// the copy is differentiable: its gradient is left, in bfloat16, on `parameter.grad()` (summed
  /// in float32 when several arrive), never cast back to float32 by autograd.
  at::Tensor get(const at::Tensor& parameter);
  /// The copy itself, made current (not differentiable): what an optimiser keeps up to date.
  at::Tensor current(const at::Tensor& parameter);

 private:
  at::Tensor copy_;
  /// Float32 buffer, kept from step to step, in which a weight used more than once per backward
  /// pass (the discriminator on fake and real pairs) sums its bfloat16 gradients: a fresh
  /// weight-sized allocation every step costs more in page faults than the sum itself.
  at::Tensor sum_;
  const void* data_ = nullptr;
  int64_t version_offset_ = 0;  ///< parameter's version minus copy's when the copy was made
  std::mutex mutex_;  ///< translations on several threads may meet a layer without its copy
};

/// torch::nn::Conv2d whose forward follows `compute`.
class Conv2dImpl : public torch::nn::Conv2dImpl {
 public:
  using torch::nn::Conv2dImpl::Conv2dImpl;
  at::Tensor forward(const at::Tensor& input);
  /// The weight's bfloat16 working copy (made current), used when `compute` is bfloat16.
  at::Tensor bf16_weight() { return weight16_.current(weight); }
  ComputeOptions compute;

 private:
  Bf16Cache weight16_;
  OnednnWeights packed_;  ///< the working copy in oneDNN's layouts (ComputeOptions::onednn_direct)
};
TORCH_MODULE(Conv2d);

/// torch::nn::ConvTranspose2d whose forward follows `compute`.
class ConvTranspose2dImpl : public torch::nn::ConvTranspose2dImpl {
 public:
  using torch::nn::ConvTranspose2dImpl::ConvTranspose2dImpl;
  at::Tensor forward(const at::Tensor& input,
                     const c10::optional<at::IntArrayRef>& output_size = c10::nullopt);
  /// The weight's bfloat16 working copy (made current), used when `compute` is bfloat16.
  at::Tensor bf16_weight() { return weight16_.current(weight); }
  ComputeOptions compute;

 protected:
  FORWARD_HAS_DEFAULT_ARGS({1, torch::nn::AnyValue(c10::optional<at::IntArrayRef>())})

 private:
  Bf16Cache weight16_;
  OnednnWeights packed_;  ///< the working copy in oneDNN's layouts (ComputeOptions::onednn_direct)
};
TORCH_MODULE(ConvTranspose2d);

/// Calls `visit` with every convolution layer of this library inside `module` (itself
/// included): a Conv2dImpl& or a ConvTranspose2dImpl&.
template <typename Visit>
void for_each_convolution(torch::nn::Module& module, Visit visit) {
  auto one = [&](torch::nn::Module& layer) {
    if (auto* conv = dynamic_cast<Conv2dImpl*>(&layer))
      visit(*conv);
    else if (auto* transposed = dynamic_cast<ConvTranspose2dImpl*>(&layer))
      visit(*transposed);
  };
  one(module);
  for (const auto& child : module.modules(/*include_self=*/false)) one(*child);
}

/// Every convolution weight inside `module` whose layer computes in bfloat16, with its working
/// copy (made current): the pairs an optimiser registers with Adam::set_bfloat16_copy.
std::vector<std::pair<at::Tensor, at::Tensor>> bf16_working_copies(torch::nn::Module& module);

}  // namespace pix2pix::detail
