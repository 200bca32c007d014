// `pix2pix demo`: the README's first command. Writes the built-in synthetic facades dataset,
// measures the untrained generator on its validation split, trains photos -> label maps for a
// time budget, runs `test` on the held-out test split, writes the run report and prints where to
// look and the validation L1 before and after. Everything comes from the library (synth.h,
// trainer.h, results.h, report.h); this file only chooses the sizes and prints.
#include <fmt/core.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "commands.h"
#include "pix2pix/data/dataset.h"
#include "pix2pix/error.h"
#include "pix2pix/names.h"
#include "pix2pix/tools/report.h"
#include "pix2pix/tools/results.h"
#include "pix2pix/tools/synth.h"
#include "pix2pix/train/trainer.h"

namespace pix2pix::cli {

namespace {

namespace fs = std::filesystem;

constexpr const char* kRunName = "facades_synth";

struct DemoFlags {
  std::string out = "runs/demo";
  double minutes = 3;
  int size = 64;
  int ngf = 64;
  int train = 400;
  uint64_t seed = 0;
  bool force = false;
  // Photos -> label maps: a label map is determined by its photo, so L1 can fall far. The other
  // way a wall's colour is not in the label map, and L1 stalls near 0.28 of an untrained 0.39
  // (measured at 64x64), however good the pictures look.
  std::string direction = "BtoA";
};

int run_demo(const DemoFlags& flags) {
  const auto start = std::chrono::steady_clock::now();
  const std::string data = flags.out + "/data";
  const std::string run_dir = flags.out + "/" + kRunName;
  if (fs::exists(run_dir)) {
    if (!flags.force)
      throw Error(run_dir, "exists from an earlier demo; pass --force to replace it");
    fs::remove_all(run_dir);
  }
  const int num_downs = static_cast<int>(std::lround(std::log2(flags.size)));
  if ((1 << num_downs) != flags.size) throw Error("--size", "must be a power of two");

  fmt::print("== 1/4  built-in data: synthetic facades (label map | photo), {}x{} per side\n",
             flags.size, flags.size);
  SynthOptions synth;
  synth.train = flags.train;
  synth.val = 16;
  synth.test = 8;
  synth.size = flags.size;
  synth.seed = flags.seed;
  synth.force = flags.force;
  const SynthSummary written = write_synth_dataset(data, synth);
  fmt::print("       {} train / {} val / {} test pairs in {} ({:.1f} s)\n", synth.train, synth.val,
             synth.test, data, written.seconds);

  TrainOptions options;
  options.data = data;
  options.name = kRunName;
  options.runs_dir = flags.out;
  options.seed = flags.seed;
  options.direction = parse_direction(flags.direction);
  // A U-Net down to 1x1 at this size (unet_128 at 128), the 70x70 PatchGAN, the paper's loss.
  options.generator.net = "unet";
  options.generator.num_downs = num_downs;
  options.generator.ngf = flags.ngf;
  // The paper's jitter, scaled: resize to 286/256 of the crop, random crop, flip.
  options.transform.load_size = flags.size * 286 / 256;
  options.transform.crop_height = options.transform.crop_width = flags.size;
  // A constant learning rate: the time budget, not an epoch count, ends the run.
  options.schedule.n_epochs = 100000;
  options.schedule.n_epochs_decay = 0;
  options.max_seconds = flags.minutes * 60;
  options.validate_first = true;
  options.print_every = 20;
  options.sample_every = 200;
  options.save_every_epochs = 0;
  fmt::print(
      "== 2/4  training {} for {:g} min: unet (num_downs {}, ngf {}) + 70x70 "
      "PatchGAN, GAN + 100 L1, Adam 2e-4\n",
      options.direction == Direction::kBtoA ? "photos -> label maps" : "label maps -> photos",
      flags.minutes, num_downs, flags.ngf);
  const bool live = isatty(fileno(stdout)) != 0;
  bool line_open = false;
  TrainContext context;
  context.loggers.push_back(message_logger([&](const std::string& line) {
    const bool progress = line.rfind("epoch ", 0) == 0 && line.find(" step ") != std::string::npos;
    if (progress && !live) return;  // a log gets the epoch lines only
    if (live && progress) {
      fmt::print("\r\033[K       {}", line);
      line_open = true;
    } else {
      fmt::print("{}       {}\n", line_open ? "\n" : "", line);
      line_open = false;
    }
    std::fflush(stdout);
  }));
  context.loggers.push_back(report_logger(run_dir));  // the page follows the run live
  const TrainResult result = train(options, context);
  if (line_open) fmt::print("\n");

  fmt::print("== 3/4  pix2pix test: the {} held-out test images\n", synth.test);
  TestOptions test_options;  // the paper's test mode, as `pix2pix test --run` by default
  test_options.run = run_dir;
  const TestResult test = run_test(test_options);
  fmt::print("       {} mode, mean L1 {:.4f}  PSNR {:.2f} dB  SSIM {:.3f} -> {}/index.html\n",
             test.train_mode ? "train (the paper's)" : "eval", test.mean.l1, test.mean.psnr,
             test.mean.ssim, test.results_dir);

  fmt::print("== 4/4  report\n");
  const std::string report = write_report(run_dir);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print(
      "\nvalidation L1 (images in [-1, 1]): untrained {:.4f} -> trained {:.4f}  "
      "({:.1f}x lower) after {} steps, {} epochs\n",
      result.first_val_l1, result.last_val_l1,
      result.first_val_l1 / std::max(result.last_val_l1, 1e-12), result.steps, result.epoch);
  fmt::print("look at:\n  {}   (curves, samples per epoch, options)\n", report);
  fmt::print("  {}/index.html   (held-out test translations with metrics)\n", test.results_dir);
  fmt::print("  tensorboard --logdir {}\n", RunDirectory{run_dir}.tensorboard());
  fmt::print("  {}   (a PyTorch state_dict)\n", RunDirectory{run_dir}.weights("latest"));
  fmt::print("demo done in {:.0f} s\n", seconds);
  return 0;
}

}  // namespace

Command add_demo_command(CLI::App& parent) {
  auto flags = std::make_shared<DemoFlags>();
  CLI::App* app = parent.add_subcommand(
      "demo",
      "Built-in synthetic data -> train with a time budget -> translate the test split -> "
      "report (OUT/facades_synth/report.html)");
  app->add_option("--out", flags->out, "folder for the data, the run and the translations")
      ->capture_default_str();
  app->add_option("--minutes", flags->minutes, "training time budget")
      ->check(CLI::Range(0.05, 10000.0))
      ->capture_default_str();
  app->add_option("--size", flags->size, "image side (a power of two; the U-Net goes down to 1x1)")
      ->check(CLI::IsMember({64, 128, 256}))
      ->capture_default_str();
  app->add_option("--ngf", flags->ngf, "generator width (the paper: 64)")
      ->check(CLI::Range(4, 256))
      ->capture_default_str();
  app->add_option("--train", flags->train, "synthetic training pairs")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app->add_option("--seed", flags->seed, "dataset and training seed")->capture_default_str();
  app->add_option("--direction", flags->direction,
                  "BtoA: photo -> label map; AtoB: label map -> photo (L1 cannot halve: colours)")
      ->check(CLI::IsMember(names<Direction>()))
      ->capture_default_str();
  app->add_flag("--force", flags->force, "replace the outputs of an earlier demo in OUT");
  return {app, [flags] { return run_demo(*flags); }};
}

}  // namespace pix2pix::cli
