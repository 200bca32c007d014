#include "pix2pix/tools/results.h"

#include <ATen/ATen.h>
#include <fmt/core.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "pix2pix/data/dataset.h"
#include "pix2pix/device.h"
#include "pix2pix/error.h"
#include "pix2pix/infer/translator.h"
#include "pix2pix/io/pytorch_import.h"
#include "pix2pix/train/run_directory.h"
#include "tools/html.h"
#include "train/train_options.h"

namespace pix2pix {

using detail::escape_html;

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// A file name as a relative URL: every byte outside [A-Za-z0-9._-] percent-encoded.
std::string url_encode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '.' || c == '_' || c == '-')
      out += static_cast<char>(c);
    else
      out += fmt::format("%{:02X}", static_cast<unsigned>(c));
  }
  return out;
}

std::string format_psnr(double psnr) {
  return std::isfinite(psnr) ? fmt::format("{:.2f}", psnr) : std::string("inf");
}

std::string mode_description(bool train_mode) {
  return train_mode ? "train (the paper's test time: batch statistics of each image, dropout on)"
                    : "eval (running batch-norm statistics, no dropout)";
}

std::string index_html(const TestOptions& options, const TestResult& result,
                       const std::string& split_label) {
  std::string html;
  html += "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\n";
  html += fmt::format("<title>{}</title>\n", escape_html(options.run + " - " + split_label));
  html +=
      "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
      "td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:center}"
      "img{width:256px;image-rendering:auto}</style>\n</head><body>\n";
  html += fmt::format("<h1>{}</h1>\n", escape_html(options.run));
  html += "<p>";
  html += fmt::format("split <b>{}</b>, checkpoint <code>{}</code>, mode <b>{}</b>, {} images<br>",
                      escape_html(options.split), escape_html(result.checkpoint),
                      escape_html(mode_description(result.train_mode)), result.images.size());
  const ImageMetrics& mean = result.mean;
  html += fmt::format(
      "mean L1 {:.4f} (on [-1, 1]), PSNR {} dB, SSIM {:.4f}, sharpness {:.3f}, checkerboard "
      "{:.4f}, colour error {:.2f}</p>\n",
      mean.l1, format_psnr(mean.psnr), mean.ssim, mean.sharpness, mean.checkerboard,
      mean.colour_error);
  html +=
      "<table>\n<tr><th>name</th><th>input (real_A)</th><th>output (fake_B)</th>"
      "<th>target (real_B)</th><th>L1</th><th>PSNR</th><th>SSIM</th><th>sharpness</th>"
      "<th>checkerboard</th><th>colour error</th></tr>\n";
  for (const auto& image : result.images) {
    auto cell = [&](const char* kind) {
      const std::string file = url_encode(image.name + "_" + kind + ".png");
      return fmt::format("<td><a href=\"images/{0}\"><img src=\"images/{0}\" alt=\"{1}\"></a></td>",
                         file, kind);
    };
    const ImageMetrics& m = image.metrics;
    html += fmt::format(
        "<tr><td>{}</td>{}{}{}<td>{:.4f}</td><td>{}</td><td>{:.4f}</td><td>{:.3f}</td>"
        "<td>{:.4f}</td><td>{:.2f}</td></tr>\n",
        escape_html(image.name), cell("real_A"), cell("fake_B"), cell("real_B"), m.l1,
        format_psnr(m.psnr), m.ssim, m.sharpness, m.checkerboard, m.colour_error);
  }
  html += "</table>\n</body></html>\n";
  return html;
}

// An 8-bit (or 16-bit) image PNG can hold: float images become 8-bit.
Image writable(const Image& image) {
  return image.type == SampleType::kFloat32 ? to_8bit(image) : image;
}

}  // namespace

TrainOptions read_run_options(const std::string& run_dir) {
  const std::string file = RunDirectory{run_dir}.options();
  if (!fs::is_directory(run_dir)) throw Error(run_dir, "run folder does not exist");
  if (!fs::exists(file)) throw Error(file, "missing: not a training run folder");
  TrainOptions t;
  detail::read_options_json(detail::read_options_file(file), file, &t);
  // Where the run is now, which may not be where it was trained.
  const fs::path run_path = fs::path(run_dir).lexically_normal();
  const fs::path name =
      run_path.filename().empty() ? run_path.parent_path().filename() : run_path.filename();
  t.name = name.string();
  t.runs_dir =
      (run_path.filename().empty() ? run_path.parent_path() : run_path).parent_path().string();
  return t;
}

TransformOptions test_transform(const TransformOptions& train) {
  TransformOptions t = train;
  t.flip = false;
  switch (train.preprocess) {
    case Preprocess::kResizeAndCrop:
      t.load_size = std::max(train.crop_height, train.crop_width);
      break;
    case Preprocess::kScaleWidth:
    case Preprocess::kScaleWidthAndCrop:
      t.load_size = train.crop_width;
      break;
    case Preprocess::kCrop:
    case Preprocess::kNone:
      break;
  }
  return t;
}

TransformParams test_transform_params(const TransformOptions& options, int width, int height) {
  TransformParams params;
  if (has_crop(options.preprocess)) {
    const ImageSize resized = resized_size(options, width, height);
    params.crop_x = std::max(0, resized.width - options.crop_width) / 2;
    params.crop_y = std::max(0, resized.height - options.crop_height) / 2;
  }
  return params;
}

TestResult run_test(const TestOptions& options,
                    const std::function<void(const std::string&)>& log) {
  auto say = [&](const std::string& line) {
    if (log) log(line);
  };
  if (options.num_test < 0) throw Error::option("num_test", "must be 0 (all) or positive");
  const TrainOptions run = read_run_options(options.run);
  TestResult result;
  result.checkpoint = generator_checkpoint(options.run, options.epoch);
  result.train_mode = options.train_mode;
  const std::string epoch_label = options.epoch == "latest" || options.epoch == "best"
                                      ? options.epoch
                                      : std::to_string(std::stoll(options.epoch));

  // Data and network first: nothing is written before both are known to work.
  DatasetOptions data_options;
  data_options.root = options.data.empty() ? run.data : options.data;
  if (data_options.root.empty())
    throw Error::option("data", "the run's options.json names no dataset; give `data`");
  data_options.split = options.split;
  data_options.direction = run.direction;
  data_options.input_nc = static_cast<int>(run.generator.input_nc);
  data_options.output_nc = static_cast<int>(run.generator.output_nc);
  const Dataset dataset(data_options);
  if (dataset.layout() == DatasetLayout::kSingle)
    throw Error(data_options.root, "test needs targets (aligned or paired folders)");

  auto generator = make_generator(run.generator);
  load_state_dict(*generator, read_state_dict(result.checkpoint), result.checkpoint);
  ComputeOptions compute;
  compute.device = options.device;
  place(*generator, compute);
  TranslateOptions translate_options;
  translate_options.train_mode = options.train_mode;
  const Translator translator(generator, translate_options);
  const TransformOptions transform = test_transform(run.transform);
  validate(transform);

  const size_t count = options.num_test > 0
                           ? std::min(dataset.size(), static_cast<size_t>(options.num_test))
                           : dataset.size();
  result.results_dir =
      (fs::path(RunDirectory{options.run}.results()) / (options.split + "_" + epoch_label))
          .string();
  const std::string images_dir = result.results_dir + "/images";
  std::error_code error;
  fs::create_directories(images_dir, error);
  if (error)
    throw Error(images_dir, "cannot create the results folder: " + error.message(),
                ErrorKind::kRuntime);
  say(fmt::format("testing {} on {} split '{}' ({} of {} images), checkpoint {}", options.run,
                  data_options.root, options.split, count, dataset.size(), result.checkpoint));
  say("mode: " + mode_description(options.train_mode));

  at::manual_seed(options.seed);  // dropout in train mode: the same images every time
  std::vector<std::string> names;
  std::vector<ImageMetrics> metrics;
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < count; ++i) {
    const Sample sample = dataset.load(i);
    const TransformParams params =
        test_transform_params(transform, sample.input.width, sample.input.height);
    const std::string& path = dataset.entry(i).path_a;
    const Image real_a = transform_image(sample.input, transform, params, path);
    const Image real_b = transform_image(sample.target, transform, params, dataset.entry(i).path_b);
    const Image fake_b = translator.translate(real_a, path);
    const ImageMetrics m = compare_images(real_b, fake_b, path);
    const std::string stem = images_dir + "/" + sample.name;
    write_png(stem + "_real_A.png", writable(real_a), options.png);
    write_png(stem + "_fake_B.png", fake_b, options.png);
    write_png(stem + "_real_B.png", writable(real_b), options.png);
    names.push_back(sample.name);
    metrics.push_back(m);
    result.images.push_back({sample.name, m});
    say(fmt::format("[{}/{}] {}  L1 {:.4f}  PSNR {}  SSIM {:.4f}", i + 1, count, sample.name, m.l1,
                    format_psnr(m.psnr), m.ssim));
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.mean = mean_metrics(metrics);

  write_text_file(result.results_dir + "/metrics.csv", metrics_csv(names, metrics));
  Json summary{
      {"run", options.run},
      {"checkpoint", result.checkpoint},
      {"epoch", epoch_label},
      {"data", data_options.root},
      {"split", options.split},
      {"direction", to_string(run.direction)},
      {"mode", options.train_mode ? "train" : "eval"},
      {"mode_description", mode_description(options.train_mode)},
      {"seed", options.seed},
      {"preprocess",
       Json{{"preprocess", to_string(transform.preprocess)},
            {"load_size", transform.load_size},
            {"crop_size", to_string(CropSize{transform.crop_height, transform.crop_width})},
            {"resize_filter", to_string(transform.filter)},
            {"crop", "centred"},
            {"flip", false}}},
      {"images", result.images.size()},
      {"dataset_images", dataset.size()},
      {"seconds", seconds},
      {"l1_scale", "[-1, 1] (8-bit difference / 127.5)"},
      {"mean", metrics_json(result.mean)},
  };
  write_text_file(result.results_dir + "/summary.json", summary.dump(2) + "\n");
  write_text_file(result.results_dir + "/index.html",
                  index_html(options, result, options.split + "_" + epoch_label));
  say(fmt::format("{} images in {:.1f} s; mean L1 {:.4f}, PSNR {}, SSIM {:.4f}; wrote {}",
                  result.images.size(), seconds, result.mean.l1, format_psnr(result.mean.psnr),
                  result.mean.ssim, result.results_dir));
  return result;
}

}  // namespace pix2pix
