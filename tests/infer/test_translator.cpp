// Translation: outputs equal the PyTorch reference's for the same weights (read from Python's
// files, zip and legacy), the train/eval switch, size checks, and the translate command's files.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "pix2pix/data/transforms.h"
#include "pix2pix/error.h"
#include "pix2pix/infer/translator.h"
#include "pix2pix/io/image_io.h"
#include "pix2pix/io/pytorch_import.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;
using test::run_cli;
using test::run_python;

std::string ref_weights() {
  return test::source_dir() + "/tests/reference/ref_weights.py " + test::shared_dir();
}
std::string reference_step() { return test::shared_dir() + "/bench/reference_step.py"; }

// A 256x256 label map from the facades set (the B half of an aligned pair), as PNG.
std::string facade_label_png(const std::string& dir) {
  const std::string path = dir + "/label.png";
  auto made = run_python(
      "-c \"from PIL import Image; Image.open('" + test::shared_dir() +
      "/data/facades/train/1.jpg').convert('RGB').crop((256, 0, 512, 256)).save('" + path + "')\"");
  EXPECT_EQ(made.exit_code, 0) << made.output;
  return path;
}

struct PixelDiff {
  int max_diff = 0;
  int64_t differing = 0;  // samples that differ at all
  int64_t total = 0;
};

PixelDiff compare(const Image& a, const Image& b) {
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.height, b.height);
  EXPECT_EQ(a.channels, b.channels);
  PixelDiff diff;
  if (a.data.size() != b.data.size()) return {255, 1, 1};
  for (size_t i = 0; i < a.data.size(); ++i) {
    const int d = std::abs(int(a.data[i]) - int(b.data[i]));
    diff.max_diff = std::max(diff.max_diff, d);
    diff.differing += d != 0;
  }
  diff.total = static_cast<int64_t>(a.data.size());
  return diff;
}

class TranslatorReference : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::have_python_torch()) GTEST_SKIP() << "needs /usr/bin/python3 with torch and PIL";
  }
};

// Weights saved by Python (zip and legacy format) -> our translate --eval gives the reference's
// 8-bit image within one level.
TEST_F(TranslatorReference, PythonWeightsTranslateLikeReference) {
  const std::string dir = test::temp_dir();
  const std::string input = facade_label_png(dir);
  for (const std::string format : {"zip", "legacy"}) {
    SCOPED_TRACE(format);
    const std::string weights = dir + "/G_" + format + ".pth";
    auto saved = run_python(ref_weights() + " save " + weights + " 5 " +
                            (format == "legacy" ? "legacy" : ""));
    ASSERT_EQ(saved.exit_code, 0) << saved.output;
    const std::string reference_png = dir + "/reference_" + format + ".png";
    auto reference = run_python(reference_step() + " --load " + weights + " --image " + input +
                                " --output " + reference_png);
    ASSERT_EQ(reference.exit_code, 0) << reference.output;
    const std::string out = dir + "/out_" + format;
    auto ours = run_cli("translate --weights " + weights + " --eval --out " + out + " " + input);
    ASSERT_EQ(ours.exit_code, 0) << ours.output;
    const PixelDiff diff = compare(read_image(out + "/label.png"), read_image(reference_png));
    std::cout << "[ parity ] " << format << ": " << diff.differing << " of " << diff.total
              << " samples differ, max " << diff.max_diff << " level\n";
    EXPECT_LE(diff.max_diff, 1);
    // The output is a real image, not a flat one.
    const Image result = read_image(out + "/label.png");
    int lo = 255, hi = 0;
    for (uint8_t v : result.data) lo = std::min<int>(lo, v), hi = std::max<int>(hi, v);
    EXPECT_GT(hi - lo, 100);
  }
}

// The float outputs agree too: our generator and the reference's on the same tensor.
TEST_F(TranslatorReference, FloatOutputsMatchReference) {
  const std::string dir = test::temp_dir();
  const std::string weights = dir + "/G.pth";
  ASSERT_EQ(run_python(ref_weights() + " save " + weights + " 11").exit_code, 0);
  torch::manual_seed(0);
  at::Tensor input = torch::rand({1, 3, 256, 256}) * 2 - 1;
  write_state_dict(dir + "/in.pt", {{"input", input}});
  auto forward =
      run_python(ref_weights() + " forward " + weights + " " + dir + "/in.pt " + dir + "/out.pt");
  ASSERT_EQ(forward.exit_code, 0) << forward.output;
  at::Tensor expected = read_state_dict(dir + "/out.pt").at(0).second;

  GeneratorOptions options;
  auto generator = make_generator(options);
  load_state_dict(*generator, read_state_dict(weights), weights);
  generator->eval();
  torch::NoGradGuard no_grad;
  at::Tensor output = generator->forward(input);
  const double max_diff = (output - expected).abs().max().item<double>();
  std::cout << "[ parity ] float max |ours - reference| = " << max_diff << "\n";
  EXPECT_LT(max_diff, 1e-5);
}

// Weights written by `pix2pix model --save-G` give the same translation in the reference.
TEST_F(TranslatorReference, OurWeightsTranslateLikeReference) {
  const std::string dir = test::temp_dir();
  const std::string input = facade_label_png(dir);
  const std::string weights = dir + "/ours.pth";
  ASSERT_EQ(run_cli("model --seed 7 --save-G " + weights).exit_code, 0);
  auto reference = run_python(reference_step() + " --load " + weights + " --image " + input +
                              " --output " + dir + "/reference.png");
  ASSERT_EQ(reference.exit_code, 0) << reference.output;
  auto ours = run_cli("translate --weights " + weights + " --out " + dir + "/out " + input);
  ASSERT_EQ(ours.exit_code, 0) << ours.output;
  const PixelDiff diff =
      compare(read_image(dir + "/out/label.png"), read_image(dir + "/reference.png"));
  EXPECT_LE(diff.max_diff, 1);
}

TEST(Translator, TrainModeUsesBatchStatistics) {
  torch::manual_seed(1);
  GeneratorOptions options;
  options.net = "unet_128";
  options.ngf = 8;
  options.dropout = false;
  auto generator = make_generator(options);
  Image input(128, 128, 3);
  for (size_t i = 0; i < input.data.size(); ++i) input.data[i] = static_cast<uint8_t>(i * 7 % 251);
  const Image eval_out = Translator(generator).translate(input, "x");
  TranslateOptions train;
  train.train_mode = true;
  const Image train_out = Translator(generator, train).translate(input, "x");
  EXPECT_EQ(train_out.width, 128);
  EXPECT_EQ(train_out.channels, 3);
  EXPECT_NE(eval_out, train_out);  // batch statistics differ from the running ones
  // Train mode left the running statistics alone: eval gives the same image again.
  EXPECT_EQ(eval_out, Translator(generator).translate(input, "x"));
}

TEST(Translator, RejectsSizesTheNetworkCannotTake) {
  GeneratorOptions options;
  options.net = "unet_128";
  options.ngf = 8;
  TranslateOptions strict;
  strict.pad = false;  // the default pads odd sizes (test_tiling.cpp)
  Translator translator(make_generator(options), strict);
  Image input(192, 128, 3);
  try {
    translator.translate(input, "photos/wide.png");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("photos/wide.png"), std::string::npos) << message;
    EXPECT_NE(message.find("multiples of 128"), std::string::npos) << message;
  }
  EXPECT_THROW(translator.translate(Image(128, 128, 1), "gray.png"), Error);
}

TEST(TranslateCommand, WritesOneImagePerInputAndChecksFirst) {
  const std::string dir = test::temp_dir();
  const std::string weights = dir + "/G.pth";
  ASSERT_EQ(run_cli("model --netG unet_128 --ngf 8 --save-G " + weights).exit_code, 0);
  Image image(256, 128, 3);
  for (size_t i = 0; i < image.data.size(); ++i) image.data[i] = static_cast<uint8_t>(i % 256);
  write_png(dir + "/a.png", image);
  write_png(dir + "/b.png", image);
  write_png(dir + "/odd.png", Image(100, 128, 3));
  std::ofstream(dir + "/broken.png") << "not an image";
  auto ok = run_cli("translate --netG unet_128 --ngf 8 --weights " + weights + " --out " + dir +
                    "/out " + dir + "/a.png " + dir + "/b.png");
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("mode: eval"), std::string::npos);
  for (const std::string name : {"a", "b"}) {
    const Image out = read_image(dir + "/out/" + name + ".png");
    EXPECT_EQ(out.width, 256);
    EXPECT_EQ(out.height, 128);
  }
  // An unreadable file anywhere in the list: nothing is written, the message names the file.
  auto bad = run_cli("translate --netG unet_128 --ngf 8 --weights " + weights + " --out " + dir +
                     "/out2 " + dir + "/a.png " + dir + "/broken.png");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("broken.png"), std::string::npos) << bad.output;
  EXPECT_FALSE(fs::exists(dir + "/out2/a.png"));
  // A size that is not a multiple of 128 is padded and cropped back.
  auto odd = run_cli("translate --netG unet_128 --ngf 8 --weights " + weights + " --out " + dir +
                     "/out5 " + dir + "/odd.png");
  ASSERT_EQ(odd.exit_code, 0) << odd.output;
  EXPECT_EQ(read_image(dir + "/out5/odd.png").width, 100);
  // Aligned A|B inputs: the input half is translated, the output has its size.
  Image pair(512, 128, 3);
  write_png(dir + "/pair.png", pair);
  auto aligned = run_cli("translate --netG unet_128 --ngf 8 --aligned --direction BtoA --weights " +
                         weights + " --out " + dir + "/out4 " + dir + "/pair.png");
  ASSERT_EQ(aligned.exit_code, 0) << aligned.output;
  EXPECT_EQ(read_image(dir + "/out4/pair.png").width, 256);
  // Wrong architecture for the weights: strict loading names the problem.
  auto mismatch = run_cli("translate --netG unet_256 --weights " + weights + " --out " + dir +
                          "/out3 " + dir + "/a.png");
  EXPECT_EQ(mismatch.exit_code, 2) << mismatch.output;
  EXPECT_NE(mismatch.output.find(weights), std::string::npos) << mismatch.output;
}

TEST(Transforms, ImageTensorConversions) {
  Image image(2, 1, 3);
  image.data = {0, 128, 255, 10, 20, 30};
  at::Tensor t = image_to_tensor(image);
  EXPECT_EQ(t.sizes().vec(), (std::vector<int64_t>{3, 1, 2}));
  EXPECT_FLOAT_EQ(t[0][0][0].item<float>(), -1.0f);
  EXPECT_FLOAT_EQ(t[2][0][0].item<float>(), 1.0f);
  EXPECT_NEAR(t[1][0][0].item<float>(), 128 / 127.5 - 1, 1e-6);
  // The reference's float32 arithmetic ((x / 255 - 0.5) / 0.5 in, (y + 1) / 2 * 255 truncated
  // out) maps levels 1..63 to one level less and every other level to itself (checked with
  // Python's torch); ours is the same arithmetic.
  Image ramp(256, 1, 1);
  for (int v = 0; v < 256; ++v) ramp.data[v] = static_cast<uint8_t>(v);
  const Image back = tensor_to_image(image_to_tensor(ramp));
  for (int v = 0; v < 256; ++v) EXPECT_EQ(back.data[v], (v >= 1 && v <= 63) ? v - 1 : v) << v;
  // Truncation as the reference's tensor2im: 0.999 of a level is dropped.
  at::Tensor almost = torch::full({1, 1, 1}, (10.999f / 255.0f) * 2.0f - 1.0f);
  EXPECT_EQ(tensor_to_image(almost).data[0], 10);
}

}  // namespace
}  // namespace pix2pix
