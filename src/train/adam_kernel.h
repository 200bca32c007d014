// The fused Adam update over one contiguous float buffer (private). Kept free of torch headers
// and compiled with its own flags (see CMakeLists.txt) so that its arithmetic is exactly torch's;
// the AVX2 + FMA form is chosen at run time (pix2pix/cpu.h).
#pragma once

#include <cstddef>
#include <cstdint>

namespace pix2pix::detail {

/// Hyper-parameters of one Adam step, as torch computes them (in double, then used as float).
struct AdamStep {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step;  ///< 1-based step count of this parameter
};

/// Which compiled form of the update runs. Both give the same bits.
enum class AdamKernel {
  kPortable,  ///< the architecture's baseline (fma through libm where the CPU lacks it)
  kAvx2Fma,   ///< AVX2 + FMA (x86-64); falls back to kPortable on a CPU without them
};
/// kAvx2Fma where the CPU has AVX2 and FMA and PIX2PIX_KERNELS does not force portable kernels.
AdamKernel default_adam_kernel();
/// "portable" or "avx2_fma".
const char* to_string(AdamKernel kernel);

/// One Adam step in a single pass over n elements: weight decay (L2, as torch.optim.Adam),
/// first and second moments, bias corrections, update. Bitwise equal to torch.optim.Adam (1.13,
/// CPU, single-tensor path). When bf16_copy is not null, it receives the updated parameters
/// rounded to bfloat16 (nearest even, as Tensor.to(kBFloat16)) while they are still in cache.
void adam_update(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, size_t n,
                 const AdamStep& hyper, uint16_t* bf16_copy = nullptr,
                 AdamKernel kernel = default_adam_kernel());
/// The same with a bfloat16 gradient (its bits): each value is widened to float exactly, so the
/// result equals the float version given the widened gradient.
void adam_update(float* param, const uint16_t* bf16_grad, float* exp_avg, float* exp_avg_sq,
                 size_t n, const AdamStep& hyper, uint16_t* bf16_copy = nullptr,
                 AdamKernel kernel = default_adam_kernel());

/// True when none of the n floats is infinite or NaN (one vectorised pass over the bits).
bool all_finite(const float* data, size_t n);
/// The same for n bfloat16 values (their bits).
bool all_finite(const uint16_t* bf16, size_t n);

}  // namespace pix2pix::detail
