// bfloat16 matrix products with one small dimension, on hand-written AVX-512 BF16 kernels
// (private to the library). The U-Net's innermost layers run as im2col + one matrix product
// (ComputeOptions::matmul_max_side): a 512 x 8192 or 1024 x 8192 weight times a map of 1 to 16
// pixels, and the weight gradient as the sum of as few outer products. oneDNN's matmul repacks
// the weight into its kernels' layout on every call, which dominates such products; these
// kernels read the weight once, as it lies (row by row), and multiply with the vdpbf16ps
// instruction: exact products of bfloat16 pairs summed in float32, rounded once to bfloat16 at
// the end (nearest even), as oneDNN does; only the order of the float32 sums differs.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace pix2pix::detail {

/// The largest small dimension the kernels take. Measured with bench/small_product: faster than
/// at::mm for every U-Net product with a dimension of 1, 4 or 16, slower at 64.
constexpr int64_t kSmallProductMaxDim = 16;

/// Whether the kernels run here: the CPU has AVX-512 F, BW, VL and BF16 (pix2pix::cpu_features())
/// and PIX2PIX_KERNELS does not force portable kernels.
bool small_product_supported();

/// a · b for 2-D CPU bfloat16 matrices where the rows of a, the columns of b or the shared
/// dimension is at most kSmallProductMaxDim (8 where the large operand's rows run along the
/// shared dimension: dot products, slower than at::mm at 16), each operand laid out by rows or by
/// columns (a matrix or a transposed matrix, with any leading stride). The result is bfloat16, laid
/// out by rows, or by columns where that saves a copy (a transposed view). Returns an undefined
/// tensor where the kernels do not apply (other shapes, dtypes or layouts, or a CPU without the
/// instructions): the caller then uses at::mm. Not differentiable (see product()). max_dim
/// other than kSmallProductMaxDim is for measuring (bench/small_product).
at::Tensor small_product(const at::Tensor& a, const at::Tensor& b,
                         int64_t max_dim = kSmallProductMaxDim);

/// at::mm(a, b), differentiable, with every product forward and backward on small_product()
/// where it applies (use_small_product), else on at::mm.
at::Tensor product(const at::Tensor& a, const at::Tensor& b, bool use_small_product);

}  // namespace pix2pix::detail
