// `pix2pix bench train` and `pix2pix bench infer`: seconds per training step (D then G, Adam) or
// per translated image on random inputs, the convolution work done per second, the machine's
// float32 and bfloat16 matrix-multiplication peak (measured first, for a few tenths of a
// second) and the fraction of it reached, and peak resident memory. A table, or one JSON object
// with --json (fields listed in docs/performance.md, "Method").
#include <ATen/Parallel.h>
#include <fmt/core.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "network_flags.h"
#include "pix2pix/cpu.h"
#include "pix2pix/device.h"
#include "pix2pix/tools/benchmark.h"

namespace pix2pix::cli {

namespace {

struct BenchNetworkFlags {
  GeneratorFlags generator;
  DiscriminatorFlags discriminator;
  ComputeFlags compute;
  BenchOptions options;
  double peak_seconds = 0.3;
  bool json = false;
};

int run_bench(const BenchNetworkFlags& flags, bool train) {
  BenchOptions options = flags.options;
  options.generator = flags.generator.resolve();
  options.discriminator = flags.discriminator.resolve(options.generator);
  options.compute = flags.compute.resolve();
  // The peak first, while nothing else of ours holds memory or threads; a CPU's only.
  const bool on_cpu = options.compute.device.is_cpu();
  const double peak_fp32 =
      on_cpu ? measure_matmul_peak(Precision::kFloat32, flags.peak_seconds) : 0;
  // A bf16 peak only where bf16 runs (auto resolves to it; docs/cpus.md).
  const CpuFeatures& cpu = cpu_features();
  const bool bf16_runs = on_cpu && parse_precision("auto") == Precision::kBFloat16;
  const double peak_bf16 =
      bf16_runs ? measure_matmul_peak(Precision::kBFloat16, flags.peak_seconds) : 0;
  const BenchResult result = train ? bench_train(options) : bench_infer(options);
  const double peak = options.compute.precision == Precision::kBFloat16 ? peak_bf16 : peak_fp32;
  const double fraction = peak > 0 ? result.gflops_per_s / peak : 0;
  const double rss = peak_rss_mb();
  const double per_image = 1.0 / static_cast<double>(options.batch);

  nlohmann::json out = {
      {"bench", train ? "train" : "infer"},
      {"netG", options.generator.net},
      {"size", options.size},
      {"batch", options.batch},
      {"steps", options.steps},
      {"warmup", options.warmup},
      {"device", describe(options.compute.device)},
      {"threads", at::get_num_threads()},
      {"precision", to_string(options.compute.precision)},
      {"transposed_conv", to_string(options.compute.transposed)},
      {"onednn", options.compute.onednn_direct ? "direct" : "libtorch"},
      {"gflops_per_s", result.gflops_per_s},
      {"matmul_peak_gflops_fp32", peak_fp32},
      {"matmul_peak_gflops_bf16", bf16_runs ? nlohmann::json(peak_bf16) : nullptr},
      {"cpu", cpu.describe()},
      {"cpu_features", cpu.names()},
      {"peak_fraction", fraction},
      {"max_rss_mb", rss},
  };
  if (train) {
    out["netD"] = options.discriminator.net;
    out["step_s_median"] = result.median_s;
    out["step_s_min"] = result.min_s;
    out["step_s"] = result.seconds;
    out["gflop_per_step"] = result.flops / 1e9;
    out["loss_G"] = result.loss_g;
    out["loss_D"] = result.loss_d;
  } else {
    out["image_s_median"] = result.median_s * per_image;
    out["image_s_min"] = result.min_s * per_image;
    out["batch_s"] = result.seconds;
    out["gflop_per_image"] = result.flops / 1e9 * per_image;
  }
  if (flags.json) {
    fmt::print("{}\n", out.dump());
    return 0;
  }
  fmt::print("bench {}: {}{}, {}x{}, batch {}, {} (transposed convolutions: {}), {} threads\n",
             train ? "train" : "infer", options.generator.net,
             train ? " + " + options.discriminator.net + " D" : "", options.size, options.size,
             options.batch, to_string(options.compute.precision),
             to_string(options.compute.transposed), at::get_num_threads());
  fmt::print("{:>24} {:>10} {:>10} {:>12} {:>10} {:>13} {:>10}\n", "", "median s", "min s",
             "conv GFLOP", "GFLOP/s", "of peak", "max RSS");
  fmt::print("{:>24} {:>10.4f} {:>10.4f} {:>12.2f} {:>10.1f} {:>12.0f}% {:>7.0f} MiB\n",
             train ? fmt::format("per step ({} + {} warm-up)", options.steps, options.warmup)
                   : fmt::format("per image ({} + {} warm-up)", options.steps, options.warmup),
             train ? result.median_s : result.median_s * per_image,
             train ? result.min_s : result.min_s * per_image,
             train ? result.flops / 1e9 : result.flops / 1e9 * per_image, result.gflops_per_s,
             100 * fraction, rss);
  fmt::print("matmul peak measured: fp32 {:.0f} GFLOP/s, bf16 {}\n", peak_fp32,
             bf16_runs ? fmt::format("{:.0f} GFLOP/s", peak_bf16)
                       : std::string("- (bf16 does not run on this CPU)"));
  fmt::print("cpu: {}\n", cpu.describe());
  if (!on_cpu) fmt::print("device: {}\n", describe(options.compute.device));
  return 0;
}

Command add_bench_network_command(CLI::App& bench, bool train) {
  auto flags = std::make_shared<BenchNetworkFlags>();
  CLI::App* app =
      train
          ? bench.add_subcommand("train", "Time training steps (D then G, Adam) on random inputs")
          : bench.add_subcommand("infer", "Time generator inference (eval mode) on random inputs");
  flags->generator.add_to(app);
  if (train) flags->discriminator.add_to(app);
  flags->compute.add_to(app);
  BenchOptions& o = flags->options;
  app->add_option("--size", o.size, "height and width of the inputs")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 15))
      ->capture_default_str();
  app->add_option("--batch", o.batch, "images per step")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 16))
      ->capture_default_str();
  app->add_option("--steps", o.steps, "timed repetitions")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  app->add_option("--warmup", o.warmup, "untimed repetitions first (the first counts FLOPs)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20))
      ->capture_default_str();
  app->add_option("--seed", o.seed, "seed of the weights and inputs")->capture_default_str();
  app->add_option("--peak-seconds", flags->peak_seconds,
                  "seconds of each matmul-peak measurement (fp32, bf16)")
      ->check(CLI::Range(0.0, 60.0))
      ->capture_default_str();
  app->add_flag("--json", flags->json, "print one JSON object instead of a table");
  return {app, [flags, train] { return run_bench(*flags, train); }};
}

}  // namespace

Command add_bench_train_command(CLI::App& bench) { return add_bench_network_command(bench, true); }

Command add_bench_infer_command(CLI::App& bench) { return add_bench_network_command(bench, false); }

}  // namespace pix2pix::cli
