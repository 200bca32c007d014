#include "pix2pix/cpu.h"

#include <cstdlib>
#include <sstream>
#include <utility>

#include "pix2pix/error.h"

#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace pix2pix {

namespace {

// Every feature with its name, in the order names() lists them.
template <typename Features, typename Visit>
void for_each_feature(Features& f, Visit visit) {
  visit("avx2", f.avx2);
  visit("fma", f.fma);
  visit("avx512f", f.avx512f);
  visit("avx512bw", f.avx512bw);
  visit("avx512vl", f.avx512vl);
  visit("avx512_bf16", f.avx512_bf16);
  visit("amx_bf16", f.amx_bf16);
  visit("asimd", f.asimd);
  visit("bf16", f.arm_bf16);
}

#if defined(__x86_64__)
// AMX needs the CPU's tiles and the OS's consent to save their state (XCR0 bits 17 and 18).
bool amx_bf16_usable() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  const bool amx_bf16 = (edx >> 22) & 1u, amx_tile = (edx >> 24) & 1u;
  const bool osxsave = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && ((ecx >> 27) & 1u);
  if (!amx_bf16 || !amx_tile || !osxsave) return false;
  unsigned xcr0_low, xcr0_high;
  __asm__("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
  return (xcr0_low & 0x60000u) == 0x60000u;
}
#endif

CpuFeatures apply_mask(CpuFeatures features, const std::string& mask) {
  std::vector<std::string> keep;
  std::stringstream list(mask);
  for (std::string name; std::getline(list, name, ',');)
    if (!name.empty() && name != "none") keep.push_back(name);
  const CpuFeatures all_names{};
  for (const auto& name : keep) {
    bool known = false;
    for_each_feature(all_names, [&](const char* feature, bool) { known |= name == feature; });
    if (!known)
      throw Error("PIX2PIX_CPU_FEATURES",
                  "unknown feature '" + name +
                      "' (expected a comma-separated list of avx2, fma, avx512f, avx512bw, "
                      "avx512vl, avx512_bf16, amx_bf16, asimd, bf16, or none)");
  }
  for_each_feature(features, [&](const char* feature, bool& present) {
    bool kept = false;
    for (const auto& name : keep) kept |= name == feature;
    present = present && kept;
  });
  return features;
}

}  // namespace

CpuFeatures detect_cpu_features() {
  CpuFeatures f;
#if defined(__x86_64__)
  f.architecture = "x86_64";
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx512_bf16 = __builtin_cpu_supports("avx512bf16");
  f.amx_bf16 = amx_bf16_usable();
#elif defined(__aarch64__)
  f.architecture = "aarch64";
#if defined(__linux__)
  const unsigned long hwcap = getauxval(AT_HWCAP), hwcap2 = getauxval(AT_HWCAP2);
  f.asimd = (hwcap >> 1) & 1ul;       // HWCAP_ASIMD
  f.arm_bf16 = (hwcap2 >> 14) & 1ul;  // HWCAP2_BF16
#endif
#else
  f.architecture = "other";
#endif
  return f;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = [] {
    const char* mask = std::getenv("PIX2PIX_CPU_FEATURES");
    return mask ? apply_mask(detect_cpu_features(), mask) : detect_cpu_features();
  }();
  return features;
}

bool portable_kernels_forced() {
  static const bool forced = [] {
    const char* value = std::getenv("PIX2PIX_KERNELS");
    const std::string kernels = value ? value : "native";
    if (kernels != "native" && kernels != "portable" && !kernels.empty())
      throw Error("PIX2PIX_KERNELS",
                  "unknown value '" + kernels + "' (expected native or portable)");
    return kernels == "portable";
  }();
  return forced;
}

std::vector<std::string> CpuFeatures::names() const {
  std::vector<std::string> present;
  for_each_feature(*this, [&](const char* name, bool has) {
    if (has) present.emplace_back(name);
  });
  return present;
}

std::string CpuFeatures::describe() const {
  std::string text;
  for (const auto& name : names()) text += (text.empty() ? "" : " ") + name;
  return architecture + " (" + (text.empty() ? "baseline" : text) + ")";
}

bool CpuFeatures::bf16_arithmetic() const { return avx512_bf16 || amx_bf16 || arm_bf16; }

}  // namespace pix2pix
