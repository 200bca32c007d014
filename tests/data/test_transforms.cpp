// Tests for transforms: option names, output shapes of every preprocess mode, crop / flip
// placement, seeded params, and resizing against Pillow (the reference's image library) on a
// facades image: nearest exactly, bicubic and bilinear within the measured bounds, and the whole
// reference pipeline (Resize, crop, flip, ToTensor, Normalize). Pillow runs in /usr/bin/python3;
// those tests are skipped when it lacks PIL or numpy.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "pix2pix/data/transforms.h"
#include "pix2pix/error.h"
#include "pix2pix/io/image_io.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;

using test::have_python_pil;

#define REQUIRE_PIL()                                                              \
  do {                                                                             \
    if (!have_python_pil()) GTEST_SKIP() << "/usr/bin/python3 lacks PIL or numpy"; \
  } while (0)

std::string facades_image() { return test::shared_dir() + "/data/facades/train/1.jpg"; }

#define REQUIRE_FACADES()                                              \
  do {                                                                 \
    if (!test::required(fs::exists(facades_image()), facades_image())) \
      GTEST_SKIP() << "needs " << facades_image();                     \
  } while (0)

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// Runs `body` under /usr/bin/python3 with numpy as np, PIL.Image as Image, `src` = the facades
// image's left half (A) as an RGB Pillow image, and `out(name, array)` writing raw bytes to
// <dir>/<name>.raw.
void run_pillow(const std::string& dir, const std::string& body) {
  const std::string script = dir + "/pillow_script.py";
  std::ofstream(script) << "import sys\nimport numpy as np\nfrom PIL import Image\n"
                           "full = Image.open(sys.argv[2]).convert('RGB')\n"
                           "src = full.crop((0, 0, full.size[0] // 2, full.size[1]))\n"
                           "def out(name, array):\n"
                           "    open(sys.argv[1] + '/' + name + '.raw', 'wb').write("
                           "np.ascontiguousarray(array).tobytes())\n"
                        << body;
  const auto result = test::run_python(test::shell_quote(script) + " " + test::shell_quote(dir) +
                                       " " + test::shell_quote(facades_image()));
  ASSERT_EQ(result.exit_code, 0) << result.output;
}

// The facades image's left half, as the C++ side decodes it (equal to Pillow's decode).
Image facades_a() {
  const Image full = read_image(facades_image());
  return crop_image(full, 0, 0, full.width / 2, full.height);
}

struct Difference {
  int max = 0;
  double mean = 0;
  double fraction = 0;  // of samples that differ
};

Difference compare(const Image& ours, const std::vector<uint8_t>& pillow) {
  EXPECT_EQ(ours.data.size(), pillow.size());
  Difference d;
  size_t differing = 0;
  const size_t n = std::min(ours.data.size(), pillow.size());
  for (size_t i = 0; i < n; ++i) {
    const int delta = std::abs(int(ours.data[i]) - int(pillow[i]));
    d.max = std::max(d.max, delta);
    d.mean += delta;
    differing += delta != 0;
  }
  d.mean /= static_cast<double>(std::max<size_t>(n, 1));
  d.fraction = static_cast<double>(differing) / static_cast<double>(std::max<size_t>(n, 1));
  return d;
}

Image random_image(int width, int height, int channels, uint32_t seed) {
  Image image(width, height, channels);
  std::mt19937 random(seed);
  for (auto& sample : image.data) sample = static_cast<uint8_t>(random() & 0xff);
  return image;
}

// Pixel (x, y) holds R = x, G = y, B = 7 (sizes below 256).
Image coordinate_image(int width, int height) {
  Image image(width, height, 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      image.at<uint8_t>(y, x, 0) = static_cast<uint8_t>(x);
      image.at<uint8_t>(y, x, 1) = static_cast<uint8_t>(y);
      image.at<uint8_t>(y, x, 2) = 7;
    }
  }
  return image;
}

std::vector<int64_t> shape(const at::Tensor& tensor) { return tensor.sizes().vec(); }

TransformOptions options_for(Preprocess preprocess, int load_size = 286, int crop_height = 256,
                             int crop_width = 256) {
  TransformOptions options;
  options.preprocess = preprocess;
  options.load_size = load_size;
  options.crop_height = crop_height;
  options.crop_width = crop_width;
  return options;
}

// ---- names and options -------------------------------------------------------------------------

TEST(TransformNames, PreprocessFilterAndCropSizeRoundTrip) {
  for (const char* name :
       {"resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none"}) {
    EXPECT_EQ(to_string(parse_preprocess(name)), name);
  }
  for (const char* name : {"bicubic", "bilinear", "nearest"})
    EXPECT_EQ(to_string(parse_resize_filter(name)), name);
  EXPECT_EQ(parse_crop_size("256").height, 256);
  EXPECT_EQ(parse_crop_size("256").width, 256);
  const CropSize rect = parse_crop_size("256x512");
  EXPECT_EQ(rect.height, 256);
  EXPECT_EQ(rect.width, 512);
  EXPECT_EQ(to_string(rect), "256x512");
  EXPECT_EQ(to_string(CropSize{128, 128}), "128");
}

TEST(TransformNames, BadNamesNameTheFlag) {
  try {
    parse_preprocess("resize");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("preprocess: "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'resize'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_resize_filter("lanczos"), Error);
  for (const char* bad : {"", "0", "x", "256x", "x256", "-3", "256x0", "12ab", "256x256x3"})
    EXPECT_THROW(parse_crop_size(bad), Error) << bad;
}

TEST(TransformOptionsCheck, LoadSizeSmallerThanCropIsRejected) {
  try {
    validate(options_for(Preprocess::kResizeAndCrop, 200, 256, 256));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("load_size: "), std::string::npos) << e.what();
  }
  EXPECT_THROW(validate(options_for(Preprocess::kScaleWidthAndCrop, 200, 128, 256)), Error);
  EXPECT_THROW(validate(options_for(Preprocess::kCrop, 286, 0, 256)), Error);
  EXPECT_NO_THROW(validate(options_for(Preprocess::kCrop, 0, 256, 256)));  // load_size unused
}

// ---- shapes ------------------------------------------------------------------------------------

TEST(TransformShapes, EveryPreprocessMode) {
  const Image wide = random_image(300, 200, 3, 1);  // width x height
  const Image tall = random_image(300, 400, 3, 2);
  const TransformParams params;  // crop at (0, 0), no flip
  struct Case {
    Preprocess preprocess;
    const Image* image;
    std::vector<int64_t> expected;  // C x H x W
  };
  const std::vector<Case> cases = {
      {Preprocess::kResizeAndCrop, &wide, {3, 256, 256}},
      {Preprocess::kCrop, &tall, {3, 256, 256}},
      // The reference's __scale_width: height int(max(286 * h / w, 256)).
      {Preprocess::kScaleWidth, &wide, {3, 256, 286}},  // 286 * 200 / 300 = 190.7 -> 256
      {Preprocess::kScaleWidth, &tall, {3, 381, 286}},  // 286 * 400 / 300 = 381.3
      {Preprocess::kScaleWidthAndCrop, &tall, {3, 256, 256}},
      {Preprocess::kNone, &wide, {3, 200, 300}},
  };
  for (const auto& c : cases) {
    const TransformOptions options = options_for(c.preprocess);
    const at::Tensor out = apply_transform(*c.image, options, params);
    EXPECT_EQ(shape(out), c.expected) << to_string(c.preprocess);
    const ImageSize size = transformed_size(options, c.image->width, c.image->height);
    EXPECT_EQ(size.height, c.expected[1]);
    EXPECT_EQ(size.width, c.expected[2]);
    EXPECT_EQ(out.scalar_type(), at::kFloat);
    EXPECT_GE(out.min().item<float>(), -1.0f);
    EXPECT_LE(out.max().item<float>(), 1.0f);
  }
  // none keeps sizes the reference would round to a multiple of 4.
  EXPECT_EQ(
      shape(apply_transform(random_image(301, 97, 3, 3), options_for(Preprocess::kNone), params)),
      (std::vector<int64_t>{3, 97, 301}));
}

TEST(TransformShapes, NonSquareCropAndOddSizes) {
  const Image image = random_image(250, 170, 3, 4);
  TransformOptions options = options_for(Preprocess::kResizeAndCrop, 286, 128, 192);
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const TransformParams params = draw_transform_params(options, image.width, image.height, seed);
    EXPECT_LE(params.crop_x, 286 - 192);
    EXPECT_LE(params.crop_y, 286 - 128);
    EXPECT_EQ(shape(apply_transform(image, options, params)), (std::vector<int64_t>{3, 128, 192}));
  }
  options = options_for(Preprocess::kCrop, 0, 128, 192);
  const TransformParams params = draw_transform_params(options, 250, 170, 9);
  EXPECT_EQ(shape(apply_transform(image, options, params)), (std::vector<int64_t>{3, 128, 192}));
  options = options_for(Preprocess::kResizeAndCrop, 300, 300, 300);  // not a power of two
  EXPECT_EQ(shape(apply_transform(image, options, {})), (std::vector<int64_t>{3, 300, 300}));
  Image gray = random_image(250, 170, 1, 5);
  EXPECT_EQ(
      shape(apply_transform(gray, options_for(Preprocess::kResizeAndCrop, 200, 100, 150), {})),
      (std::vector<int64_t>{1, 100, 150}));
}

TEST(TransformShapes, ImageSmallerThanCropIsAnErrorNamingTheSize) {
  const Image image = random_image(100, 80, 3, 6);
  try {
    apply_transform(image, options_for(Preprocess::kCrop), {}, "data/small.png");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind("data/small.png: ", 0), 0u) << message;
    EXPECT_NE(message.find("100x80"), std::string::npos) << message;
    EXPECT_NE(message.find("256x256"), std::string::npos) << message;
  }
  // scale_width_and_crop upscales the height to the crop, so a short image works there.
  EXPECT_NO_THROW(apply_transform(image, options_for(Preprocess::kScaleWidthAndCrop), {}));
  // A crop position outside the image is an error, not a read out of bounds.
  TransformParams params;
  params.crop_x = 31;
  EXPECT_THROW(
      apply_transform(random_image(286, 286, 3, 7), options_for(Preprocess::kCrop, 0), params),
      Error);
}

// ---- crop, flip, params ------------------------------------------------------------------------

TEST(TransformCropFlip, CropPositionAndFlipLandWhereParamsSay) {
  const Image image = coordinate_image(100, 90);
  TransformOptions options = options_for(Preprocess::kCrop, 0, 40, 50);
  TransformParams params;
  params.crop_x = 5;
  params.crop_y = 7;
  for (bool flip : {false, true}) {
    params.flip = flip;
    const Image out = transform_image(image, options, params);
    ASSERT_EQ(out.width, 50);
    ASSERT_EQ(out.height, 40);
    for (int y = 0; y < out.height; ++y) {
      for (int x = 0; x < out.width; ++x) {
        const int source_x = 5 + (flip ? out.width - 1 - x : x);
        ASSERT_EQ(out.at<uint8_t>(y, x, 0), source_x) << x << "," << y;
        ASSERT_EQ(out.at<uint8_t>(y, x, 1), 7 + y) << x << "," << y;
      }
    }
  }
}

TEST(TransformCropFlip, FlipMirrorsAnAsymmetricImage) {
  // Left half dark, right half bright.
  Image image(64, 32, 3);
  for (int y = 0; y < 32; ++y)
    for (int x = 32; x < 64; ++x)
      for (int c = 0; c < 3; ++c) image.at<uint8_t>(y, x, c) = 255;
  TransformOptions options = options_for(Preprocess::kNone);
  TransformParams params;
  const at::Tensor kept = apply_transform(image, options, params);
  params.flip = true;
  const at::Tensor flipped = apply_transform(image, options, params);
  EXPECT_EQ(kept[0][0][0].item<float>(), -1.0f);
  EXPECT_EQ(kept[0][0][63].item<float>(), 1.0f);
  EXPECT_EQ(flipped[0][0][0].item<float>(), 1.0f);
  EXPECT_EQ(flipped[0][0][63].item<float>(), -1.0f);
  EXPECT_TRUE(flipped.equal(kept.flip({2})));
  // Flipping twice gives the image back.
  EXPECT_EQ(flip_image(flip_image(image)), image);
}

TEST(TransformParamsDraw, SeededDeterministicAndCoveringTheRange) {
  const TransformOptions options;  // resize_and_crop 286 -> 256: crop_x, crop_y in [0, 30]
  std::set<int> xs, ys;
  int flips = 0;
  std::set<std::tuple<int, int, bool>> distinct;
  for (uint64_t seed = 0; seed < 2000; ++seed) {
    const TransformParams a = draw_transform_params(options, 256, 256, seed);
    const TransformParams b = draw_transform_params(options, 256, 256, seed);
    ASSERT_EQ(a.crop_x, b.crop_x);
    ASSERT_EQ(a.crop_y, b.crop_y);
    ASSERT_EQ(a.flip, b.flip);
    ASSERT_GE(a.crop_x, 0);
    ASSERT_LE(a.crop_x, 30);
    ASSERT_GE(a.crop_y, 0);
    ASSERT_LE(a.crop_y, 30);
    xs.insert(a.crop_x);
    ys.insert(a.crop_y);
    flips += a.flip;
    distinct.emplace(a.crop_x, a.crop_y, a.flip);
  }
  EXPECT_EQ(xs.size(), 31u);  // both ends reachable, as random.randint(0, 30)
  EXPECT_EQ(ys.size(), 31u);
  EXPECT_GT(flips, 850);
  EXPECT_LT(flips, 1150);
  EXPECT_GT(distinct.size(), 1000u);

  TransformOptions no_flip;
  no_flip.flip = false;
  for (uint64_t seed = 0; seed < 100; ++seed)
    EXPECT_FALSE(draw_transform_params(no_flip, 256, 256, seed).flip);
  // No crop: nothing to draw.
  const TransformParams none =
      draw_transform_params(options_for(Preprocess::kNone), 300, 200, 12345);
  EXPECT_EQ(none.crop_x, 0);
  EXPECT_EQ(none.crop_y, 0);
}

TEST(TransformParamsDraw, SameParamsSameOutputDifferentSeedsDifferentOutputs) {
  const Image image = random_image(256, 256, 3, 8);
  const TransformOptions options;
  const at::Tensor first =
      apply_transform(image, options, draw_transform_params(options, 256, 256, 1));
  const at::Tensor again =
      apply_transform(image, options, draw_transform_params(options, 256, 256, 1));
  EXPECT_TRUE(first.equal(again));
  int differing = 0;
  for (uint64_t seed = 2; seed < 12; ++seed)
    differing += !first.equal(
        apply_transform(image, options, draw_transform_params(options, 256, 256, seed)));
  EXPECT_GE(differing, 9);
  EXPECT_NE(mix_seed(0, 1, 2), mix_seed(0, 2, 1));
  EXPECT_NE(mix_seed(0, 1, 2), mix_seed(1, 1, 2));
}

// The fused 8-bit path of apply_transform equals transform_image + image_to_tensor bitwise.
TEST(TransformTensor, FastPathEqualsImageToTensorBitwise) {
  const Image image = random_image(200, 150, 3, 9);
  for (Preprocess preprocess :
       {Preprocess::kResizeAndCrop, Preprocess::kCrop, Preprocess::kScaleWidth,
        Preprocess::kScaleWidthAndCrop, Preprocess::kNone}) {
    for (ResizeFilter filter :
         {ResizeFilter::kBicubic, ResizeFilter::kBilinear, ResizeFilter::kNearest}) {
      TransformOptions options = options_for(preprocess, 180, 96, 128);
      options.filter = filter;
      for (uint64_t seed = 0; seed < 4; ++seed) {
        const TransformParams params = draw_transform_params(options, 200, 150, seed);
        const at::Tensor fast = apply_transform(image, options, params);
        const at::Tensor slow = image_to_tensor(transform_image(image, options, params));
        ASSERT_TRUE(fast.equal(slow)) << to_string(preprocess) << " " << to_string(filter);
      }
    }
  }
}

// ---- resizing ----------------------------------------------------------------------------------

TEST(TransformResize, ConstantImagesStayConstantIn8And16Bits) {
  for (SampleType type : {SampleType::kUint8, SampleType::kUint16, SampleType::kFloat32}) {
    Image image(40, 30, 2, type);
    for (int y = 0; y < 30; ++y) {
      for (int x = 0; x < 40; ++x) {
        if (type == SampleType::kUint8) image.at<uint8_t>(y, x, 0) = 200;
        if (type == SampleType::kUint16) image.at<uint16_t>(y, x, 0) = 51234;
        if (type == SampleType::kFloat32) image.at<float>(y, x, 0) = 0.25f;
      }
    }
    for (ResizeFilter filter :
         {ResizeFilter::kBicubic, ResizeFilter::kBilinear, ResizeFilter::kNearest}) {
      for (auto [w, h] : {std::pair{57, 23}, std::pair{13, 71}, std::pair{40, 60}}) {
        const Image out = resize_image(image, w, h, filter);
        ASSERT_EQ(out.width, w);
        ASSERT_EQ(out.height, h);
        ASSERT_EQ(out.type, type);
        for (int y = 0; y < h; ++y) {
          for (int x = 0; x < w; ++x) {
            if (type == SampleType::kUint8) {
              ASSERT_EQ(out.at<uint8_t>(y, x, 0), 200);
              ASSERT_EQ(out.at<uint8_t>(y, x, 1), 0);
            } else if (type == SampleType::kUint16) {
              ASSERT_EQ(out.at<uint16_t>(y, x, 0), 51234);
            } else {
              ASSERT_NEAR(out.at<float>(y, x, 0), 0.25f, 1e-6f);
            }
          }
        }
      }
    }
  }
  // 16-bit images go through the generic path to the same [-1, 1] values as image_to_tensor.
  Image wide(64, 64, 3, SampleType::kUint16);
  for (size_t i = 0; i < wide.sample_count(); ++i)
    wide.samples<uint16_t>()[i] = static_cast<uint16_t>(i * 37);
  const TransformOptions options = options_for(Preprocess::kResizeAndCrop, 80, 64, 64);
  const at::Tensor out = apply_transform(wide, options, {});
  EXPECT_EQ(shape(out), (std::vector<int64_t>{3, 64, 64}));
}

TEST(TransformPillow, NearestEqualsPillowExactly) {
  REQUIRE_PIL();
  REQUIRE_FACADES();
  const std::string dir = test::temp_dir();
  run_pillow(dir, R"(
for (w, h) in [(286, 286), (300, 143), (97, 201), (128, 128), (512, 512), (255, 257)]:
    out('nearest_%dx%d' % (w, h), np.asarray(src.resize((w, h), Image.NEAREST)))
)");
  const Image a = facades_a();
  for (auto [w, h] : {std::pair{286, 286}, std::pair{300, 143}, std::pair{97, 201},
                      std::pair{128, 128}, std::pair{512, 512}, std::pair{255, 257}}) {
    const auto pillow =
        read_bytes(dir + "/nearest_" + std::to_string(w) + "x" + std::to_string(h) + ".raw");
    const Difference d = compare(resize_image(a, w, h, ResizeFilter::kNearest), pillow);
    EXPECT_EQ(d.max, 0) << w << "x" << h << ": " << d.fraction * 100 << "% of samples differ";
  }
}

// Bounds from the measurement over all 400 facades train images (800 halves -> 286x286):
// bicubic max 2 levels, mean 0.00006, 0.006% of samples differ; bilinear max 2, mean 0.003, 0.28%.
TEST(TransformPillow, BicubicAndBilinearWithinMeasuredBounds) {
  REQUIRE_PIL();
  REQUIRE_FACADES();
  const std::string dir = test::temp_dir();
  run_pillow(dir, R"(
for (w, h) in [(286, 286), (128, 128), (300, 143)]:
    out('bicubic_%dx%d' % (w, h), np.asarray(src.resize((w, h), Image.BICUBIC)))
    out('bilinear_%dx%d' % (w, h), np.asarray(src.resize((w, h), Image.BILINEAR)))
)");
  const Image a = facades_a();
  for (auto [w, h] : {std::pair{286, 286}, std::pair{128, 128}, std::pair{300, 143}}) {
    const std::string size = std::to_string(w) + "x" + std::to_string(h);
    const Difference bicubic = compare(resize_image(a, w, h, ResizeFilter::kBicubic),
                                       read_bytes(dir + "/bicubic_" + size + ".raw"));
    EXPECT_LE(bicubic.max, 2) << size;
    EXPECT_LT(bicubic.mean, 0.002) << size;
    EXPECT_LT(bicubic.fraction, 0.002) << size;
    const Difference bilinear = compare(resize_image(a, w, h, ResizeFilter::kBilinear),
                                        read_bytes(dir + "/bilinear_" + size + ".raw"));
    EXPECT_LE(bilinear.max, 2) << size;
    EXPECT_LT(bilinear.mean, 0.02) << size;
    EXPECT_LT(bilinear.fraction, 0.02) << size;
  }
}

// The reference's whole transform: Resize((286, 286), BICUBIC), crop at (13, 21), flip,
// ToTensor, Normalize(0.5, 0.5), written with numpy in float32 as torchvision computes it.
TEST(TransformPillow, WholeTransformMatchesTheReferencePipeline) {
  REQUIRE_PIL();
  REQUIRE_FACADES();
  const std::string dir = test::temp_dir();
  run_pillow(dir, R"(
img = src.resize((286, 286), Image.BICUBIC).crop((13, 21, 13 + 256, 21 + 256))
img = img.transpose(Image.FLIP_LEFT_RIGHT)
x = np.asarray(img).astype(np.float32).transpose(2, 0, 1) / np.float32(255)
out('reference', ((x - np.float32(0.5)) / np.float32(0.5)).astype(np.float32))
)");
  TransformParams params;
  params.crop_x = 13;
  params.crop_y = 21;
  params.flip = true;
  const at::Tensor ours = apply_transform(facades_a(), TransformOptions{}, params);
  const auto bytes = read_bytes(dir + "/reference.raw");
  ASSERT_EQ(bytes.size(), size_t(3 * 256 * 256 * 4));
  const at::Tensor reference =
      at::from_blob(const_cast<uint8_t*>(bytes.data()), {3, 256, 256}, at::kFloat).clone();
  const at::Tensor difference = (ours - reference).abs();
  EXPECT_LE(difference.max().item<float>(), 2.0f * 2.0f / 255.0f + 1e-6f);  // <= 2 levels
  // Where the resize agrees (nearly everywhere) the values are bitwise the reference's.
  EXPECT_GT(ours.eq(reference).to(at::kFloat).mean().item<float>(), 0.998f);
}

}  // namespace
}  // namespace pix2pix
