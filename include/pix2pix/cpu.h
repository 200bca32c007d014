// What this CPU offers, detected once at run time: the instruction-set features the library's
// hand-written kernels and its bfloat16 precision depend on. The library is compiled for its
// architecture's baseline; each kernel is built for its own target and chosen from these
// features when it runs, with a portable fallback that gives the same numbers.
// To add a feature: a field here, its detection and name in src/cpu.cpp.
#pragma once

#include <string>
#include <vector>

namespace pix2pix {

/// Instruction-set features of the CPU (those the library uses or reports).
struct CpuFeatures {
  std::string architecture;  ///< "x86_64", "aarch64", or the build's architecture name
  // x86-64
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512_bf16 = false;  ///< AVX-512 BF16 (vdpbf16ps)
  bool amx_bf16 = false;     ///< AMX tiles with bfloat16 (and enabled by the OS)
  // arm64
  bool asimd = false;
  bool arm_bf16 = false;  ///< the Armv8.6 BF16 instructions

  /// The names of the features present, e.g. {"avx2", "fma", "avx512f"}.
  std::vector<std::string> names() const;
  /// "x86_64 (avx2 fma)", or "x86_64 (baseline)" when none is present.
  std::string describe() const;
  /// Whether the CPU computes in bfloat16 natively (AVX-512 BF16 or AMX on x86-64, BF16 on
  /// arm64): Precision::kBFloat16 needs it.
  bool bf16_arithmetic() const;
  /// The AVX2 + FMA kernels (the fused Adam update) can run.
  bool avx2_fma() const { return avx2 && fma; }
  /// The AVX-512 BF16 kernels (small bfloat16 matrix products) can run.
  bool avx512_bf16_kernels() const { return avx512f && avx512bw && avx512vl && avx512_bf16; }
};

/// The features of the CPU this process runs on, detected on the first call. The environment
/// variable PIX2PIX_CPU_FEATURES (a comma-separated list of the names above, or "none") keeps only
/// the features it names, to run on this CPU as on a lesser one (tests and benchmarks); an
/// unknown name throws pix2pix::Error.
const CpuFeatures& cpu_features();

/// The features as detected, ignoring PIX2PIX_CPU_FEATURES.
CpuFeatures detect_cpu_features();

/// True when the environment variable PIX2PIX_KERNELS is "portable": every hand-written ISA
/// kernel is replaced by its portable fallback (same numbers), whatever the CPU has. "native"
/// or unset: the best kernel the CPU runs. Read once.
bool portable_kernels_forced();

}  // namespace pix2pix
