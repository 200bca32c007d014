// bfloat16 and float32 convolutions on the CPU called on oneDNN directly (private to the
// library): the same kernels libtorch's at::conv2d and at::convolution_backward run there,
// without the reorders libtorch repeats on every call. The weights are reordered into the
// layouts the kernels read once per change (once per optimiser step; once for good in inference)
// instead of on every call; the input is reordered once, in the forward pass, and kept in the
// kernels' layout for the weight gradient; the output gradient is reordered once for both
// backward products. Numbers are those of libtorch's convolution (same kernels, same arithmetic).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace pix2pix::detail {

/// A layer's weight (float32, or its bfloat16 working copy) in the layouts oneDNN's kernels read,
/// kept from call to call and repacked when the weight changes (its storage, version or shape).
/// A packed buffer still held by a graph that has not run backward is never overwritten: a new one
/// is made. Packing is locked: translations on several threads may meet an unpacked layer at once.
class OnednnWeights {
 public:
  OnednnWeights();
  ~OnednnWeights();
  // A copied layer starts without packed weights (as Bf16Cache).
  OnednnWeights(const OnednnWeights&);
  OnednnWeights& operator=(const OnednnWeights&);

  struct Packed;  ///< one layout's buffer and what it was packed from

 private:
  friend struct OnednnAccess;
  std::unique_ptr<Packed> forward_, backward_data_;
  std::mutex mutex_;  ///< held while a layout is checked and packed
};

/// Whether the direct oneDNN path takes a convolution with these settings: a CPU bfloat16 or
/// float32 input of 4 dimensions, groups 1.
bool onednn_direct_applies(const at::Tensor& x, int64_t groups);

/// How many convolution geometries (input, weight, stride, padding and dilation sizes) the
/// direct path keeps oneDNN primitives for, the most recently used: as oneDNN's own primitive
/// cache.
constexpr size_t kOnednnPrimitiveCapacity = 1024;

/// Sets that bound (dropping the least recently used geometries beyond it); for tests.
void set_onednn_primitive_capacity(size_t capacity);

/// How many geometries the direct path holds primitives for now.
size_t onednn_primitive_count();

/// conv2d(x, weight) without bias (groups 1, zero padding): x N x C x H x W, weight the layer's
/// float32 weight or bfloat16 working copy (O x C x kH x kW; may carry autograd history), whose
/// type x is converted to. Differentiable in x and weight; the gradients have the weight's type,
/// as libtorch's.
at::Tensor onednn_conv2d(const at::Tensor& x, const at::Tensor& weight, OnednnWeights& packed,
                         const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                         const std::vector<int64_t>& dilation);

/// conv_transpose2d(x, weight) without bias (groups 1, dilation 1, zero padding) computed as the
/// input gradient of conv2d(., weight): weight C_in x C_out x kH x kW. Differentiable in x and
/// weight, as conv_transpose2d_as_gradient, whose operations it runs.
at::Tensor onednn_conv_transpose2d(const at::Tensor& x, const at::Tensor& weight,
                                   OnednnWeights& packed, const std::vector<int64_t>& stride,
                                   const std::vector<int64_t>& padding,
                                   const std::vector<int64_t>& output_padding);

}  // namespace pix2pix::detail
