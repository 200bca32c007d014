// How the networks compute: numeric precision (float32, or bfloat16 convolutions with float32
// master weights) and how transposed convolutions run (libtorch's ConvTranspose2d, or the same
// operation computed as the input gradient of a convolution, which runs on oneDNN). Weights,
// state_dict keys and shapes are the same whatever is chosen; only speed and rounding differ.
// To add a precision: extend Precision and the convolution layers in src/models/convolution.cpp.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <vector>

#include "pix2pix/names.h"

namespace torch::nn {
class Module;
}

namespace pix2pix {

/// The arithmetic of the convolutions.
enum class Precision {
  kFloat32,   ///< everything in float32 (the reference's numbers)
  kBFloat16,  ///< convolutions in bfloat16 (each layer keeps a bfloat16 working copy of its
              ///< float32 master weight); activations stay bfloat16 between layers, while
              ///< norm statistics, biases, outputs and losses are float32. What is kept in
              ///< which type: docs/performance.md, "include/pix2pix/models/compute.h".
};
/// The precisions' names (names.h); parse_precision also takes "auto".
template <>
const std::vector<std::string>& names<Precision>();

/// "fp32" | "bf16" | "auto" (also "float32", "bfloat16"). "auto" is bf16 where the CPU computes
/// in bfloat16 natively (cpu_features().bf16_arithmetic()), else fp32.
Precision parse_precision(const std::string& name);
/// Throws Error (field "precision") when `precision` cannot run on this CPU: bf16 needs
/// bfloat16 instructions (AVX-512 BF16 or AMX on x86-64, BF16 on arm64). Without them oneDNN
/// has no bfloat16 convolutions and emulates bfloat16 products far slower than float32. On a GPU
/// nothing is checked here.
void check_precision_supported(Precision precision,
                               const c10::Device& device = c10::Device(c10::kCPU));
/// "fp32" or "bf16".
std::string to_string(Precision precision);

/// How ConvTranspose2d layers run in float32 (bfloat16 always uses the gradient form: libtorch
/// 1.13's bfloat16 conv_transpose2d gives wrong results).
enum class TransposedConv {
  kNative,    ///< torch's conv_transpose2d: the reference's operations, bit for bit
  kGradient,  ///< the input gradient of a convolution (oneDNN): equal within float rounding
  kAuto,      ///< the fastest form measured here: a matrix product on small maps (input side
              ///< <= matmul_max_side_transposed), else the gradient form where the input side
              ///< is >= gradient_min_side, else torch's; also convolutions on maps of at most
              ///< matmul_max_side_float32 a side as a matrix product
};
/// The transposed-convolution forms' names (names.h).
template <>
const std::vector<std::string>& names<TransposedConv>();

/// "native" | "gradient" | "auto".
TransposedConv parse_transposed_conv(const std::string& name);
std::string to_string(TransposedConv mode);

/// Compute settings of a network's convolution layers. The default is float32 with
/// TransposedConv::kAuto: numbers within float rounding (about 1e-6) of the reference's, faster.
/// TransposedConv::kNative gives the reference's numbers bit for bit. The size thresholds below
/// are one set for every x86-64 CPU: measured with bench/layer_speed on AVX-512 (Zen 5) and with
/// the libraries held to AVX2, the same values win (docs/cpus.md, "Speed on AVX2").
struct ComputeOptions {
  Precision precision = Precision::kFloat32;
  TransposedConv transposed = TransposedConv::kAuto;
  /// With kAuto, the smallest input height and width computed in the gradient form; below it
  /// libtorch's own path is faster (docs/performance.md, "include/pix2pix/models/compute.h").
  int64_t gradient_min_side = 8;
  /// bfloat16 only: convolutions whose input is at most this many pixels on its longer side run
  /// as im2col and one matrix product, which reads the weights as they are where oneDNN reorders
  /// them on every call; 0 turns this off (docs/performance.md,
  /// "include/pix2pix/models/compute.h").
  int64_t matmul_max_side = 16;
  /// The same for transposed convolutions (a matrix product and col2im). Also applies in float32
  /// with TransposedConv::kAuto (numbers within float rounding of the reference's), where it
  /// takes precedence over gradient_min_side (docs/performance.md,
  /// "include/pix2pix/models/compute.h").
  int64_t matmul_max_side_transposed = 8;
  /// Float32 with TransposedConv::kAuto: convolutions (not transposed) whose input is at most
  /// this many pixels on its longer side run as im2col and one matrix product (numbers within
  /// float rounding of the reference's); 0 turns this off (docs/performance.md,
  /// "include/pix2pix/models/compute.h").
  int64_t matmul_max_side_float32 = 2;
  /// On the CPU, in bfloat16 and in float32 outside TransposedConv::kNative: the convolutions
  /// oneDNN runs (all but the matrix-product ones) call oneDNN directly, so that each weight is
  /// reordered once per change (per optimiser step; once in inference) rather than on every call
  /// as libtorch's conv2d does. The same kernels and numbers as libtorch's convolution (a bias is
  /// added after the sum: within one float rounding). false: libtorch (docs/performance.md,
  /// "include/pix2pix/models/compute.h").
  bool onednn_direct = true;
  /// bfloat16 on a CPU with AVX-512 BF16: the matrix products of the forms above with a
  /// dimension of at most 16 (8 where the weight's rows run along the summed dimension) run on
  /// this library's kernels, which read the weight as it lies where oneDNN's matmul repacks it on
  /// every call; only the order of the float32 sums differs. false: oneDNN's matmul
  /// (docs/performance.md, "include/pix2pix/models/compute.h").
  bool small_products = true;
  /// Where the networks run (device.h): the trainer and the CLI's commands move the networks
  /// there and each batch or tile there and back; set_compute itself moves nothing.
  c10::Device device = c10::Device(c10::kCPU);
};

/// Applies `options` to every convolution layer inside `module` (a generator or discriminator
/// of this library, on the device it will run on). Returns how many layers it set. Throws Error
/// where the CPU cannot run options.precision (check_precision_supported). On a GPU the layers
/// run libtorch's own operations: the CPU forms and thresholds above do not apply.
int64_t set_compute(torch::nn::Module& module, const ComputeOptions& options);

/// What every caller does before running a network: moves `module` to options.device, sets that
/// device up (configure_device) and applies `options` (set_compute, whose count it returns).
int64_t place(torch::nn::Module& module, const ComputeOptions& options);

}  // namespace pix2pix
