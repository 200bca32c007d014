// Benchmark building blocks (convolution FLOP counting, matmul peak, peak memory) and the
// `bench train|infer --json` output.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "pix2pix/device.h"
#include "pix2pix/error.h"
#include "pix2pix/models/discriminator.h"
#include "pix2pix/models/generator.h"
#include "pix2pix/models/init.h"
#include "pix2pix/tools/benchmark.h"
#include "test_util.h"

namespace pix2pix {
namespace {

TEST(Benchmark, CountsConvolutionFlopsForwardAndBackward) {
  // Conv 8 -> 16, kernel 4, stride 2, padding 1 on 2 x 8 x 32 x 32: output 16 x 16.
  const at::Tensor x = torch::rand({2, 8, 32, 32}).requires_grad_();
  const at::Tensor w = torch::rand({16, 8, 4, 4}).requires_grad_();
  const double macs = 2.0 * 16 * 16 * 16 * 8 * 4 * 4;  // N Hout Wout Cout Cin k k
  at::Tensor y;
  ConvolutionWork forward = count_convolution_flops([&] { y = at::conv2d(x, w, {}, 2, 1); });
  EXPECT_EQ(forward.forward_calls, 1);
  EXPECT_DOUBLE_EQ(forward.flops, 2 * macs);
  // Backward: input and weight gradients, one convolution's work each.
  ConvolutionWork backward = count_convolution_flops([&] { y.sum().backward(); });
  EXPECT_EQ(backward.backward_calls, 1);
  EXPECT_DOUBLE_EQ(backward.flops, 4 * macs);
  // Transposed: 2 x 16 x 16 x 16 -> 2 x 8 x 32 x 32, the same work as the convolution above.
  const at::Tensor z = torch::rand({2, 16, 16, 16});
  ConvolutionWork transposed =
      count_convolution_flops([&] { at::conv_transpose2d(z, w.detach(), {}, 2, 1); });
  EXPECT_DOUBLE_EQ(transposed.flops, 2 * macs);
  // Nothing is counted outside a count.
  at::conv2d(x, w, {}, 2, 1);
  EXPECT_DOUBLE_EQ(count_convolution_flops([] {}).flops, 0.0);
}

// The 70x70 PatchGAN on a 6-channel 256 x 256 input: 6.39 GFLOP per forward (docs/design.md,
// "Measured facts": 6.4), summed layer by layer: 128^2*64*6*16 + 64^2*128*64*16 + 32^2*256*128*16
// + 31^2*512*256*16 + 30^2*512*16 multiply-adds.
TEST(Benchmark, PatchGanForwardWork) {
  torch::manual_seed(0);
  auto d = make_discriminator({});
  torch::NoGradGuard no_grad;
  const at::Tensor x = torch::rand({1, 6, 256, 256});
  const double expected =
      2.0 * (128.0 * 128 * 64 * 6 * 16 + 64.0 * 64 * 128 * 64 * 16 + 32.0 * 32 * 256 * 128 * 16 +
             31.0 * 31 * 512 * 256 * 16 + 30.0 * 30 * 512 * 16);
  const ConvolutionWork work = count_convolution_flops([&] { d->forward(x); });
  EXPECT_EQ(work.forward_calls, 5);
  EXPECT_DOUBLE_EQ(work.flops, expected);
  EXPECT_NEAR(work.flops / 1e9, 6.39, 0.01);
}

// Convolutions on small maps run as matrix products (float32: transposed ones up to 8x8 inputs
// and others on 2x2; bf16: all up to 16x16): the count is the same work as libtorch's own
// layers, forward and backward.
TEST(Benchmark, MatrixProductFormCountsTheSameWork) {
  auto count = [](const ComputeOptions& compute) {
    torch::manual_seed(0);
    GeneratorOptions options;
    options.net = "unet";
    options.num_downs = 6;
    options.ngf = 8;
    auto g = make_generator(options);
    set_compute(*g, compute);
    const at::Tensor x = torch::rand({2, 3, 64, 64});
    at::Tensor y;
    const ConvolutionWork forward = count_convolution_flops([&] { y = g->forward(x); });
    const ConvolutionWork backward = count_convolution_flops([&] { y.sum().backward(); });
    return std::make_pair(forward, backward);
  };
  ComputeOptions native, fp32, bf16;
  native.transposed = TransposedConv::kNative;
  bf16.precision = Precision::kBFloat16;
  const auto [native_forward, native_backward] = count(native);
  const auto [fp32_forward, fp32_backward] = count(fp32);
  EXPECT_EQ(native_forward.matmul_calls, 0);
  EXPECT_EQ(fp32_forward.matmul_calls, 5);  // transposed layers on 1x1 .. 8x8, the 2x2 down one
  EXPECT_GT(fp32_backward.matmul_calls, 0);
  EXPECT_DOUBLE_EQ(fp32_forward.flops, native_forward.flops);
  EXPECT_DOUBLE_EQ(fp32_backward.flops, native_backward.flops);
  PIX2PIX_SKIP_WITHOUT_BF16();
  const auto [bf16_forward, bf16_backward] = count(bf16);
  EXPECT_GT(bf16_forward.matmul_calls, 4);  // also the 16x16 .. 2x2 inputs of the down layers
  EXPECT_GT(bf16_backward.matmul_calls, 0);
  EXPECT_DOUBLE_EQ(bf16_forward.flops, native_forward.flops);
  EXPECT_DOUBLE_EQ(bf16_backward.flops, native_backward.flops);
}

TEST(Benchmark, MatmulPeakAndMemoryAreMeasured) {
  const double fp32 = measure_matmul_peak(Precision::kFloat32, 0.05, 256);
  EXPECT_GT(fp32, 0.5);  // GFLOP/s: any machine that runs this does more
  EXPECT_GT(peak_rss_mb(), 1.0);
  if (!test::bf16_unavailable().empty()) {  // refused with the library's own message
    EXPECT_THROW(measure_matmul_peak(Precision::kBFloat16, 0.05, 256), Error);
    GTEST_SKIP() << test::bf16_unavailable();
  }
  EXPECT_GT(measure_matmul_peak(Precision::kBFloat16, 0.05, 256), 0.5);
}

const char* kTinyNets =
    "--netG unet --num-downs 5 --ngf 8 --size 32 --steps 2 --warmup 1 "
    "--peak-seconds 0.02 --json";

TEST(BenchCommand, TrainJsonHasTheDocumentedFields) {
  std::vector<std::string> precisions = {"fp32"};
  if (test::bf16_unavailable().empty()) precisions.push_back("bf16");
  for (const std::string& precision : precisions) {
    auto result = test::run_cli("bench train --ndf 8 --precision " + precision + " " + kTinyNets);
    ASSERT_EQ(result.exit_code, 0) << result.output;
    const auto json = nlohmann::json::parse(result.output);
    for (const char* key :
         {"step_s_median", "step_s_min", "gflops_per_s", "peak_fraction", "max_rss_mb", "precision",
          "gflop_per_step", "matmul_peak_gflops_fp32", "matmul_peak_gflops_bf16", "loss_G",
          "loss_D", "threads", "device", "step_s", "cpu", "cpu_features"})
      EXPECT_TRUE(json.contains(key)) << key;
    EXPECT_EQ(json["precision"], precision);
    EXPECT_EQ(json["device"], describe(parse_device("auto")));
    EXPECT_EQ(json["step_s"].size(), 2u);
    EXPECT_GT(json["step_s_median"].get<double>(), 0);
    EXPECT_LE(json["step_s_min"].get<double>(), json["step_s_median"].get<double>());
    EXPECT_GT(json["gflop_per_step"].get<double>(), 0);
    EXPECT_GT(json["peak_fraction"].get<double>(), 0);
    EXPECT_TRUE(std::isfinite(json["loss_G"].get<double>()));
  }
}

// auto: bf16 where the CPU has bfloat16 instructions, else fp32.
TEST(BenchCommand, InferJsonHasTheDocumentedFields) {
  auto result = test::run_cli("bench infer --precision auto --batch 2 " + std::string(kTinyNets));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto json = nlohmann::json::parse(result.output);
  for (const char* key : {"image_s_median", "image_s_min", "precision", "gflops_per_s",
                          "gflop_per_image", "peak_fraction", "max_rss_mb"})
    EXPECT_TRUE(json.contains(key)) << key;
  EXPECT_EQ(json["precision"], test::bf16_unavailable().empty() ? "bf16" : "fp32");
  EXPECT_GT(json["image_s_median"].get<double>(), 0);
  EXPECT_GT(json["gflop_per_image"].get<double>(), 0);
}

TEST(BenchCommand, RejectsBadFlags) {
  auto result = test::run_cli("bench train --precision fp16");
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("--precision"), std::string::npos) << result.output;
  result = test::run_cli("bench infer --netG unet --num-downs 5 --size 30 --json");
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("--size"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace pix2pix
