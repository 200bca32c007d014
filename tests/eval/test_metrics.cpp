// Metrics: L1 / PSNR / SSIM against scikit-image on real facades photos, FID and MMD against
// numpy/scipy on random features, KID's subsets, the FID InceptionV3 against an independent
// Python definition (tests/reference/fid_inception.py) with random weights, folder pairing.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "pix2pix/data/dataset.h"
#include "pix2pix/data/transforms.h"
#include "pix2pix/error.h"
#include "pix2pix/eval/inception.h"
#include "pix2pix/eval/metrics.h"
#include "pix2pix/io/pytorch_import.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using Json = nlohmann::json;
using test::shell_quote;

bool have_python_skimage() {
  static const bool ok =
      test::run_python("-c 'import skimage.metrics, scipy.linalg, numpy, PIL, torch'").exit_code ==
      0;
  return test::required(ok, "/usr/bin/python3 with scikit-image, scipy and torch");
}

#define REQUIRE_SKIMAGE()                                                              \
  if (!have_python_skimage())                                                          \
  GTEST_SKIP() << "/usr/bin/python3 with scikit-image, scipy and torch not available " \
                  "(scripts/setup.sh installs them)"

Json python_json(const std::string& args) {
  const auto result = test::run_python(args);
  EXPECT_EQ(result.exit_code, 0) << result.output;
  // The last line is the JSON (warnings may precede it).
  std::string output = result.output;
  while (!output.empty() && output.back() == '\n') output.pop_back();
  return Json::parse(output.substr(output.rfind('\n') + 1));
}

std::string reference_script(const std::string& name) {
  return shell_quote(test::source_dir() + "/tests/reference/" + name);
}

// The photo half of a facades test image (256 x 256 RGB).
Image facades_photo(int index) {
  const std::string path =
      test::shared_dir() + "/data/facades/test/" + std::to_string(index) + ".jpg";
  return split_aligned(read_image(path), path).first;
}

// Adds deterministic noise in [-amplitude, amplitude], clamped.
Image noised(const Image& image, int amplitude, uint64_t seed) {
  Image out = image;
  SplitMix64 random(seed);
  for (auto& v : out.data) {
    const int noise = int(random.below(uint64_t(2 * amplitude + 1))) - amplitude;
    v = uint8_t(std::clamp(int(v) + noise, 0, 255));
  }
  return out;
}

// 3 x 3 box blur (edges clamped).
Image blurred(const Image& image) {
  Image out = image;
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x)
      for (int c = 0; c < image.channels; ++c) {
        int sum = 0;
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx)
            sum += image.at<uint8_t>(std::clamp(y + dy, 0, image.height - 1),
                                     std::clamp(x + dx, 0, image.width - 1), c);
        out.at<uint8_t>(y, x, c) = uint8_t((sum + 4) / 9);
      }
  return out;
}

TEST(Metrics, PsnrSsimL1MatchScikitImageOnFacadesPhotos) {
  REQUIRE_SKIMAGE();
  const std::string dir = test::temp_dir();
  std::vector<std::pair<Image, Image>> pairs;
  const Image photo1 = facades_photo(1), photo2 = facades_photo(2), photo3 = facades_photo(3);
  pairs.emplace_back(photo1, noised(photo1, 20, 1));
  pairs.emplace_back(photo2, blurred(photo2));
  pairs.emplace_back(photo3, noised(blurred(photo3), 6, 2));
  pairs.emplace_back(photo1, photo2);  // unrelated images
  // Gray, and an odd size (crop): SSIM's border handling must match.
  pairs.emplace_back(convert_channels(photo2, 1), convert_channels(noised(photo2, 30, 3), 1));
  pairs.emplace_back(crop_image(photo3, 7, 11, 101, 67),
                     crop_image(blurred(photo3), 7, 11, 101, 67));
  std::string args = reference_script("metrics_ref.py") + " images";
  for (size_t i = 0; i < pairs.size(); ++i) {
    args += " " +
            shell_quote(test::put_image(dir, "real" + std::to_string(i) + ".png", pairs[i].first));
    args += " " +
            shell_quote(test::put_image(dir, "fake" + std::to_string(i) + ".png", pairs[i].second));
  }
  const Json expected = python_json(args);
  ASSERT_EQ(expected.size(), pairs.size());
  for (size_t i = 0; i < pairs.size(); ++i) {
    const ImageMetrics m = compare_images(pairs[i].first, pairs[i].second, "pair");
    SCOPED_TRACE("pair " + std::to_string(i));
    EXPECT_NEAR(m.psnr, expected[i]["psnr"].get<double>(), 1e-3);
    EXPECT_NEAR(m.ssim, expected[i]["ssim"].get<double>(), 1e-3);
    EXPECT_NEAR(m.l1, expected[i]["l1"].get<double>(), 1e-9);
    // Far tighter in fact: the same formulas in double.
    EXPECT_NEAR(m.ssim, expected[i]["ssim"].get<double>(), 1e-9);
    EXPECT_NEAR(m.psnr, expected[i]["psnr"].get<double>(), 1e-9);
  }
  // The pairs span a useful range of quality.
  EXPECT_GT(expected[1]["ssim"].get<double>(), expected[3]["ssim"].get<double>());
}

TEST(Metrics, IdenticalImagesAndConventions) {
  const Image photo = facades_photo(4);
  const ImageMetrics same = compare_images(photo, photo, "same");
  EXPECT_EQ(same.l1, 0);
  EXPECT_TRUE(std::isinf(same.psnr));
  EXPECT_NEAR(same.ssim, 1.0, 1e-12);
  // L1 on [-1, 1]: black vs white is 2, a one-level difference everywhere 1 / 127.5.
  Image black(16, 16, 3), white(16, 16, 3), one(16, 16, 3);
  std::fill(white.data.begin(), white.data.end(), 255);
  std::fill(one.data.begin(), one.data.end(), 1);
  EXPECT_DOUBLE_EQ(l1_distance(black, white), 2.0);
  EXPECT_DOUBLE_EQ(l1_distance(black, one), 1.0 / 127.5);
  EXPECT_NEAR(psnr(black, one), 20 * std::log10(255.0), 1e-12);
  // 16-bit images are compared at 8 bits; gray against RGB after conversion to RGB.
  Image deep(16, 16, 3, SampleType::kUint16);
  for (size_t i = 0; i < deep.sample_count(); ++i) deep.samples<uint16_t>()[i] = 257;
  EXPECT_EQ(compare_images(one, deep, "deep").l1, 0);
  EXPECT_EQ(compare_images(convert_channels(one, 1), one, "gray").l1, 0);
  const std::vector<ImageMetrics> list = {{0.1, 20, 0.5}, {0.3, 30, 0.7}};
  const ImageMetrics mean = mean_metrics(list);
  EXPECT_DOUBLE_EQ(mean.l1, 0.2);
  EXPECT_DOUBLE_EQ(mean.psnr, 25);
  EXPECT_DOUBLE_EQ(mean.ssim, 0.6);
}

TEST(Metrics, RejectsMismatchedAndTinyImages) {
  try {
    compare_images(Image(32, 32, 3), Image(32, 31, 3), "out/x.png");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out/x.png"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("32x31"), std::string::npos) << e.what();
  }
  try {
    compare_images(Image(10, 40, 3), Image(10, 40, 3), "small.png");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("small.png"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("11x11"), std::string::npos) << e.what();
  }
}

// x: N x D features; y: a shifted, rescaled and correlated set.
std::pair<torch::Tensor, torch::Tensor> random_features(int64_t n, int64_t m, int64_t d,
                                                        uint64_t seed) {
  torch::manual_seed(seed);
  torch::Tensor x = torch::randn({n, d}, torch::kDouble);
  torch::Tensor mix = torch::eye(d, torch::kDouble) + 0.3 * torch::randn({d, d}, torch::kDouble);
  torch::Tensor y = torch::randn({m, d}, torch::kDouble).matmul(mix) * 1.5 + 0.4;
  return {x, y};
}

TEST(Metrics, SharpnessFallsForABlurredCopyAndRisesForANoisyOne) {
  if (!test::required(fs::exists(test::shared_dir() + "/data/facades/test/1.jpg"),
                      "../shared/data/facades"))
    GTEST_SKIP() << "no facades data";
  const Image photo = facades_photo(1);
  EXPECT_DOUBLE_EQ(sharpness(photo, photo), 1.0);
  const double blur = sharpness(photo, blurred(photo));
  EXPECT_LT(blur, 0.8);
  EXPECT_GT(blur, 0.2);
  EXPECT_NEAR(sharpness(blurred(photo), photo), 1.0 / blur, 1e-9);
  EXPECT_GT(sharpness(photo, noised(photo, 40, 3)), 1.2);
  Image flat(32, 32, 3);
  EXPECT_DOUBLE_EQ(sharpness(flat, flat), 1.0);
  EXPECT_TRUE(std::isnan(sharpness(flat, noised(flat, 10, 1))));
}

TEST(Metrics, CheckerboardFindsAPlantedTwoPixelPatternAndNotPhotos) {
  if (!test::required(fs::exists(test::shared_dir() + "/data/facades/test/1.jpg"),
                      "../shared/data/facades"))
    GTEST_SKIP() << "no facades data";
  for (int index : {1, 2, 3}) {
    const Image photo = facades_photo(index);
    EXPECT_LT(checkerboard_share(photo), 0.001) << index;  // seen: 0.0001 (little at Nyquist)
    EXPECT_DOUBLE_EQ(checkerboard(photo, photo), 0.0);
    Image planted = photo;  // +-12 levels in a 2x2-pixel-period checkerboard
    for (int y = 0; y < photo.height; ++y)
      for (int x = 0; x < photo.width; ++x)
        for (int k = 0; k < 3; ++k) {
          uint8_t& v = planted.data[(size_t(y) * photo.width + x) * 3 + k];
          v = uint8_t(std::clamp(int(v) + ((x + y) % 2 == 0 ? 12 : -12), 0, 255));
        }
    EXPECT_GT(checkerboard(photo, planted), 0.02) << index;  // seen: 0.025 to 0.05
    EXPECT_LT(std::abs(checkerboard(photo, noised(photo, 4, 5))), 0.01) << index;
  }
  Image stripes(64, 64, 1);  // vertical stripes of period 2: all energy on one Nyquist line
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x) stripes.data[size_t(y) * 64 + x] = x % 2 ? 200 : 50;
  EXPECT_NEAR(checkerboard_share(stripes), 1.0, 1e-12);
}

TEST(Metrics, ColourErrorIsTheShiftOfTheBlockColours) {
  Image image(40, 24, 3);  // 40 x 24: partial blocks at the right and bottom
  for (size_t i = 0; i < image.data.size(); ++i) image.data[i] = uint8_t(20 + i * 13 % 200);
  EXPECT_DOUBLE_EQ(colour_error(image, image), 0.0);
  Image shifted = image;
  for (size_t i = 0; i < shifted.data.size(); i += 3) shifted.data[i] += 10;  // red +10
  EXPECT_NEAR(colour_error(image, shifted), 10.0, 1e-9);
  for (size_t i = 1; i < shifted.data.size(); i += 3) shifted.data[i] -= 10;  // green -10
  EXPECT_NEAR(colour_error(image, shifted), 10.0 * std::sqrt(2.0), 1e-9);
  // Texture without a colour change: a pixel shuffle inside each block keeps its mean.
  Image swapped = image;
  for (int y = 0; y < 16; ++y)
    std::swap(swapped.data[(size_t(y) * 40 + 0) * 3], swapped.data[(size_t(y) * 40 + 1) * 3]);
  EXPECT_NEAR(colour_error(image, swapped), 0.0, 1e-9);
  EXPECT_GT(l1_distance(image, swapped), 0.0);
  const ImageMetrics m = compare_images(image, shifted, "shifted");
  EXPECT_NEAR(m.colour_error, 10.0 * std::sqrt(2.0), 1e-9);
}

TEST(Metrics, FrechetDistanceAndMmdMatchNumpyScipy) {
  REQUIRE_SKIMAGE();
  const std::string dir = test::temp_dir();
  struct Case {
    int64_t n, m, d;
  };
  // Well-conditioned covariances, and fewer samples than dimensions (singular, as FID on a
  // small test split is: 106 images, 2048 features).
  for (const Case c : {Case{300, 250, 24}, Case{40, 30, 64}}) {
    SCOPED_TRACE(std::to_string(c.n) + "x" + std::to_string(c.d));
    auto [x, y] = random_features(c.n, c.m, c.d, uint64_t(c.n));
    const std::string path = dir + "/features.pt";
    write_state_dict(path, {{"x", x.to(torch::kFloat)}, {"y", y.to(torch::kFloat)}});
    const Json expected =
        python_json(reference_script("metrics_ref.py") + " features " + shell_quote(path));
    const FeatureStatistics sx = feature_statistics(x.to(torch::kFloat));
    const FeatureStatistics sy = feature_statistics(y.to(torch::kFloat));
    EXPECT_NEAR(sx.mean[0].item<double>(), expected["mu_x"][0].get<double>(), 1e-12);
    EXPECT_NEAR(sx.covariance.trace().item<double>(), expected["trace_cov_x"].get<double>(),
                1e-9 * expected["trace_cov_x"].get<double>());
    const double fid = frechet_distance(sx, sy);
    const double expected_fid = expected["fid"].get<double>();
    EXPECT_NEAR(fid, expected_fid, 1e-6 * std::abs(expected_fid)) << fid << " vs " << expected_fid;
    const double mmd = mmd2_polynomial(x.to(torch::kFloat), y.to(torch::kFloat));
    const double expected_mmd = expected["mmd2"].get<double>();
    EXPECT_NEAR(mmd, expected_mmd, 1e-9 * std::abs(expected_mmd) + 1e-12);
    EXPECT_GT(fid, 1.0);
    EXPECT_GT(mmd, 0.01);
  }
}

TEST(Metrics, FrechetDistanceOfASetToItselfIsZero) {
  auto [x, y] = random_features(64, 64, 16, 5);
  const FeatureStatistics s = feature_statistics(x);
  EXPECT_NEAR(frechet_distance(s, s), 0, 1e-9);
  // Symmetric in its arguments.
  const FeatureStatistics t = feature_statistics(y);
  EXPECT_NEAR(frechet_distance(s, t), frechet_distance(t, s), 1e-9 * frechet_distance(s, t));
  EXPECT_THROW(feature_statistics(x.narrow(0, 0, 1)), Error);
  EXPECT_THROW(frechet_distance(s, feature_statistics(y.narrow(1, 0, 8))), Error);
}

TEST(Metrics, KidAveragesTheUnbiasedMmdOverSubsets) {
  auto [x, y] = random_features(60, 50, 8, 7);
  // Subsets as large as the smaller set: y is used whole every time (in another order).
  KidOptions whole;
  whole.subsets = 5;
  whole.subset_size = 1000;
  const KidResult same_sets = kernel_inception_distance(x.narrow(0, 0, 50), y, whole);
  EXPECT_EQ(same_sets.subset_size, 50);
  EXPECT_EQ(same_sets.subsets, 5);
  EXPECT_NEAR(same_sets.mean, mmd2_polynomial(x.narrow(0, 0, 50), y), 1e-10);
  EXPECT_NEAR(same_sets.std, 0, 1e-10);
  // Smaller subsets: seeded, varying, and centred on the full-set value.
  KidOptions small;
  small.subsets = 200;
  small.subset_size = 20;
  const KidResult a = kernel_inception_distance(x, y, small);
  const KidResult b = kernel_inception_distance(x, y, small);
  EXPECT_EQ(a.mean, b.mean);
  small.seed = 1;
  const KidResult c = kernel_inception_distance(x, y, small);
  EXPECT_NE(a.mean, c.mean);
  EXPECT_GT(a.std, 0);
  const double full = mmd2_polynomial(x, y);
  EXPECT_NEAR(a.mean, full, 4 * a.std / std::sqrt(200.0) + 0.05 * full);
  // Unbiased: over independent pairs of samples of one distribution the estimates average to 0
  // (the biased estimator would be off by about 2 E[k(x, x)] / n = 0.1 here).
  std::vector<double> same;
  for (uint64_t seed = 100; seed < 140; ++seed) {
    const torch::Tensor p = random_features(50, 50, 8, seed).first;
    same.push_back(mmd2_polynomial(p, torch::randn({50, 8}, torch::kDouble)));
  }
  double mean = 0, var = 0;
  for (double v : same) mean += v / double(same.size());
  for (double v : same) var += (v - mean) * (v - mean) / double(same.size() - 1);
  EXPECT_LT(std::abs(mean), 4 * std::sqrt(var / double(same.size()))) << mean;
  EXPECT_LT(std::abs(mean), 0.1 * full);
  EXPECT_THROW(kernel_inception_distance(x.narrow(0, 0, 1), y), Error);
}

// ---- InceptionV3 ------------------------------------------------------------------------------

// Tests of the network take their folder from dir_ (made in SetUp) and random weights saved by
// the Python definition from weights(), shared by the suite's test processes: made when missing
// or older than the script, written to a temporary name and renamed.
class FidInception : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = test::temp_dir(); }

  std::string weights() const {
    const fs::path script = test::source_dir() + "/tests/reference/fid_inception.py";
    const fs::path file = fs::path(dir_).parent_path() / "FidInceptionWeights" / "random.pth";
    std::error_code error;
    if (!fs::exists(file) || fs::last_write_time(file) < fs::last_write_time(script)) {
      fs::create_directories(file.parent_path());
      const std::string tmp = file.string() + "." + std::to_string(::getpid()) + ".tmp";
      const auto result =
          test::run_python(shell_quote(script.string()) + " save " + shell_quote(tmp) + " 3");
      EXPECT_EQ(result.exit_code, 0) << result.output;
      fs::rename(tmp, file, error);
      EXPECT_FALSE(error) << error.message();
    }
    return file.string();
  }

  std::string dir_;
};

TEST_F(FidInception, StateDictKeysAreTorchvisions) {
  FidInceptionV3 network;
  const StateDict dict = module_state_dict(network);
  // 94 conv + batch-norm units (conv weight; bn weight, bias, running mean / var, count) + fc.
  EXPECT_EQ(dict.size(), 94u * 6 + 2);
  EXPECT_EQ(dict.front().first, "Conv2d_1a_3x3.conv.weight");
  EXPECT_EQ(dict.back().first, "fc.bias");
  bool found = false;
  for (const auto& [key, value] : dict)
    if (key == "Mixed_7c.branch3x3dbl_3b.conv.weight") {
      found = true;
      EXPECT_EQ(value.sizes(), (std::vector<int64_t>{384, 384, 3, 1}));
    }
  EXPECT_TRUE(found);
}

// Our network with the Python-saved weights against the Python definition on the same input.
void expect_forward_matches_python(const std::string& weights, const torch::Tensor& input,
                                   bool resize, const std::string& dir) {
  FidInceptionOptions options;
  options.resize_input = resize;
  auto network = load_fid_inception(weights, options);  // strict: every key and shape matches
  torch::NoGradGuard no_grad;
  const torch::Tensor ours = network->forward(input);
  ASSERT_EQ(ours.sizes(), (std::vector<int64_t>{input.size(0), 2048}));
  const std::string in_path = dir + "/input.pt", out_path = dir + "/output.pt";
  write_state_dict(in_path, {{"input", input}});
  const auto result = test::run_python(reference_script("fid_inception.py") + " forward " +
                                       shell_quote(weights) + " " + shell_quote(in_path) + " " +
                                       shell_quote(out_path) + (resize ? " 1" : " 0"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const torch::Tensor expected = read_state_dict(out_path).at(0).second;
  const double scale = expected.abs().max().item<double>();
  const double diff = (ours - expected).abs().max().item<double>();
  EXPECT_GT(scale, 0.1);  // the random weights keep the signal alive through the network
  EXPECT_LT(diff, 1e-4) << "max |ours - python| " << diff << ", output scale " << scale;
  std::printf("max |ours - python| = %.3g (outputs up to %.3g)\n", diff, scale);
}

TEST_F(FidInception, ForwardMatchesPythonWithoutResize) {
  if (!test::have_python_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch not available";
  torch::manual_seed(11);
  expect_forward_matches_python(weights(), torch::rand({2, 3, 75, 75}), false, dir_);
}

TEST_F(FidInception, ForwardMatchesPythonWithResizeTo299) {
  if (!test::have_python_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch not available";
  torch::manual_seed(12);
  expect_forward_matches_python(weights(), torch::rand({1, 3, 40, 52}), true, dir_);
}

TEST_F(FidInception, FeaturesOfImagesOfDifferentSizes) {
  if (!test::have_python_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch not available";
  FidInceptionOptions options;
  auto network = load_fid_inception(weights(), options);
  Image a = facades_photo(5), b = crop_image(facades_photo(6), 0, 0, 120, 90);
  const torch::Tensor features = fid_features(*network, {a, convert_channels(b, 1)}, 2);
  ASSERT_EQ(features.sizes(), (std::vector<int64_t>{2, 2048}));
  // Each row equals the image's own forward pass (gray replicated to RGB, /255).
  torch::NoGradGuard no_grad;
  const torch::Tensor gray = image_to_tensor(convert_channels(convert_channels(b, 1), 3));
  const torch::Tensor alone = network->forward(((gray + 1) / 2).unsqueeze(0));
  EXPECT_LT((features[1] - alone[0]).abs().max().item<double>(), 1e-4);
  EXPECT_THROW(load_fid_inception(dir_ + "/missing.pth"), Error);
}

// ---- folders ----------------------------------------------------------------------------------

TEST(EvalFolders, PairsByStemAndByTheReferencesNames) {
  const std::string dir = test::temp_dir();
  const Image photo = facades_photo(7);
  const Image small = crop_image(photo, 0, 0, 64, 48);
  // By stem, any extension.
  test::put_image(dir, "real/a.png", small);
  test::put_image(dir, "real/b.png", small);
  test::put_image(dir, "fake/a.png", noised(small, 10, 1));
  test::put_image(dir, "fake/b.tif.png", small);  // stem "b.tif": no partner
  EXPECT_NE(error_of([&] { pair_eval_images(dir + "/real", dir + "/fake"); }).find("b.png"),
            std::string::npos);
  fs::remove(dir + "/fake/b.tif.png");
  test::put_image(dir, "fake/b.png", small);
  auto pairs = pair_eval_images(dir + "/real", dir + "/fake");
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[0].name, "a");
  EXPECT_EQ(pairs[1].fake_path, dir + "/fake/b.png");
  // The reference's result folder: both kinds in one folder, real_A ignored.
  for (const std::string name : {"1", "2"}) {
    test::put_image(dir, "results/" + name + "_real_A.png", small);
    test::put_image(dir, "results/" + name + "_real_B.png", small);
    test::put_image(dir, "results/" + name + "_fake_B.png", noised(small, 5, 2));
  }
  pairs = pair_eval_images(dir + "/results", "");
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[0].name, "1");
  EXPECT_EQ(pairs[0].real_path, dir + "/results/1_real_B.png");
  EXPECT_EQ(pairs[0].fake_path, dir + "/results/1_fake_B.png");
  EXPECT_EQ(pair_eval_images(dir + "/results", dir + "/results/").size(), 2u);
  // No common stem.
  EXPECT_NE(
      error_of([&] { pair_eval_images(dir + "/real", dir + "/results"); }).find("no image pairs"),
      std::string::npos);
}

TEST(EvalFolders, ClearErrors) {
  const std::string dir = test::temp_dir();
  const Image small = crop_image(facades_photo(8), 0, 0, 32, 32);
  test::put_image(dir, "real/a.png", small);
  test::put_image(dir, "fake/a.png", small);
  std::string message = error_of([&] { pair_eval_images(dir + "/nope", dir + "/fake"); });
  EXPECT_NE(message.find(dir + "/nope"), std::string::npos) << message;
  // One folder without the reference's names.
  message = error_of([&] { pair_eval_images(dir + "/real", ""); });
  EXPECT_NE(message.find("_real_B"), std::string::npos) << message;
  // Empty folder.
  fs::create_directories(dir + "/empty");
  message = error_of([&] { pair_eval_images(dir + "/real", dir + "/empty"); });
  EXPECT_NE(message.find("no fake images"), std::string::npos) << message;
  // The same stem twice.
  test::put_image(dir, "fake/a.jpeg", small);
  message = error_of([&] { pair_eval_images(dir + "/real", dir + "/fake"); });
  EXPECT_NE(message.find("occurs twice"), std::string::npos) << message;
  fs::remove(dir + "/fake/a.jpeg");
  // Sizes differ: both files named.
  test::put_image(dir, "fake/a.png", crop_image(small, 0, 0, 32, 30));
  EvalOptions options;
  options.real_dir = dir + "/real";
  options.fake_dir = dir + "/fake";
  message = error_of([&] { evaluate_folders(options); });
  EXPECT_NE(message.find(dir + "/fake/a.png"), std::string::npos) << message;
  EXPECT_NE(message.find(dir + "/real/a.png"), std::string::npos) << message;
  EXPECT_NE(message.find("32x30"), std::string::npos) << message;
  options.fid_weights = dir + "/none.pth";
  message = error_of([&] { evaluate_folders(options); });
  EXPECT_NE(message.find("none.pth"), std::string::npos) << message;
}

TEST(EvalFolders, MetricsAndMeansWithoutFidWeights) {
  const std::string dir = test::temp_dir();
  std::vector<ImageMetrics> expected;
  for (int i = 1; i <= 3; ++i) {
    const Image real = crop_image(facades_photo(i), 0, 0, 96, 80);
    const Image fake = noised(real, 10 * i, uint64_t(i));
    test::put_image(dir, "real/" + std::to_string(i) + ".png", real);
    test::put_image(dir, "fake/" + std::to_string(i) + ".png", fake);
    expected.push_back(compare_images(real, fake, "x"));
  }
  EvalOptions options;
  options.real_dir = dir + "/real";
  options.fake_dir = dir + "/fake";
  const EvalReport report = evaluate_folders(options);
  ASSERT_EQ(report.images.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_DOUBLE_EQ(report.images[i].metrics.psnr, expected[i].psnr);
    EXPECT_DOUBLE_EQ(report.images[i].metrics.ssim, expected[i].ssim);
  }
  EXPECT_DOUBLE_EQ(report.mean.l1, mean_metrics(expected).l1);
  EXPECT_GT(report.images[0].metrics.psnr, report.images[2].metrics.psnr);
  EXPECT_FALSE(report.fid_available);
  EXPECT_NE(report.fid_unavailable.find("`fid_weights`"), std::string::npos);
  const Json json = Json::parse(eval_report_json(report));
  EXPECT_TRUE(json["fid"].is_null());
  EXPECT_EQ(json["images"].size(), 3u);
  EXPECT_EQ(json["images"][1]["name"], "2");
  const std::string csv = metrics_csv({"1"}, {report.images[0].metrics});
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "name,l1,psnr,ssim,sharpness,checkerboard,colour_error");
  EXPECT_EQ(metrics_csv({"same"}, {ImageMetrics{0, INFINITY, 1, NAN, 0.25, 3}}),
            "name,l1,psnr,ssim,sharpness,checkerboard,colour_error\n"
            "same,0.000000,inf,1.000000,nan,0.250000,3.0000\n");
  for (const char* key : {"sharpness", "checkerboard", "colour_error"})
    EXPECT_TRUE(json["mean"].contains(key)) << key;
}

TEST_F(FidInception, EvalFoldersComputesFidAndKidWithWeights) {
  if (!test::have_python_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch not available";
  const std::string dir = dir_;
  for (int i = 1; i <= 3; ++i) {
    const Image real = crop_image(facades_photo(i), 0, 0, 80, 80);
    test::put_image(dir, "real/" + std::to_string(i) + ".png", real);
    test::put_image(dir, "fake/" + std::to_string(i) + ".png", blurred(real));
  }
  EvalOptions options;
  options.real_dir = dir + "/real";
  options.fake_dir = dir + "/fake";
  options.fid_weights = weights();
  options.batch_size = 3;
  const EvalReport report = evaluate_folders(options);
  ASSERT_TRUE(report.fid_available) << report.fid_unavailable;
  EXPECT_GT(report.fid, 0);
  EXPECT_EQ(report.kid.subset_size, 3);
  EXPECT_TRUE(std::isfinite(report.kid.mean));
  // A copy of the real set: FID 0 up to round-off, far below the blurred set's.
  fs::copy(dir + "/real", dir + "/copy");
  options.fake_dir = dir + "/copy";
  const EvalReport same = evaluate_folders(options);
  EXPECT_LT(std::abs(same.fid), 1e-3 * report.fid) << same.fid << " vs " << report.fid;
  EXPECT_LT(same.kid.mean, report.kid.mean);
}

}  // namespace
}  // namespace pix2pix
