// `pix2pix data synth`: writes the built-in synthetic facades dataset (label map | photo pairs,
// see pix2pix/tools/synth.h) as an aligned dataset: OUT/{train,val,test}/<i>.png.
#include <fmt/core.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "commands.h"
#include "pix2pix/tools/synth.h"

namespace pix2pix::cli {

namespace {

struct SynthFlags {
  std::string out;
  SynthOptions options;
};

int run_data_synth(const SynthFlags& flags) {
  const SynthOptions& options = flags.options;
  // An in-place counter on a terminal only; logs get the summary lines alone.
  const bool tty = isatty(fileno(stderr)) != 0;
  SynthProgressCallback progress;
  if (tty) {
    progress = [](const SynthProgress& p) {
      fmt::print(stderr, "\r{}: {}/{}", p.split, p.done, p.total);
      if (p.done == p.total) fmt::print(stderr, "\r\033[K");
      std::fflush(stderr);
    };
  }
  const SynthSummary summary = write_synth_dataset(flags.out, options, progress);
  int total = 0;
  uint64_t bytes = 0;
  for (const auto& split : summary.splits) {
    if (split.count == 0) {
      fmt::print("{:<5}  skipped (0 pairs)\n", split.split);
      continue;
    }
    fmt::print("{:<5}  {} pairs of {}x{} -> {}  ({:.1f} MB, {:.1f} s)\n", split.split, split.count,
               2 * options.size, options.size, split.folder, split.bytes / 1e6, split.seconds);
    total += split.count;
    bytes += split.bytes;
  }
  fmt::print("total  {} pairs, {:.1f} MB in {:.1f} s (seed {}; A = label map, B = photo: AtoB)\n",
             total, bytes / 1e6, summary.seconds, options.seed);
  return 0;
}

}  // namespace

Command add_data_synth_command(CLI::App& data) {
  auto flags = std::make_shared<SynthFlags>();
  SynthOptions& options = flags->options;
  CLI::App* app = data.add_subcommand(
      "synth",
      "Write the built-in synthetic dataset: facade label maps (A, left) paired with rendered "
      "photos (B, right) in OUT/{train,val,test}/<i>.png");
  app->add_option("--out", flags->out, "dataset folder (created if missing)")->required();
  app->add_option("--train", options.train, "pairs in OUT/train")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app->add_option("--val", options.val, "pairs in OUT/val")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app->add_option("--test", options.test, "pairs in OUT/test")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app->add_option("--size", options.size, "side of each half; images are (2*size) x size")
      ->capture_default_str()
      ->check(CLI::Range(kSynthMinSize, kSynthMaxSize));
  app->add_option("--seed", options.seed, "dataset seed: the same seed gives identical files")
      ->capture_default_str();
  app->add_flag("--force", options.force,
                "write into split folders that are not empty (replaces their <number>.png files)");
  app->add_option("--workers", options.threads, "writer threads (default: one per core)")
      ->check(CLI::Range(1, 256));
  app->add_option("--compression", options.compression_level, "PNG zlib level 0..9")
      ->capture_default_str()
      ->check(CLI::Range(0, 9));
  return {app, [flags] { return run_data_synth(*flags); }};
}

}  // namespace pix2pix::cli
