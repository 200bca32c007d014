// `pix2pix eval`: per-image L1, PSNR and SSIM between folders of real and fake images, their
// means, and FID / KID when the InceptionV3 weights are given. Pairing and metrics: metrics.h.
#include <fmt/core.h>

#include <cmath>

#include "commands.h"
#include "messages.h"
#include "pix2pix/eval/metrics.h"

namespace pix2pix::cli {

namespace {

struct EvalFlags {
  EvalOptions options;
  bool json = false;
  std::string csv;
};

int run_eval(const EvalFlags& flags, const CLI::App& app) {
  EvalReport report = evaluate_folders(
      flags.options, [](const std::string& line) { fmt::print(stderr, "{}\n", line); });
  report.fid_unavailable = with_flags(report.fid_unavailable, app);
  std::vector<std::string> names;
  std::vector<ImageMetrics> metrics;
  for (const auto& image : report.images) {
    names.push_back(image.pair.name);
    metrics.push_back(image.metrics);
  }
  if (!flags.csv.empty()) write_text_file(flags.csv, metrics_csv(names, metrics));
  if (flags.json) {
    fmt::print("{}", eval_report_json(report));
    return 0;
  }
  // CSV rows, a `mean` row, then FID / KID as comment lines.
  fmt::print("{}", metrics_csv(names, metrics));
  fmt::print(
      "{}", metrics_csv({"mean"}, {report.mean}).substr(std::string(kMetricsCsvHeader).size() + 1));
  if (report.fid_available)
    fmt::print("# FID {:.6f}, KID {:.6f} (std {:.6f}, {} subsets of {}), {} images per set\n",
               report.fid, report.kid.mean, report.kid.std, report.kid.subsets,
               report.kid.subset_size, report.images.size());
  else
    fmt::print("# FID/KID unavailable: {}\n", report.fid_unavailable);
  return 0;
}

}  // namespace

Command add_eval_command(CLI::App& parent) {
  auto flags = std::make_shared<EvalFlags>();
  CLI::App* app = parent.add_subcommand(
      "eval",
      "Compare translations with their targets: L1, PSNR, SSIM per image and means "
      "(FID and KID with --fid-weights)");
  app->add_option("--real", flags->options.real_dir,
                  "folder of target images (or of <stem>_real_B.* result images)")
      ->required();
  app->add_option("--fake", flags->options.fake_dir,
                  "folder of translations, paired with --real by file stem (or "
                  "<stem>_fake_B.*); default: --real, for a results folder holding both");
  app->add_option("--fid-weights", flags->options.fid_weights,
                  "pytorch-fid's InceptionV3 weights, pt_inception-2015-12-05-6726825d.pth "
                  "(downloaded by you; without it FID/KID are reported as unavailable)");
  app->add_flag("--json", flags->json, "print one JSON document instead of CSV");
  app->add_option("--csv", flags->csv, "also write the per-image CSV to this file");
  app->add_option("--batch-size", flags->options.batch_size, "images per InceptionV3 forward")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app->add_option("--kid-subsets", flags->options.kid.subsets, "KID: number of random subsets")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app->add_option("--kid-subset-size", flags->options.kid.subset_size,
                  "KID: features per subset (capped at the number of images)")
      ->check(CLI::Range(2, 1000000))
      ->capture_default_str();
  return {app, [flags, app] { return run_eval(*flags, *app); }};
}

}  // namespace pix2pix::cli
