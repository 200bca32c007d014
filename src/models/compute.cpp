#include "pix2pix/models/compute.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "models/convolution.h"
#include "names_table.h"
#include "pix2pix/cpu.h"
#include "pix2pix/device.h"
#include "pix2pix/error.h"

namespace pix2pix {

namespace {

// Empty where bf16 runs, else why not. It needs the CPU's bfloat16 instructions and oneDNN
// kernels for them: Debian's oneDNN 2.6 has none on AVX2 and none for arm64 (built without the
// Arm Compute Library), so a tiny bfloat16 convolution and product are tried once.
const std::string& bf16_unavailable_reason() {
  static const std::string reason = []() -> std::string {
    const CpuFeatures& cpu = cpu_features();
    if (!cpu.bf16_arithmetic())
      return "bf16 needs a CPU with bfloat16 instructions (AVX-512 BF16 or AMX on x86-64, BF16 on "
             "arm64), and this one has none (" +
             cpu.describe() + "): use fp32";
    try {
      const auto bf16 = at::TensorOptions().dtype(at::kBFloat16);
      at::conv2d(at::ones({1, 2, 4, 4}, bf16), at::ones({2, 2, 3, 3}, bf16));
      at::mm(at::ones({4, 4}, bf16), at::ones({4, 4}, bf16));
    } catch (const std::exception&) {
      return "bf16 needs oneDNN's bfloat16 kernels for this CPU (" + cpu.describe() +
             "), and the oneDNN this was built with has none: use fp32";
    }
    return "";
  }();
  return reason;
}

}  // namespace

template <>
const std::vector<std::string>& names<Precision>() {
  static const std::vector<std::string> list = {"fp32", "bf16"};
  return list;
}

Precision parse_precision(const std::string& name) {
  if (const std::optional<Precision> precision = detail::find_name<Precision>(name))
    return *precision;
  if (name == "float32") return Precision::kFloat32;
  if (name == "bfloat16") return Precision::kBFloat16;
  if (name == "auto")
    return bf16_unavailable_reason().empty() ? Precision::kBFloat16 : Precision::kFloat32;
  std::vector<std::string> known = names<Precision>();
  known.push_back("auto");
  throw Error::option(
      "precision", "unknown precision '" + name + "' (expected " + detail::list_names(known) + ")");
}

void check_precision_supported(Precision precision, const c10::Device& device) {
  // GPUs: cuDNN computes bfloat16 on Ampere and newer (the H100/H200 this was written for).
  if (device.is_cpu() && precision == Precision::kBFloat16 && !bf16_unavailable_reason().empty())
    throw Error::option("precision", bf16_unavailable_reason());
}

std::string to_string(Precision precision) { return detail::name_of(precision); }

template <>
const std::vector<std::string>& names<TransposedConv>() {
  static const std::vector<std::string> list = {"native", "gradient", "auto"};
  return list;
}

TransposedConv parse_transposed_conv(const std::string& name) {
  return detail::parse_name<TransposedConv>(name, "transposed_conv", "mode");
}

std::string to_string(TransposedConv mode) { return detail::name_of(mode); }

int64_t set_compute(torch::nn::Module& module, const ComputeOptions& options) {
  check_precision_supported(options.precision, device_of(module));
  if (options.gradient_min_side < 1)
    throw Error("ComputeOptions", "gradient_min_side must be at least 1");
  if (options.matmul_max_side < 0 || options.matmul_max_side_transposed < 0 ||
      options.matmul_max_side_float32 < 0)
    throw Error("ComputeOptions",
                "matmul_max_side, matmul_max_side_transposed and matmul_max_side_float32 must be "
                ">= 0");
  int64_t count = 0;
  detail::for_each_convolution(module, [&](auto& layer) {
    layer.compute = options;
    ++count;
  });
  return count;
}

int64_t place(torch::nn::Module& module, const ComputeOptions& options) {
  module.to(options.device);
  configure_device(options.device);
  return set_compute(module, options);
}

}  // namespace pix2pix
