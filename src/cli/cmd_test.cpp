// `pix2pix test`: translates a dataset split with a run's checkpoint and writes the results
// folder (images with the reference's names, index.html, metrics.csv, summary.json): results.h.
#include <fmt/core.h>

#include "commands.h"
#include "option_flags.h"
#include "pix2pix/device.h"
#include "pix2pix/tools/results.h"

namespace pix2pix::cli {

namespace {

struct TestFlags {
  TestOptions options;
  bool eval_mode = false;
  bool train_mode = false;
  std::string device = "auto";
};

int run_test_command(const TestFlags& flags) {
  TestOptions options = flags.options;
  options.train_mode = !flags.eval_mode;  // the paper's train mode unless --eval
  options.device = parse_device(flags.device);
  const TestResult result =
      run_test(options, [](const std::string& line) { fmt::print("{}\n", line); });
  fmt::print("results: {}/index.html\n", result.results_dir);
  return 0;
}

}  // namespace

Command add_test_command(CLI::App& parent) {
  auto flags = std::make_shared<TestFlags>();
  CLI::App* app = parent.add_subcommand(
      "test",
      "Translate a dataset split with a trained run: RUN/results/<split>_<epoch>/ with "
      "images, index.html, metrics.csv and summary.json");
  app->add_option("--run", flags->options.run, "the run folder (runs/NAME)")
      ->required()
      ->check(CLI::ExistingDirectory);
  app->add_option("--data", flags->options.data, "dataset root (default: the run's)");
  app->add_option("--split", flags->options.split, "dataset split")->capture_default_str();
  app->add_option("--epoch", flags->options.epoch,
                  "checkpoint: latest, best or an epoch number (checkpoints/<epoch>_net_G.pth)")
      ->capture_default_str();
  auto* eval_flag = app->add_flag("--eval", flags->eval_mode,
                                  "eval mode: running batch-norm statistics, no dropout");
  app->add_flag("--train-mode", flags->train_mode,
                "the paper's test-time behaviour, batch statistics and dropout on (the default)")
      ->excludes(eval_flag);
  app->add_option("--num-test", flags->options.num_test,
                  "translate at most this many images (default 0: all)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--seed", flags->options.seed, "seed of dropout in train mode")
      ->capture_default_str();
  add_option_flag(app, "device", flags->device)->capture_default_str();
  return {app, [flags] { return run_test_command(*flags); }};
}

}  // namespace pix2pix::cli
