// How the networks compute: numeric precision (float32, or bfloat16 convolutions with float32
// master weights) and how transposed convolutions run (libtorch's ConvTranspose2d, or the same
// operation computed as the input gradient of a convolution, which runs on oneDNN). Weights,
// state_dict keys and shapes are the same whatever is chosen; only speed and rounding differ.
// To add a precision: extend Precision and the convolution layers in src/detail/convolution.cpp.
#pragma once

#include <cstdint>
#include <string>

namespace torch::nn {
class Module;
}

namespace pix2pix {

/// The arithmetic of the convolutions.
enum class Precision {
  kFloat32,   ///< everything in float32 (the reference's numbers)
  kBFloat16,  ///< convolutions in bfloat16 (each layer keeps a bfloat16 working copy of its
              ///< float32 master weight, refreshed after every optimiser step). Activations
              ///< between layers stay bfloat16: batch norm takes them with float32 parameters
              ///< and statistics; a layer with a bias (first and last layers, and all under
              ///< instance norm) adds it in float32 and hands on float32. Networks' outputs and
              ///< losses are float32. Training leaves the convolution weights' gradients in
              ///< bfloat16 (as the convolutions compute them) on the float32 weights;
              ///< pix2pix::Adam reads them as they are.
};

/// "fp32" | "bf16" | "auto" (also "float32", "bfloat16"). "auto" is bf16 where the CPU computes
/// in bfloat16 natively (cpu_features().bf16_arithmetic()), else fp32.
Precision parse_precision(const std::string& name);
/// Throws Error (field "precision") when `precision` cannot run on this CPU: bf16 needs
/// bfloat16 instructions (AVX-512 BF16 or AMX on x86-64, BF16 on arm64). Without them oneDNN
/// has no bfloat16 convolutions and emulates bfloat16 products far slower than float32.
void check_precision_supported(Precision precision);
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
  /// With kAuto, the smallest input height and width computed in the gradient form (measured
  /// here: libtorch's own path wins on the 1x1..4x4 maps of the U-Net's innermost levels).
  int64_t gradient_min_side = 8;
  /// bfloat16 only: convolutions whose input is at most this many pixels on its longer side run
  /// as im2col and one matrix product (the weights are read as they are instead of being
  /// reordered by oneDNN on every call, which dominates on small maps); 0 turns this off.
  /// Measured with bench/layer_speed: faster up to 16 on the U-Net's layers, slower beyond.
  int64_t matmul_max_side = 16;
  /// The same for transposed convolutions (a matrix product and col2im); faster up to 8. Also
  /// applies in float32 with TransposedConv::kAuto (numbers within float rounding of the
  /// reference's), where it takes precedence over gradient_min_side.
  int64_t matmul_max_side_transposed = 8;
  /// Float32 with TransposedConv::kAuto: convolutions (not transposed) whose input is at most
  /// this many pixels on its longer side run as im2col and one matrix product (numbers within
  /// float rounding of the reference's); 0 turns this off. Measured with `bench/layer_speed 15
  /// fp32`: 0.63-0.65x oneDNN's time on the U-Net's 2x2 map, equal at 4 and 8, slower beyond.
  int64_t matmul_max_side_float32 = 2;
  /// bfloat16 on the CPU: the convolutions oneDNN runs (all but the matrix-product ones) call
  /// oneDNN directly instead of through libtorch's conv2d, which reorders the weights into the
  /// kernels' layout on every call and the inputs and output gradients once per product. Here
  /// each weight is reordered once per optimiser step, each input once (kept in the kernels'
  /// layout for its weight gradient) and each output gradient once for both of its products.
  /// The same kernels: the numbers are those of libtorch's bfloat16 convolution. false: libtorch.
  bool onednn_direct = true;
  /// bfloat16 on a CPU with AVX-512 BF16: the matrix products of the matrix-product forms above
  /// that have a dimension of at most 16 (the U-Net's 1x1 to 4x4 maps at batch 1, forward and
  /// backward; 8 where the weight's rows run along the summed dimension) run on this library's
  /// kernels, which read the weight as it lies, instead of
  /// oneDNN's matmul, which repacks it on every call. Exact bfloat16 products summed in float32
  /// and rounded once, as oneDNN's: only the order of the sums differs. false: oneDNN's matmul.
  bool small_products = true;
};

/// Applies `options` to every convolution layer inside `module` (a generator or discriminator
/// of this library). Returns how many layers it set. Throws Error where the CPU cannot run
/// options.precision (check_precision_supported).
int64_t set_compute(torch::nn::Module& module, const ComputeOptions& options);

}  // namespace pix2pix
