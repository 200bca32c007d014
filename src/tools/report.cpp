#include "pix2pix/tools/report.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <vector>

#include "io/atomic_file.h"
#include "pix2pix/error.h"
#include "pix2pix/train/run_directory.h"
#include "tools/html.h"

namespace pix2pix {

using detail::escape_html;

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Standard base64 (RFC 4648) for data URIs.
std::string base64(const std::string& bytes) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint32_t(uint8_t(bytes[i])) << 16) |
                       (uint32_t(uint8_t(bytes[i + 1])) << 8) | uint32_t(uint8_t(bytes[i + 2]));
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    if (i + 1 < bytes.size()) v |= uint32_t(uint8_t(bytes[i + 1])) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// One metrics.jsonl row: its kind and every numeric field.
struct Row {
  std::string kind;
  std::map<std::string, double> values;
  double get(const std::string& key) const {
    auto it = values.find(key);
    return it == values.end() ? kNaN : it->second;
  }
};

// Rows of metrics.jsonl; unparsable lines (a line being written) are skipped.
std::vector<Row> read_metrics(const std::string& path) {
  std::vector<Row> rows;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    Json row = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!row.is_object()) continue;
    Row r;
    r.kind = row.value("kind", std::string("train"));
    for (const auto& [key, value] : row.items())
      if (value.is_number()) r.values[key] = value.get<double>();
    if (r.values.count("step")) rows.push_back(std::move(r));
  }
  return rows;
}

// ---- Charts --------------------------------------------------------------------------------

struct SeriesSpec {
  std::string key;    // metrics.jsonl key
  std::string label;  // legend
  std::string color;
};

struct ChartSpec {
  std::string title;
  std::string kind;  // "train" or "val": which rows the series come from
  std::string y_label;
  std::vector<SeriesSpec> series;
  bool optional = false;  // drawn only when some value is non-zero
};

const std::vector<ChartSpec>& chart_specs() {
  static const std::vector<ChartSpec> specs = {
      {"Generator: GAN loss", "train", "loss", {{"G_GAN", "G_GAN", "#1f77b4"}}},
      {"Generator: L1 (train) vs validation L1",
       "train",
       "mean |fake - real|",
       {{"G_L1", "G_L1 (train)", "#ff7f0e"}}},
      {"Discriminator losses",
       "train",
       "loss",
       {{"D_real", "D_real", "#2ca02c"}, {"D_fake", "D_fake", "#d62728"}}},
      {"Discriminator accuracy",
       "train",
       "fraction of patches right",
       {{"D_acc_real", "on real", "#2ca02c"}, {"D_acc_fake", "on fake", "#d62728"}}},
      {"Gradient penalty", "train", "loss", {{"GP", "GP", "#9467bd"}}, true},
      {"Learning rate (G)", "train", "lr", {{"lr", "lr", "#8c564b"}}},
      {"Validation L1", "val", "mean |fake - real|", {{"val_L1", "val_L1", "#e377c2"}}},
      {"Validation PSNR", "val", "dB", {{"val_PSNR", "val_PSNR", "#17becf"}}},
      {"Seconds per step",
       "train",
       "seconds",
       {{"step_s", "step (compute)", "#7f7f7f"}, {"data_s", "data wait", "#bcbd22"}}},
  };
  return specs;
}

// Debiased exponential moving average (TensorBoard's smoothing); NaNs are passed through.
std::vector<double> smooth(const std::vector<double>& values, double weight) {
  std::vector<double> out(values.size(), kNaN);
  double last = 0;
  int64_t count = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) continue;
    last = last * weight + (1 - weight) * values[i];
    ++count;
    const double debias = 1 - std::pow(weight, static_cast<double>(count));
    out[i] = debias > 0 ? last / debias : values[i];
  }
  return out;
}

// About `target` round tick values (1, 2 or 5 times a power of ten) covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int target) {
  const double range = hi - lo;
  const double rough = range / std::max(target, 1);
  const double magnitude = std::pow(10.0, std::floor(std::log10(rough)));
  const double normalised = rough / magnitude;
  const double step = (normalised < 1.5   ? 1
                       : normalised < 3.5 ? 2
                       : normalised < 7.5 ? 5
                                          : 10) *
                      magnitude;
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step)
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  return ticks;
}

std::string tick_label(double v) {
  if (v == 0) return "0";
  const double a = std::abs(v);
  if (a >= 1e5 || a < 1e-3) return fmt::format("{:.2g}", v);
  return fmt::format("{:.6g}", v);
}

struct Series {
  SeriesSpec spec;
  std::vector<double> x, y;
  bool smoothed = true;  // per-interval training values: drawn raw and smoothed; else with dots
};

// One chart as an inline SVG: axes with ticks and labels, each series raw (faint) and smoothed.
// Marks every series' polylines with data-series so tests can find them.
std::string svg_chart(const ChartSpec& spec, const std::vector<Series>& series, double weight,
                      const std::string& x_label) {
  constexpr double kWidth = 560, kHeight = 280;
  constexpr double kLeft = 68, kRight = 14, kTop = 46, kBottom = 46;
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo;
  double y_lo = x_lo, y_hi = -x_lo;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      x_lo = std::min(x_lo, s.x[i]), x_hi = std::max(x_hi, s.x[i]);
      y_lo = std::min(y_lo, s.y[i]), y_hi = std::max(y_hi, s.y[i]);
    }
  std::string svg = fmt::format(
      "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" "
      "width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"{}\">\n"
      "<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#fff\"/>\n"
      "<text x=\"{}\" y=\"20\" text-anchor=\"middle\" class=\"title\">{}</text>\n",
      kWidth, kHeight, kWidth, kHeight, escape_html(spec.title), kWidth, kHeight, kWidth / 2,
      escape_html(spec.title));
  if (!std::isfinite(x_lo)) {
    svg += fmt::format(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"empty\">no data yet</text>\n"
        "</svg>\n",
        kWidth / 2, kHeight / 2);
    return svg;
  }
  if (x_hi == x_lo) x_lo -= 1, x_hi += 1;
  if (y_hi == y_lo) {
    const double pad = y_lo == 0 ? 1 : std::abs(y_lo) * 0.1;
    y_lo -= pad, y_hi += pad;
  } else {
    const double pad = (y_hi - y_lo) * 0.05;
    y_lo -= pad, y_hi += pad;
  }
  const double plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + (x - x_lo) / (x_hi - x_lo) * plot_w; };
  auto py = [&](double y) { return kTop + (y_hi - y) / (y_hi - y_lo) * plot_h; };

  // Grid, ticks and their labels.
  for (double t : nice_ticks(y_lo, y_hi, 5))
    svg += fmt::format(
        "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" class=\"grid\"/>"
        "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\" class=\"tick\">{}</text>\n",
        kLeft, py(t), kLeft + plot_w, py(t), kLeft - 5, py(t) + 4, tick_label(t));
  for (double t : nice_ticks(x_lo, x_hi, 6))
    svg += fmt::format(
        "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" class=\"grid\"/>"
        "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" class=\"tick\">{}</text>\n",
        px(t), kTop, px(t), kTop + plot_h, px(t), kTop + plot_h + 16, tick_label(t));
  // Axes and their labels.
  svg += fmt::format(
      "<path d=\"M{0:.1f},{1:.1f} V{2:.1f} H{3:.1f}\" class=\"axis\"/>\n"
      "<text x=\"{4:.1f}\" y=\"{5:.1f}\" text-anchor=\"middle\" class=\"label\">{6}</text>\n"
      "<text transform=\"translate(14,{7:.1f}) rotate(-90)\" text-anchor=\"middle\" "
      "class=\"label\">{8}</text>\n",
      kLeft, kTop, kTop + plot_h, kLeft + plot_w, kLeft + plot_w / 2, kHeight - 8, x_label,
      kTop + plot_h / 2, escape_html(spec.y_label));

  // Series: raw values faint, the smoothed curve on top (a single point gets a dot).
  double legend_x = kLeft + 8;
  for (const auto& s : series) {
    auto points = [&](const std::vector<double>& y) {
      std::string out;
      for (size_t i = 0; i < s.x.size(); ++i) {
        if (!std::isfinite(y[i])) continue;
        if (!out.empty()) out += ' ';
        out += fmt::format("{:.2f},{:.2f}", px(s.x[i]), py(y[i]));
      }
      return out;
    };
    const bool smoothed = weight > 0 && s.smoothed && s.x.size() > 2;
    svg += fmt::format(
        "<polyline data-series=\"{}\" data-kind=\"raw\" points=\"{}\" fill=\"none\" "
        "stroke=\"{}\" stroke-width=\"1.2\" stroke-opacity=\"{}\"/>\n",
        escape_html(s.spec.key), points(s.y), s.spec.color, smoothed ? 0.3 : 1.0);
    if (smoothed)
      svg += fmt::format(
          "<polyline data-series=\"{}\" data-kind=\"smoothed\" points=\"{}\" fill=\"none\" "
          "stroke=\"{}\" stroke-width=\"2\"/>\n",
          escape_html(s.spec.key), points(smooth(s.y, weight)), s.spec.color);
    if (!s.smoothed || s.x.size() <= 2)
      for (size_t i = 0; i < s.x.size(); ++i)
        if (std::isfinite(s.y[i]))
          svg += fmt::format("<circle cx=\"{:.2f}\" cy=\"{:.2f}\" r=\"3\" fill=\"{}\"/>",
                             px(s.x[i]), py(s.y[i]), s.spec.color);
    svg += fmt::format(
        "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"12\" height=\"3\" fill=\"{}\"/>"
        "<text x=\"{:.1f}\" y=\"{:.1f}\" class=\"legend\">{}</text>\n",
        legend_x, kTop - 13, s.spec.color, legend_x + 16, kTop - 9, escape_html(s.spec.label));
    legend_x += 24 + 7.0 * static_cast<double>(s.spec.label.size());
  }
  svg += "</svg>\n";
  return svg;
}

// ---- Samples -------------------------------------------------------------------------------

struct SampleFile {
  std::string relative;  // path from the run directory
  int64_t number = 0;    // epoch or step
};

std::vector<SampleFile> list_samples(const std::string& run_dir, const std::regex& pattern) {
  std::vector<SampleFile> files;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(RunDirectory{run_dir}.samples(), error)) {
    const std::string name = entry.path().filename().string();
    std::smatch match;
    if (std::regex_match(name, match, pattern))
      files.push_back({"samples/" + name, std::stoll(match[1].str())});
  }
  std::sort(files.begin(), files.end(),
            [](const SampleFile& a, const SampleFile& b) { return a.number < b.number; });
  return files;
}

// Embeds images as data URIs until the byte budget is spent, then links them.
struct ImageEmbedder {
  std::string run_dir;
  int64_t budget = 0;

  std::string img(const std::string& relative, const std::string& alt) {
    const std::string bytes = read_file(run_dir + "/" + relative);
    std::string src;
    if (!bytes.empty() && static_cast<int64_t>(bytes.size()) <= budget) {
      budget -= static_cast<int64_t>(bytes.size());
      src = "data:image/png;base64," + base64(bytes);
    } else {
      src = escape_html(relative);
    }
    return fmt::format("<img class=\"sample\" src=\"{}\" alt=\"{}\" title=\"{}\">", src,
                       escape_html(alt), escape_html(relative));
  }
};

// One captioned sample strip with its column names.
std::string sample_card(const std::string& caption, const std::string& img) {
  return fmt::format(
      "<figure><figcaption>{}</figcaption><div class=\"cols\"><span>input</span>"
      "<span>output</span><span>target</span></div>{}</figure>\n",
      escape_html(caption), img);
}

// Indices of `count` items to show when at most `limit` may be: evenly spread, last included.
std::vector<size_t> spread(size_t count, size_t limit) {
  std::vector<size_t> out;
  if (count <= limit) {
    for (size_t i = 0; i < count; ++i) out.push_back(i);
    return out;
  }
  if (limit == 0) return out;
  if (limit == 1) return {count - 1};
  std::set<size_t> chosen;
  for (size_t k = 0; k < limit; ++k)
    chosen.insert(
        static_cast<size_t>(std::llround(double(k) * double(count - 1) / double(limit - 1))));
  return {chosen.begin(), chosen.end()};
}

std::string format_duration(double seconds) {
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s < 60) return fmt::format("{} s", s);
  if (s < 3600) return fmt::format("{} min {:02d} s", s / 60, s % 60);
  return fmt::format("{} h {:02d} min", s / 3600, (s / 60) % 60);
}

std::string format_value(const Json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_float()) return fmt::format("{:g}", value.get<double>());
  return value.dump();
}

constexpr const char* kStyle = R"(
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;margin-top:28px;border-bottom:1px solid #ddd}
.sub{color:#666;font-size:13px}
.charts{display:flex;flex-wrap:wrap;gap:12px}
svg.chart{border:1px solid #ddd;border-radius:4px;max-width:100%;height:auto}
svg .title{font-size:14px;font-weight:600;fill:#222}svg .tick{font-size:11px;fill:#555}
svg .label{font-size:12px;fill:#333}svg .legend{font-size:11px;fill:#333}svg .empty{fill:#999}
svg .grid{stroke:#eee;stroke-width:1}svg .axis{stroke:#444;fill:none;stroke-width:1}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
tr.nd td{background:#fff3c4;font-weight:600}
.stats td:first-child{color:#555}
.grid-samples{display:flex;flex-wrap:wrap;gap:14px}
figure{margin:0;border:1px solid #ddd;border-radius:4px;padding:6px}
figcaption{font-weight:600;font-size:13px;margin-bottom:2px}
img.sample{image-rendering:pixelated;width:384px;display:block}
.cols{display:flex;font-size:12px;color:#555}.cols span{flex:1;text-align:center}
pre{background:#f6f6f6;padding:8px;font-size:12px;overflow-x:auto}
)";

// Summary: progress, validation, timing.
std::string summary_section(const std::string& run_dir, const Json& run_options,
                            const std::vector<const Row*>& train_rows,
                            const std::vector<const Row*>& val_rows) {
  std::string html;
  const Row* last_train = train_rows.empty() ? nullptr : train_rows.back();
  const Row* last_val = val_rows.empty() ? nullptr : val_rows.back();
  const Row* first_val = val_rows.empty() ? nullptr : val_rows.front();
  const Row* best_val = nullptr;
  for (const Row* row : val_rows)
    if (std::isfinite(row->get("val_L1")) &&
        (!best_val || row->get("val_L1") < best_val->get("val_L1")))
      best_val = row;
  double train_seconds = 0, previous_step = 0;
  for (const Row* row : train_rows) {
    const double step = row->get("step");
    const double per_step = (std::isfinite(row->get("step_s")) ? row->get("step_s") : 0) +
                            (std::isfinite(row->get("data_s")) ? row->get("data_s") : 0);
    // Steps before a resume's first row are not known here; count from the previous row.
    if (step > previous_step) train_seconds += per_step * (step - previous_step);
    previous_step = step;
  }
  html += "<h2>Summary</h2>\n<table class=\"stats\">\n";
  auto stat = [&](const std::string& label, const std::string& value) {
    html += fmt::format("<tr><td>{}</td><td>{}</td></tr>\n", label, value);
  };
  if (last_train)
    stat("progress", fmt::format("epoch {}, step {}", int64_t(last_train->get("epoch")),
                                 int64_t(last_train->get("step"))));
  else
    stat("progress", "no training rows in metrics.jsonl yet");
  if (run_options.contains("netG"))
    stat("networks",
         escape_html(fmt::format("G {}, D {}, {} norm; crop {}, batch {}",
                                 format_value(run_options["netG"]),
                                 format_value(run_options.value("netD", Json("?"))),
                                 format_value(run_options.value("norm", Json("?"))),
                                 format_value(run_options.value("crop_size", Json("?"))),
                                 format_value(run_options.value("batch_size", Json("?"))))));
  if (last_val)
    stat("validation (last)",
         fmt::format("L1 {:.4f}, PSNR {:.2f} dB (epoch {})", last_val->get("val_L1"),
                     last_val->get("val_PSNR"), int64_t(last_val->get("epoch"))));
  if (best_val)
    stat("validation (best L1)", fmt::format("{:.4f} (epoch {})", best_val->get("val_L1"),
                                             int64_t(best_val->get("epoch"))));
  if (first_val && first_val != last_val)
    stat("validation (first)",
         fmt::format("L1 {:.4f} (epoch {}, step {})", first_val->get("val_L1"),
                     int64_t(first_val->get("epoch")), int64_t(first_val->get("step"))));
  if (last_train && std::isfinite(last_train->get("step_s"))) {
    stat("time per step (last interval)",
         fmt::format("{:.3f} s compute + {:.3f} s data wait", last_train->get("step_s"),
                     last_train->get("data_s")));
    stat("training time (logged steps)", format_duration(train_seconds));
  }
  if (fs::is_directory(RunDirectory{run_dir}.tensorboard()))
    stat("TensorBoard", fmt::format("<code>tensorboard --logdir {}</code>",
                                    escape_html(RunDirectory{run_dir}.tensorboard())));
  html += "</table>\n";

  return html;
}

// The charts of chart_specs(), raw and smoothed.
std::string curves_section(const std::vector<const Row*>& train_rows,
                           const std::vector<const Row*>& val_rows, const ReportOptions& options) {
  std::string html;
  html += fmt::format(
      "<h2>Curves</h2>\n<div class=\"sub\">faint: the logged values (means over each "
      "print interval); solid: exponential moving average, smoothing {}</div>\n"
      "<div class=\"charts\">\n",
      options.smoothing);
  for (const ChartSpec& spec : chart_specs()) {
    const auto& source = spec.kind == "val" ? val_rows : train_rows;
    std::vector<Series> series;
    bool any_non_zero = false;
    for (const SeriesSpec& s : spec.series) {
      Series one{s, {}, {}, spec.kind == "train"};
      for (const Row* row : source) {
        const double v = row->get(s.key);
        if (!row->values.count(s.key)) continue;
        one.x.push_back(row->get("step"));
        one.y.push_back(v);
        any_non_zero = any_non_zero || (std::isfinite(v) && v != 0);
      }
      series.push_back(std::move(one));
    }
    if (spec.optional && !any_non_zero) continue;
    // The train L1 chart also shows the validation L1 (same scale: images in [-1, 1]).
    if (spec.series.front().key == "G_L1") {
      Series val{{"val_L1", "val_L1", "#e377c2"}, {}, {}, false};
      for (const Row* row : val_rows)
        if (row->values.count("val_L1")) {
          val.x.push_back(row->get("step"));
          val.y.push_back(row->get("val_L1"));
        }
      if (!val.x.empty()) series.push_back(std::move(val));
    }
    html += svg_chart(spec, series, options.smoothing, "step");
  }
  html += "</div>\n";

  return html;
}

// Samples per epoch: the epoch-end strips (samples/epochNNN.png) when the trainer wrote them,
// else the last step strip of each epoch (the epoch of a step from metrics.jsonl); then the
// latest training samples.
std::string samples_sections(const std::string& run_dir, const std::vector<Row>& rows,
                             const ReportOptions& options) {
  std::string html;
  ImageEmbedder embed{run_dir, options.max_embedded_bytes};
  const std::vector<SampleFile> epoch_files =
      list_samples(run_dir, std::regex(R"(epoch(\d+)\.png)"));
  const std::vector<SampleFile> step_files = list_samples(run_dir, std::regex(R"(step(\d+)\.png)"));
  std::vector<std::pair<int64_t, SampleFile>> per_epoch;  // (epoch, file)
  if (!epoch_files.empty()) {
    for (const auto& file : epoch_files) per_epoch.emplace_back(file.number, file);
  } else {
    std::vector<std::pair<double, int64_t>> step_epoch;  // (step, epoch) of every row
    for (const Row& row : rows) step_epoch.emplace_back(row.get("step"), int64_t(row.get("epoch")));
    std::sort(step_epoch.begin(), step_epoch.end());
    std::map<int64_t, SampleFile> last_of_epoch;
    for (const auto& file : step_files) {
      auto it = std::lower_bound(step_epoch.begin(), step_epoch.end(),
                                 std::make_pair(double(file.number), int64_t{-1}));
      if (it == step_epoch.end()) continue;  // after the last logged row: epoch not known yet
      last_of_epoch[it->second] = file;
    }
    for (const auto& [epoch, file] : last_of_epoch) per_epoch.emplace_back(epoch, file);
  }
  html += "<h2>Samples by epoch</h2>\n";
  if (per_epoch.empty()) {
    html += "<p class=\"sub\">no samples yet</p>\n";
  } else {
    html +=
        fmt::format("<div class=\"sub\">{}; each strip: input | output | target</div>\n",
                    epoch_files.empty() ? "the last training sample of each epoch"
                                        : "the same validation images at the end of each epoch");
    const std::vector<size_t> shown =
        spread(per_epoch.size(), size_t(std::max(0, options.max_embedded_epochs)));
    html += "<div class=\"grid-samples\">\n";
    for (size_t index : shown) {
      const auto& [epoch, file] = per_epoch[index];
      html += sample_card(fmt::format("epoch {}", epoch),
                          embed.img(file.relative, fmt::format("epoch {}", epoch)));
    }
    html += "</div>\n";
    if (shown.size() < per_epoch.size()) {
      html += "<p class=\"sub\">other epochs (files next to this page): ";
      std::set<size_t> shown_set(shown.begin(), shown.end());
      for (size_t i = 0; i < per_epoch.size(); ++i)
        if (!shown_set.count(i))
          html += fmt::format("<a href=\"{}\">{}</a> ", escape_html(per_epoch[i].second.relative),
                              per_epoch[i].first);
      html += "</p>\n";
    }
  }
  if (!step_files.empty() && options.latest_samples > 0) {
    html += "<h2>Latest training samples</h2>\n<div class=\"grid-samples\">\n";
    const size_t first = step_files.size() > size_t(options.latest_samples)
                             ? step_files.size() - options.latest_samples
                             : 0;
    for (size_t i = step_files.size(); i-- > first;)
      html += sample_card(
          fmt::format("step {}", step_files[i].number),
          embed.img(step_files[i].relative, fmt::format("step {}", step_files[i].number)));
    html += "</div>\n";
  }

  return html;
}

// Test results written by `pix2pix test` (results/<split>_<epoch>/index.html, summary.json).
std::string results_section(const std::string& run_dir) {
  std::string html;
  std::vector<std::string> results;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(RunDirectory{run_dir}.results(), error))
    if (fs::exists(entry.path() / "index.html"))
      results.push_back(entry.path().filename().string());
  std::sort(results.begin(), results.end());
  if (!results.empty()) {
    html += "<h2>Test results</h2>\n<ul>\n";
    for (const std::string& result : results) {
      std::string means;
      const Json summary =
          Json::parse(read_file(RunDirectory{run_dir}.results() + "/" + result + "/summary.json"),
                      nullptr, false);
      if (summary.is_object() && summary.contains("mean") && summary["mean"].is_object())
        for (const auto& [key, value] : summary["mean"].items())
          if (value.is_number())
            means +=
                fmt::format("{}{} {:.4g}", means.empty() ? "" : ", ", key, value.get<double>());
      html += fmt::format("<li><a href=\"results/{0}/index.html\">{0}</a>{1}</li>\n",
                          escape_html(result),
                          means.empty() ? "" : " &mdash; mean " + escape_html(means));
    }
    html += "</ul>\n";
  }

  return html;
}

// Options, non-defaults first and highlighted; the model summary.
std::string options_section(const std::string& run_dir, const Json& run_options,
                            const std::set<std::string>& non_defaults) {
  std::string html;
  html +=
      "<h2>Options</h2>\n<div class=\"sub\">highlighted: differs from the default "
      "(the paper's settings)</div>\n<table class=\"options\">\n";
  std::vector<std::string> keys;
  for (const auto& [key, value] : run_options.items()) keys.push_back(key);
  std::stable_partition(keys.begin(), keys.end(),
                        [&](const std::string& key) { return non_defaults.count(key) > 0; });
  for (const std::string& key : keys)
    html += fmt::format("<tr{}><td>{}</td><td>{}</td></tr>\n",
                        non_defaults.count(key) ? " class=\"nd\"" : "", escape_html(key),
                        escape_html(format_value(run_options[key])));
  html += "</table>\n";
  const std::string model = read_file(RunDirectory{run_dir}.model_txt());
  if (!model.empty()) html += "<h2>Model</h2>\n<pre>" + escape_html(model) + "</pre>\n";
  return html;
}

}  // namespace

std::string render_report(const std::string& run_dir, const ReportOptions& options) {
  const std::string options_path = RunDirectory{run_dir}.options();
  const std::string metrics_path = RunDirectory{run_dir}.metrics();
  if (!fs::is_directory(run_dir)) throw Error(run_dir, "no such run directory");
  if (!fs::exists(options_path) && !fs::exists(metrics_path))
    throw Error(run_dir, "not a run directory (no options.json or metrics.jsonl)");
  if (!(options.smoothing >= 0 && options.smoothing < 1))
    throw Error("smoothing", fmt::format("{} is not in [0, 1)", options.smoothing));

  Json run_options = Json::object();
  std::set<std::string> non_defaults;
  if (fs::exists(options_path)) {
    const Json parsed = Json::parse(read_file(options_path), nullptr, false);
    if (!parsed.is_object() || !parsed.contains("options"))
      throw Error(options_path, "not a pix2pix options file (no \"options\" object)");
    run_options = parsed.at("options");
    if (parsed.contains("non_defaults"))
      for (const auto& key : parsed.at("non_defaults"))
        if (key.is_string()) non_defaults.insert(key.get<std::string>());
  }
  const std::vector<Row> rows = read_metrics(metrics_path);
  std::vector<const Row*> train_rows, val_rows;
  for (const Row& row : rows) (row.kind == "val" ? val_rows : train_rows).push_back(&row);

  const std::string name =
      run_options.value("name", fs::path(run_dir).lexically_normal().filename().string());
  std::string html;
  html += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  html += fmt::format("<title>pix2pix run {}</title>\n", escape_html(name));
  html += fmt::format("<style>{}</style>\n</head>\n<body>\n", kStyle);
  const std::time_t now = std::time(nullptr);
  char stamp[64];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", std::localtime(&now));
  html += fmt::format("<h1>pix2pix run <code>{}</code></h1>\n", escape_html(name));
  html += fmt::format(
      "<div class=\"sub\">{} &middot; report written {} &middot; rewritten after every epoch "
      "and by <code>pix2pix report {}</code></div>\n",
      escape_html(run_dir), stamp, escape_html(run_dir));

  html += summary_section(run_dir, run_options, train_rows, val_rows);
  html += curves_section(train_rows, val_rows, options);
  html += samples_sections(run_dir, rows, options);
  html += results_section(run_dir);
  html += options_section(run_dir, run_options, non_defaults);
  html += "</body>\n</html>\n";
  return html;
}

std::string write_report(const std::string& run_dir, const ReportOptions& options) {
  const std::string path = RunDirectory{run_dir}.report();
  detail::write_file_atomically(path, render_report(run_dir, options));
  return path;
}

namespace {

class ReportLogger : public RunLogger {
 public:
  ReportLogger(std::string run_dir, ReportOptions options)
      : run_dir_(std::move(run_dir)), options_(options) {}
  void saved(int64_t /*step*/) override { write_report(run_dir_, options_); }

 private:
  std::string run_dir_;
  ReportOptions options_;
};

}  // namespace

std::shared_ptr<RunLogger> report_logger(const std::string& run_dir, const ReportOptions& options) {
  return std::make_shared<ReportLogger>(run_dir, options);
}

}  // namespace pix2pix
