// `pix2pix report RUN`: rewrites RUN/report.html from the run's files (report.h). The trainer
// does the same after every epoch; this is for a run in progress elsewhere, an old run, or a
// report with other settings.
#include <fmt/core.h>

#include <memory>

#include "commands.h"
#include "pix2pix/tools/report.h"

namespace pix2pix::cli {

namespace {

struct ReportFlags {
  std::string run;
  ReportOptions options;
  double max_mb = 8;
};

}  // namespace

Command add_report_command(CLI::App& parent) {
  auto flags = std::make_shared<ReportFlags>();
  ReportOptions& o = flags->options;
  CLI::App* app = parent.add_subcommand(
      "report", "Rewrite RUN/report.html: loss curves, samples per epoch, options, test results");
  app->add_option("run", flags->run, "the run folder (runs/NAME)")->required();
  app->add_option("--smoothing", o.smoothing, "EMA weight of the smoothed curves, in [0, 1)")
      ->check(CLI::Range(0.0, 0.999))
      ->capture_default_str();
  app->add_option("--max-epochs", o.max_embedded_epochs,
                  "epochs whose samples are embedded (evenly spread; the rest are linked)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("--max-mb", flags->max_mb,
                  "MiB of PNG embedded at most; later images are linked instead")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  return {app, [flags] {
            flags->options.max_embedded_bytes = static_cast<int64_t>(flags->max_mb * (1 << 20));
            const std::string path = write_report(flags->run, flags->options);
            fmt::print("wrote {}\n", path);
            return 0;
          }};
}

}  // namespace pix2pix::cli
