#include "train/adam_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "pix2pix/cpu.h"

// The AVX2 + FMA form is this file's only ISA-specific code: compiled for that target whatever
// the build's flags, and called only where the CPU has it.
#if defined(__x86_64__)
#define PIX2PIX_AVX2_FMA_KERNEL __attribute__((target("avx2,fma")))
#endif

namespace pix2pix::detail {

namespace {

// The gradient as float: itself, or a bfloat16's bits widened (exact).
inline float to_float(float g) { return g; }
inline float to_float(uint16_t bf16_bits) {
  const uint32_t bits = static_cast<uint32_t>(bf16_bits) << 16;
  float g;
  std::memcpy(&g, &bits, sizeof g);
  return g;
}

// float -> bfloat16 bits, rounded to nearest even as c10::BFloat16 (and Tensor.to) rounds.
// NaN becomes the quiet NaN 0x7fc0 (branch-free, so the loop vectorises).
inline uint16_t to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  const uint32_t rounded = (bits + ((bits >> 16) & 1u) + 0x7fffu) >> 16;
  return static_cast<uint16_t>((bits & 0x7fffffffu) > 0x7f800000u ? 0x7fc0u : rounded);
}

// Elements per block when a bfloat16 copy is written: the block's updated parameters are still
// in L1 when they are rounded.
constexpr size_t kCopyBlock = 2048;

// Inlined into each target's entry point below, so that it is vectorised for that target. Both
// forms give the same bits: std::fma is exact (an instruction or libm), sqrt and / are IEEE.
template <typename Grad>
inline __attribute__((always_inline)) void update(float* param, const Grad* grad, float* exp_avg,
                                                  float* exp_avg_sq, size_t n,
                                                  const AdamStep& hyper, uint16_t* bf16_copy) {
  // torch: exp_avg.mul_(b1).add_(g, 1 - b1); exp_avg_sq.mul_(b2).addcmul_(g, g, 1 - b2);
  // denom = exp_avg_sq.sqrt() / sqrt(bc2) + eps; param.addcdiv_(exp_avg, denom, -lr / bc1).
  // Scalars are computed in double and used as float, as ATen's float kernels do; ATen's
  // vectorised kernels contract a + alpha * b into one fma, so we write the fmas explicitly and
  // forbid any other contraction (-ffp-contract=off for this file).
  const float b1 = static_cast<float>(hyper.beta1);
  const float one_minus_b1 = static_cast<float>(1.0 - hyper.beta1);
  const float b2 = static_cast<float>(hyper.beta2);
  const float one_minus_b2 = static_cast<float>(1.0 - hyper.beta2);
  const double bias_correction1 = 1.0 - std::pow(hyper.beta1, static_cast<double>(hyper.step));
  const double bias_correction2 = 1.0 - std::pow(hyper.beta2, static_cast<double>(hyper.step));
  const float step_size = static_cast<float>(-hyper.lr / bias_correction1);
  const float bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  const float eps = static_cast<float>(hyper.eps);
  const float weight_decay = static_cast<float>(hyper.weight_decay);
  const size_t block = bf16_copy ? kCopyBlock : n;  // one pass when there is no copy
  for (size_t begin = 0; begin < n; begin += block) {
    const size_t end = std::min(n, begin + block);
    for (size_t i = begin; i < end; ++i) {
      float g = to_float(grad[i]);
      if (weight_decay != 0.0f) g = std::fma(param[i], weight_decay, g);
      const float m = std::fma(g, one_minus_b1, exp_avg[i] * b1);
      const float v = std::fma(one_minus_b2 * g, g, exp_avg_sq[i] * b2);
      exp_avg[i] = m;
      exp_avg_sq[i] = v;
      const float denom = std::sqrt(v) / bias_correction2_sqrt + eps;
      param[i] = param[i] + (step_size * m) / denom;
    }
    // A second sweep over the block just written (in cache) keeps both loops vectorised.
    if (bf16_copy)
      for (size_t i = begin; i < end; ++i) bf16_copy[i] = to_bf16(param[i]);
  }
}

template <typename Grad>
void update_portable(float* param, const Grad* grad, float* exp_avg, float* exp_avg_sq, size_t n,
                     const AdamStep& hyper, uint16_t* bf16_copy) {
  update(param, grad, exp_avg, exp_avg_sq, n, hyper, bf16_copy);
}

#if defined(PIX2PIX_AVX2_FMA_KERNEL)
template <typename Grad>
PIX2PIX_AVX2_FMA_KERNEL void update_avx2_fma(float* param, const Grad* grad, float* exp_avg,
                                             float* exp_avg_sq, size_t n, const AdamStep& hyper,
                                             uint16_t* bf16_copy) {
  update(param, grad, exp_avg, exp_avg_sq, n, hyper, bf16_copy);
}
#endif

template <typename Grad>
void dispatch(float* param, const Grad* grad, float* exp_avg, float* exp_avg_sq, size_t n,
              const AdamStep& hyper, uint16_t* bf16_copy, AdamKernel kernel) {
#if defined(PIX2PIX_AVX2_FMA_KERNEL)
  if (kernel == AdamKernel::kAvx2Fma && cpu_features().avx2_fma())
    return update_avx2_fma(param, grad, exp_avg, exp_avg_sq, n, hyper, bf16_copy);
#else
  (void)kernel;  // the portable form is the only one on this architecture
#endif
  update_portable(param, grad, exp_avg, exp_avg_sq, n, hyper, bf16_copy);
}

}  // namespace

AdamKernel default_adam_kernel() {
  static const AdamKernel kernel = cpu_features().avx2_fma() && !portable_kernels_forced()
                                       ? AdamKernel::kAvx2Fma
                                       : AdamKernel::kPortable;
  return kernel;
}

const char* to_string(AdamKernel kernel) {
  return kernel == AdamKernel::kAvx2Fma ? "avx2_fma" : "portable";
}

void adam_update(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, size_t n,
                 const AdamStep& hyper, uint16_t* bf16_copy, AdamKernel kernel) {
  dispatch(param, grad, exp_avg, exp_avg_sq, n, hyper, bf16_copy, kernel);
}

void adam_update(float* param, const uint16_t* bf16_grad, float* exp_avg, float* exp_avg_sq,
                 size_t n, const AdamStep& hyper, uint16_t* bf16_copy, AdamKernel kernel) {
  dispatch(param, bf16_grad, exp_avg, exp_avg_sq, n, hyper, bf16_copy, kernel);
}

bool all_finite(const float* data, size_t n) {
  // A float is infinite or NaN exactly when its exponent bits are all ones.
  const auto* bits = reinterpret_cast<const uint32_t*>(data);
  uint32_t bad = 0;
  for (size_t i = 0; i < n; ++i)
    bad |= static_cast<uint32_t>((bits[i] & 0x7f800000u) == 0x7f800000u);
  return bad == 0;
}

bool all_finite(const uint16_t* bf16, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; ++i) bad |= static_cast<uint32_t>((bf16[i] & 0x7f80u) == 0x7f80u);
  return bad == 0;
}

}  // namespace pix2pix::detail
