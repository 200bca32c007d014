// The run report: RUN/report.html, one self-contained page built from a run directory's files
// (options.json, model.txt, metrics.jsonl, samples/*.png, results/*/), readable offline and
// fetching nothing: loss curves as inline SVG (raw and smoothed), a grid of input | output |
// target samples per epoch (PNG data URIs), the options with non-defaults highlighted, the model
// summary, timing and links to test results. A training run rewrites it through report_logger()
// after every epoch; `pix2pix report RUN` rewrites it on demand.
//
// To add a chart: add a ChartSpec to the list in src/tools/report.cpp (its series are metrics.jsonl
// keys).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "pix2pix/train/trainer.h"

namespace pix2pix {

/// How write_report builds the page.
struct ReportOptions {
  /// Weight of the previous value in the exponential moving average drawn over each raw curve
  /// (TensorBoard's smoothing slider; 0: no smoothing, below 1). The average is debiased, so
  /// its first points are not pulled towards zero.
  double smoothing = 0.6;
  /// Epochs whose sample strips are embedded in the page (evenly spread, the last always
  /// included); the others are linked by relative path.
  int max_embedded_epochs = 16;
  /// Latest step samples embedded after the per-epoch grid.
  int latest_samples = 3;
  /// Total PNG bytes embedded; images beyond it are linked by relative path instead, so a long
  /// run's page stays a few MB.
  int64_t max_embedded_bytes = int64_t{8} << 20;
};

/// The page for the run in `run_dir` as HTML text. A run without metrics yet gives a page that
/// says so. Throws pix2pix::Error(run_dir, ...) when `run_dir` is not a run directory (no
/// options.json or metrics.jsonl) and Error(file, ...) for an unreadable options.json.
std::string render_report(const std::string& run_dir, const ReportOptions& options = {});

/// Writes render_report(run_dir) to RUN/report.html atomically (a temporary file in the same
/// folder, fsync, rename, fsync of the folder): readers see the old page or the new one, never
/// a partial one. Returns the path written. Throws pix2pix::Error as render_report, and with
/// ErrorKind::kRuntime when writing fails.
std::string write_report(const std::string& run_dir, const ReportOptions& options = {});

/// A RunLogger (trainer.h) that rewrites RUN/report.html (write_report) whenever the run's
/// directory is complete up to a step: after every epoch and when the run stops.
std::shared_ptr<RunLogger> report_logger(const std::string& run_dir,
                                         const ReportOptions& options = {});

}  // namespace pix2pix
