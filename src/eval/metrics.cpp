#include "pix2pix/eval/metrics.h"

#include <ATen/ATen.h>
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "eval/image_checks.h"
#include "io/atomic_file.h"
#include "pix2pix/data/dataset.h"
#include "pix2pix/data/transforms.h"
#include "pix2pix/error.h"
#include "pix2pix/eval/inception.h"

namespace pix2pix {

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// SSIM's constants (Wang et al. 2004) and window (scikit-image: truncate 3.5 -> radius 5).
constexpr double kSsimK1 = 0.01, kSsimK2 = 0.03, kSsimSigma = 1.5;
constexpr int kSsimRadius = 5;
constexpr double kPeak = 255.0;

}  // namespace

namespace detail {

at::Tensor to_chw_double(const Image& image) {
  return at::from_blob(const_cast<uint8_t*>(image.data.data()),
                       {image.height, image.width, image.channels}, at::kByte)
      .permute({2, 0, 1})
      .to(at::kDouble);
}

void require_comparable(const Image& real, const Image& fake, const char* what) {
  if (real.type != SampleType::kUint8 || fake.type != SampleType::kUint8)
    throw Error(what, "expects 8-bit images (see to_8bit)");
  if (real.width != fake.width || real.height != fake.height || real.channels != fake.channels)
    throw Error(what,
                fmt::format("images differ in size: {}x{}x{} and {}x{}x{}", real.width, real.height,
                            real.channels, fake.width, fake.height, fake.channels));
  if (real.empty()) throw Error(what, "empty images");
}

}  // namespace detail

namespace {

using detail::require_comparable;
using detail::to_chw_double;

double mean_squared_error(const Image& real, const Image& fake) {
  double sum = 0;
  for (size_t i = 0; i < real.data.size(); ++i) {
    const double d = double(real.data[i]) - double(fake.data[i]);
    sum += d * d;
  }
  return sum / double(real.data.size());
}

// The 11 taps of scipy.ndimage's Gaussian (exp(-x^2 / 2 sigma^2), normalised to sum 1).
at::Tensor gaussian_taps() {
  std::vector<double> taps;
  double sum = 0;
  for (int x = -kSsimRadius; x <= kSsimRadius; ++x) {
    taps.push_back(std::exp(-0.5 * x * x / (kSsimSigma * kSsimSigma)));
    sum += taps.back();
  }
  for (double& t : taps) t /= sum;
  return at::tensor(taps, at::kDouble);
}

at::Tensor as_double(const at::Tensor& t) { return t.detach().to(at::kCPU).to(at::kDouble); }

}  // namespace

Image to_8bit(const Image& image) {
  if (image.type == SampleType::kUint8) return image;
  Image out(image.width, image.height, image.channels, SampleType::kUint8);
  const size_t n = image.sample_count();
  if (image.type == SampleType::kUint16) {
    const uint16_t* src = image.samples<uint16_t>();
    for (size_t i = 0; i < n; ++i) out.data[i] = static_cast<uint8_t>((src[i] * 2 + 257) / 514);
  } else {
    const float* src = image.samples<float>();
    for (size_t i = 0; i < n; ++i) {
      const float v = std::isnan(src[i]) ? 0.f : std::clamp(src[i], 0.f, 1.f);
      out.data[i] = static_cast<uint8_t>(std::lround(v * 255.f));
    }
  }
  return out;
}

double l1_distance(const Image& real, const Image& fake) {
  require_comparable(real, fake, "l1_distance");
  uint64_t sum = 0;
  for (size_t i = 0; i < real.data.size(); ++i)
    sum += static_cast<uint64_t>(std::abs(int(real.data[i]) - int(fake.data[i])));
  return double(sum) / double(real.data.size()) / 127.5;
}

double psnr(const Image& real, const Image& fake) {
  require_comparable(real, fake, "psnr");
  const double mse = mean_squared_error(real, fake);
  if (mse == 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(kPeak * kPeak / mse);
}

double ssim(const Image& real, const Image& fake) {
  require_comparable(real, fake, "ssim");
  const int window = 2 * kSsimRadius + 1;
  if (real.width < window || real.height < window)
    throw Error("ssim", fmt::format("images of {}x{} are smaller than the {}x{} window", real.width,
                                    real.height, window, window));
  const int64_t c = real.channels;
  const at::Tensor x = to_chw_double(real), y = to_chw_double(fake);
  // Local means of x, y, x^2, y^2 and xy with one separable valid convolution. Only pixels whose
  // window lies inside the image count (scikit-image crops the radius off after filtering), so
  // no border handling is needed.
  at::Tensor stack = at::cat({x, y, x * x, y * y, x * y}, 0).unsqueeze(1);  // 5C x 1 x H x W
  const at::Tensor taps = gaussian_taps();
  at::Tensor filtered = at::conv2d(stack, taps.view({1, 1, 1, window}));
  filtered = at::conv2d(filtered, taps.view({1, 1, window, 1})).squeeze(1);
  const at::Tensor ux = filtered.narrow(0, 0, c), uy = filtered.narrow(0, c, c);
  const at::Tensor uxx = filtered.narrow(0, 2 * c, c), uyy = filtered.narrow(0, 3 * c, c);
  const at::Tensor uxy = filtered.narrow(0, 4 * c, c);
  const at::Tensor vx = uxx - ux * ux, vy = uyy - uy * uy, vxy = uxy - ux * uy;
  const double c1 = std::pow(kSsimK1 * kPeak, 2), c2 = std::pow(kSsimK2 * kPeak, 2);
  const at::Tensor s =
      ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
  // Every channel has the same number of pixels: the mean of all is the mean of the channels'.
  return s.mean().item<double>();
}

ImageMetrics compare_images(const Image& real, const Image& fake, const std::string& name) {
  if (real.width != fake.width || real.height != fake.height)
    throw Error(name, fmt::format("sizes differ: real {}x{}, fake {}x{}", real.width, real.height,
                                  fake.width, fake.height));
  auto colour = [](int channels) { return channels >= 3 ? 3 : 1; };
  const int channels = std::max(colour(real.channels), colour(fake.channels));
  const Image a = convert_channels(to_8bit(real), channels);
  const Image b = convert_channels(to_8bit(fake), channels);
  ImageMetrics m;
  m.l1 = l1_distance(a, b);
  m.psnr = psnr(a, b);
  try {
    m.ssim = ssim(a, b);
  } catch (const Error& e) {
    throw Error(name, e.what());
  }
  m.sharpness = sharpness(a, b);
  m.checkerboard = checkerboard(a, b);
  m.colour_error = colour_error(a, b);
  return m;
}

ImageMetrics mean_metrics(const std::vector<ImageMetrics>& metrics) {
  ImageMetrics mean;
  if (metrics.empty()) return mean;
  mean.sharpness = 0;
  int64_t sharp = 0;
  for (const auto& m : metrics) {
    mean.l1 += m.l1;
    mean.psnr += m.psnr;
    mean.ssim += m.ssim;
    mean.checkerboard += m.checkerboard;
    mean.colour_error += m.colour_error;
    if (std::isfinite(m.sharpness)) mean.sharpness += m.sharpness, ++sharp;
  }
  const double n = double(metrics.size());
  mean.l1 /= n;
  mean.psnr /= n;
  mean.ssim /= n;
  mean.checkerboard /= n;
  mean.colour_error /= n;
  mean.sharpness = sharp > 0 ? mean.sharpness / double(sharp) : std::nan("");
  return mean;
}

// ---- FID / KID --------------------------------------------------------------------------------

FeatureStatistics feature_statistics(const at::Tensor& features) {
  if (features.dim() != 2 || features.size(0) < 2)
    throw Error("feature_statistics",
                "needs an N x D matrix with N >= 2 (got " +
                    std::to_string(features.dim() == 2 ? features.size(0) : 0) + " rows)");
  const at::Tensor f = as_double(features);
  FeatureStatistics stats;
  stats.count = f.size(0);
  stats.mean = f.mean(0);
  const at::Tensor centred = f - stats.mean;
  stats.covariance = centred.t().matmul(centred) / double(stats.count - 1);
  return stats;
}

double frechet_distance(const FeatureStatistics& a, const FeatureStatistics& b) {
  if (a.mean.numel() != b.mean.numel())
    throw Error("frechet_distance", "feature dimensions differ: " + std::to_string(a.mean.numel()) +
                                        " and " + std::to_string(b.mean.numel()));
  const at::Tensor s1 = as_double(a.covariance), s2 = as_double(b.covariance);
  // sqrt(S1) from S1's eigendecomposition, then the eigenvalues of the symmetric
  // sqrt(S1) S2 sqrt(S1), which has the eigenvalues of S1 S2.
  auto [values1, vectors1] = at::linalg_eigh(s1);
  const at::Tensor root1 =
      vectors1.matmul(at::diag(values1.clamp_min(0).sqrt())).matmul(vectors1.t());
  at::Tensor middle = root1.matmul(s2).matmul(root1);
  middle = (middle + middle.t()) / 2;  // symmetric up to round-off: make it exactly so
  const double trace_sqrt = at::linalg_eigvalsh(middle).clamp_min(0).sqrt().sum().item<double>();
  const at::Tensor diff = as_double(a.mean) - as_double(b.mean);
  return diff.dot(diff).item<double>() + s1.trace().item<double>() + s2.trace().item<double>() -
         2 * trace_sqrt;
}

double mmd2_polynomial(const at::Tensor& x_in, const at::Tensor& y_in) {
  if (x_in.dim() != 2 || y_in.dim() != 2 || x_in.size(1) != y_in.size(1))
    throw Error("mmd2_polynomial", "needs N x D and M x D feature matrices");
  if (x_in.size(0) < 2 || y_in.size(0) < 2)
    throw Error("mmd2_polynomial", "needs at least 2 features in each set");
  const at::Tensor x = as_double(x_in), y = as_double(y_in);
  const double d = double(x.size(1));
  auto kernel = [d](const at::Tensor& a, const at::Tensor& b) {
    return (a.matmul(b.t()) / d + 1).pow(3);
  };
  const double n = double(x.size(0)), m = double(y.size(0));
  const at::Tensor kxx = kernel(x, x), kyy = kernel(y, y), kxy = kernel(x, y);
  const double sum_xx = (kxx.sum() - kxx.diagonal().sum()).item<double>();
  const double sum_yy = (kyy.sum() - kyy.diagonal().sum()).item<double>();
  return sum_xx / (n * (n - 1)) + sum_yy / (m * (m - 1)) - 2 * kxy.mean().item<double>();
}

KidResult kernel_inception_distance(const at::Tensor& x, const at::Tensor& y,
                                    const KidOptions& options) {
  if (x.dim() != 2 || y.dim() != 2 || x.size(1) != y.size(1))
    throw Error("kernel_inception_distance", "needs N x D and M x D feature matrices");
  if (x.size(0) < 2 || y.size(0) < 2)
    throw Error("kernel_inception_distance", "needs at least 2 features in each set");
  if (options.subsets < 1 || options.subset_size < 2)
    throw Error("kernel_inception_distance", "needs subsets >= 1 and subset_size >= 2");
  KidResult result;
  result.subsets = options.subsets;
  result.subset_size = std::min({options.subset_size, x.size(0), y.size(0)});
  SplitMix64 random(options.seed);
  // A uniform choice of k distinct rows of n: the first k of a partial Fisher-Yates shuffle.
  auto choose = [&random](int64_t n, int64_t k) {
    std::vector<int64_t> rows(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) rows[size_t(i)] = i;
    for (int64_t i = 0; i < k; ++i)
      std::swap(rows[size_t(i)], rows[size_t(i + int64_t(random.below(uint64_t(n - i))))]);
    rows.resize(size_t(k));
    return at::tensor(rows, at::kLong);
  };
  std::vector<double> values;
  for (int64_t s = 0; s < options.subsets; ++s) {
    const at::Tensor rows_x = choose(x.size(0), result.subset_size);
    const at::Tensor rows_y = choose(y.size(0), result.subset_size);
    values.push_back(mmd2_polynomial(x.index_select(0, rows_x), y.index_select(0, rows_y)));
  }
  double sum = 0;
  for (double v : values) sum += v;
  result.mean = sum / double(values.size());
  double var = 0;
  for (double v : values) var += (v - result.mean) * (v - result.mean);
  result.std = std::sqrt(var / double(values.size()));
  return result;
}

// ---- folders ----------------------------------------------------------------------------------

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// stem -> path of the files to use from `folder`: those named <stem><suffix>.* when any is
// (the reference's result names), else every image by stem. `one_folder`: the folder holds both
// kinds, so the names must be tagged.
std::map<std::string, std::string> index_folder(const std::string& folder,
                                                const std::string& suffix, const char* role,
                                                bool one_folder) {
  std::map<std::string, std::string> by_name;
  const std::vector<std::string> files = list_images(folder);
  bool tagged = false;
  for (const auto& path : files)
    tagged = tagged || ends_with(fs::path(path).stem().string(), suffix);
  if (one_folder && !tagged)
    throw Error(folder, fmt::format("no <stem>{}.* images: one folder for real and fake images "
                                    "must hold the reference's <stem>_real_B / <stem>_fake_B "
                                    "names (otherwise give `fake_dir`)",
                                    suffix));
  for (const auto& path : files) {
    std::string stem = fs::path(path).stem().string();
    if (tagged) {
      if (!ends_with(stem, suffix)) continue;
      stem.resize(stem.size() - suffix.size());
    }
    auto [it, inserted] = by_name.emplace(stem, path);
    if (!inserted)
      throw Error(path,
                  fmt::format("{} image '{}' occurs twice (also {})", role, stem, it->second));
  }
  if (by_name.empty()) throw Error(folder, fmt::format("no {} images (PNG, JPEG, TIFF)", role));
  return by_name;
}

std::string list_some(const std::vector<std::string>& items) {
  std::string text;
  for (size_t i = 0; i < items.size() && i < 5; ++i) text += (i ? ", " : "") + items[i];
  if (items.size() > 5) text += fmt::format(" and {} more", items.size() - 5);
  return text;
}

Json number_or_null(double value) { return std::isfinite(value) ? Json(value) : Json(nullptr); }

}  // namespace

Json metrics_json(const ImageMetrics& m) {
  return Json{{"l1", m.l1},
              {"psnr", number_or_null(m.psnr)},
              {"ssim", m.ssim},
              {"sharpness", number_or_null(m.sharpness)},
              {"checkerboard", m.checkerboard},
              {"colour_error", m.colour_error}};
}

std::vector<EvalPair> pair_eval_images(const std::string& real_dir, const std::string& fake_dir) {
  const std::string fake_folder = fake_dir.empty() ? real_dir : fake_dir;
  std::error_code error;
  const bool one_folder = fake_dir.empty() || fs::path(real_dir) == fs::path(fake_dir) ||
                          fs::equivalent(real_dir, fake_folder, error);
  const auto real = index_folder(real_dir, "_real_B", "real", one_folder);
  const auto fake = index_folder(fake_folder, "_fake_B", "fake", one_folder);
  std::vector<std::string> real_only, fake_only;
  std::vector<EvalPair> pairs;
  for (const auto& [name, path] : real) {
    auto it = fake.find(name);
    if (it == fake.end())
      real_only.push_back(fs::path(path).filename().string());
    else
      pairs.push_back({name, path, it->second});
  }
  for (const auto& [name, path] : fake)
    if (!real.count(name)) fake_only.push_back(fs::path(path).filename().string());
  if (pairs.empty())
    throw Error(fake_folder, fmt::format("no image pairs with {}: no stem occurs in both (real: "
                                         "{}; fake: {})",
                                         real_dir, list_some(real_only), list_some(fake_only)));
  if (!real_only.empty())
    throw Error(fake_folder,
                fmt::format("no fake image for {} real image{} of {}: {}", real_only.size(),
                            real_only.size() == 1 ? "" : "s", real_dir, list_some(real_only)));
  if (!fake_only.empty())
    throw Error(real_dir,
                fmt::format("no real image for {} fake image{} of {}: {}", fake_only.size(),
                            fake_only.size() == 1 ? "" : "s", fake_folder, list_some(fake_only)));
  return pairs;
}

EvalReport evaluate_folders(const EvalOptions& options,
                            const std::function<void(const std::string&)>& progress) {
  auto say = [&](const std::string& line) {
    if (progress) progress(line);
  };
  if (!options.fid_weights.empty() && !fs::is_regular_file(options.fid_weights))
    throw Error(options.fid_weights, "FID weights file does not exist");
  const std::vector<EvalPair> pairs = pair_eval_images(options.real_dir, options.fake_dir);
  EvalReport report;
  std::vector<Image> reals, fakes;
  const bool keep = !options.fid_weights.empty();
  std::vector<ImageMetrics> all;
  for (const auto& pair : pairs) {
    const Image real = to_8bit(read_image(pair.real_path));
    const Image fake = to_8bit(read_image(pair.fake_path));
    if (real.width != fake.width || real.height != fake.height)
      throw Error(pair.fake_path,
                  fmt::format("is {}x{} but its real image {} is {}x{}", fake.width, fake.height,
                              pair.real_path, real.width, real.height));
    report.images.push_back({pair, compare_images(real, fake, pair.fake_path)});
    all.push_back(report.images.back().metrics);
    if (keep) {
      reals.push_back(real);
      fakes.push_back(fake);
    }
  }
  report.mean = mean_metrics(all);
  if (!keep) {
    report.fid_unavailable =
        "no InceptionV3 weights given (`fid_weights` pt_inception-2015-12-05-6726825d.pth, "
        "pytorch-fid's file)";
    return report;
  }
  if (pairs.size() < 2) {
    report.fid_unavailable = "FID and KID need at least 2 images per set";
    return report;
  }
  auto network = load_fid_inception(options.fid_weights);
  auto features = [&](const std::vector<Image>& images, const char* which) {
    return fid_features(*network, images, options.batch_size, [&](size_t done) {
      say(fmt::format("InceptionV3 features ({}): {}/{}", which, done, images.size()));
    });
  };
  const at::Tensor real_features = features(reals, "real");
  const at::Tensor fake_features = features(fakes, "fake");
  report.fid =
      frechet_distance(feature_statistics(real_features), feature_statistics(fake_features));
  report.kid = kernel_inception_distance(real_features, fake_features, options.kid);
  report.fid_available = true;
  return report;
}

std::string metrics_csv(const std::vector<std::string>& names,
                        const std::vector<ImageMetrics>& metrics) {
  std::string csv = std::string(kMetricsCsvHeader) + "\n";
  for (size_t i = 0; i < names.size() && i < metrics.size(); ++i) {
    const auto& m = metrics[i];
    // Names are file stems; quote the rare one that would break the row.
    std::string name = names[i];
    if (name.find_first_of(",\"\n") != std::string::npos) {
      std::string quoted = "\"";
      for (char ch : name) quoted += ch == '"' ? std::string("\"\"") : std::string(1, ch);
      name = quoted + "\"";
    }
    csv += fmt::format("{},{:.6f},{},{:.6f},{},{:.6f},{:.4f}\n", name, m.l1,
                       std::isfinite(m.psnr) ? fmt::format("{:.6f}", m.psnr) : "inf", m.ssim,
                       std::isfinite(m.sharpness) ? fmt::format("{:.6f}", m.sharpness) : "nan",
                       m.checkerboard, m.colour_error);
  }
  return csv;
}

std::string eval_report_json(const EvalReport& report) {
  Json images = Json::array();
  for (const auto& image : report.images) {
    Json row = metrics_json(image.metrics);
    row["name"] = image.pair.name;
    row["real"] = image.pair.real_path;
    row["fake"] = image.pair.fake_path;
    images.push_back(row);
  }
  Json json{
      {"images", images}, {"count", report.images.size()}, {"mean", metrics_json(report.mean)}};
  if (report.fid_available) {
    json["fid"] = report.fid;
    json["kid"] = Json{{"mean", report.kid.mean},
                       {"std", report.kid.std},
                       {"subsets", report.kid.subsets},
                       {"subset_size", report.kid.subset_size}};
    json["fid_unavailable"] = nullptr;
  } else {
    json["fid"] = nullptr;
    json["kid"] = nullptr;
    json["fid_unavailable"] = report.fid_unavailable;
  }
  return json.dump(2) + "\n";
}

void write_text_file(const std::string& path, const std::string& text) {
  detail::write_file_atomically(path, text);
}

}  // namespace pix2pix
