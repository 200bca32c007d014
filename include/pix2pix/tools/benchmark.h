// Speed measurement of the training step and of inference, with the work they do: convolution
// FLOPs counted from the operations actually run, the machine's matrix-multiplication peak in
// float32 and bfloat16, and peak resident memory. `pix2pix bench train|infer` prints these.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "pix2pix/models/compute.h"
#include "pix2pix/models/discriminator.h"
#include "pix2pix/models/generator.h"

namespace pix2pix {

/// Convolution work observed while some code ran.
struct ConvolutionWork {
  double flops = 0;            ///< 2 x multiply-adds of every convolution and matrix product run
  int64_t forward_calls = 0;   ///< convolutions (aten::convolution, transposed ones included)
  int64_t backward_calls = 0;  ///< aten::convolution_backward calls (gradients or, for
                               ///< transposed convolutions in gradient form, forwards)
  int64_t matmul_calls = 0;    ///< aten::mm / aten::addmm / pix2pix::small_product calls (bf16
                               ///< convolutions on small maps run as matrix products, forward
                               ///< and backward)
};

/// Runs `work` and counts the FLOPs of every convolution it runs on any thread, forward and
/// backward (input and weight gradients count one convolution's work each), and of every matrix
/// product (aten::mm, aten::addmm: the form bf16 convolutions take on small maps, see
/// ComputeOptions::matmul_max_side), from the operations' shapes as the dispatcher sees them.
/// Other operations (norms, activations, im2col, Adam) are not counted. Not reentrant: one
/// count at a time per process.
ConvolutionWork count_convolution_flops(const std::function<void()>& work);

/// The best rate (GFLOP/s) of a loop of size x size matrix products in `precision` over about
/// `seconds`, with the current intra-op thread count: the machine's practical peak.
double measure_matmul_peak(Precision precision, double seconds = 0.5, int64_t size = 1024);

/// This process's peak resident memory so far, in MiB (getrusage).
double peak_rss_mb();

/// What to benchmark. Defaults are the paper's networks at 256 x 256, batch 1.
struct BenchOptions {
  GeneratorOptions generator;          ///< unet_256 by default
  DiscriminatorOptions discriminator;  ///< basic (70x70 PatchGAN); input_nc is derived
  ComputeOptions compute;
  int64_t size = 256;  ///< height and width of the random inputs
  int64_t batch = 1;
  int64_t steps = 10;  ///< timed repetitions
  int64_t warmup = 2;  ///< untimed repetitions first
  uint64_t seed = 0;
};

/// Timings of one benchmark.
struct BenchResult {
  std::vector<double> seconds;  ///< per timed repetition (a training step, or one batch)
  double median_s = 0, min_s = 0;
  double flops = 0;               ///< convolution FLOPs of one repetition
  double gflops_per_s = 0;        ///< flops / median_s / 1e9
  double loss_g = 0, loss_d = 0;  ///< last step's losses (training only)
};

/// Training steps (D then G, Adam, as Pix2PixStep) on random inputs in [-1, 1].
BenchResult bench_train(const BenchOptions& options);
/// Generator forward passes in eval mode without autograd (one batch each).
BenchResult bench_infer(const BenchOptions& options);

}  // namespace pix2pix
