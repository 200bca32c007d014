// Results of a run (`pix2pix test` in the library): options.json read back, the test-time
// transform, checkpoint names, and the results folder of a tiny run on the facades test split.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "pix2pix/error.h"
#include "pix2pix/eval/metrics.h"
#include "pix2pix/infer/translator.h"
#include "pix2pix/tools/results.h"
#include "pix2pix/train/trainer.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using Json = nlohmann::json;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(Results, ReadRunOptionsInvertsOptionsToJson) {
  const std::string dir = test::temp_dir();
  TrainOptions o;
  o.data = "/data/x";
  o.name = "old_name";
  o.direction = Direction::kBtoA;
  o.generator.net = "unet";
  o.generator.num_downs = 6;
  o.generator.ngf = 16;
  o.generator.norm = Norm::kInstance;
  o.generator.dropout = false;
  o.generator.upsampling = Upsampling::kResizeBilinear;
  o.generator.input_nc = 1;
  o.discriminator.n_layers = 2;
  o.transform.preprocess = Preprocess::kScaleWidthAndCrop;
  o.transform.load_size = 300;
  o.transform.crop_height = 128;
  o.transform.crop_width = 192;
  o.transform.filter = ResizeFilter::kNearest;
  o.objective.gan_mode = GanMode::kLsgan;
  o.seed = 42;
  o.accumulate = 3;
  fs::create_directories(dir + "/runs/moved");
  std::ofstream(dir + "/runs/moved/options.json") << options_to_json(o);
  const TrainOptions back = read_run_options(dir + "/runs/moved");
  EXPECT_EQ(back.name, "moved");  // where the run is now
  EXPECT_EQ(back.runs_dir, dir + "/runs");
  TrainOptions renamed = back;
  renamed.name = o.name;
  renamed.runs_dir = o.runs_dir;
  EXPECT_EQ(options_to_json(renamed), options_to_json(o));
  // Missing keys keep defaults; bad values name the file and key.
  std::ofstream(dir + "/runs/moved/options.json") << R"({"options": {"netG": "unet_128"}})";
  EXPECT_EQ(read_run_options(dir + "/runs/moved").generator.net, "unet_128");
  EXPECT_EQ(read_run_options(dir + "/runs/moved").transform.load_size, 286);
  std::ofstream(dir + "/runs/moved/options.json") << R"({"options": {"norm": "group"}})";
  std::string message = error_of([&] { read_run_options(dir + "/runs/moved"); });
  EXPECT_NE(message.find("options.json"), std::string::npos) << message;
  EXPECT_NE(message.find("\"norm\""), std::string::npos) << message;
  std::ofstream(dir + "/runs/moved/options.json") << "{";
  EXPECT_NE(error_of([&] { read_run_options(dir + "/runs/moved"); }).find("not valid JSON"),
            std::string::npos);
  message = error_of([&] { read_run_options(dir + "/runs/none"); });
  EXPECT_NE(message.find(dir + "/runs/none"), std::string::npos) << message;
}

TEST(Results, TestTransformResizesToTheCropWithoutFlipOrRandomCrop) {
  TransformOptions train;  // resize_and_crop 286 -> 256, flip
  const TransformOptions t = test_transform(train);
  EXPECT_EQ(t.load_size, 256);
  EXPECT_FALSE(t.flip);
  EXPECT_EQ(transformed_size(t, 256, 256).width, 256);
  const TransformParams p = test_transform_params(t, 256, 256);
  EXPECT_EQ(p.crop_x, 0);
  EXPECT_FALSE(p.flip);
  // Crop-only runs crop the centre at test time.
  TransformOptions crop = train;
  crop.preprocess = Preprocess::kCrop;
  const TransformParams centred = test_transform_params(test_transform(crop), 600, 400);
  EXPECT_EQ(centred.crop_x, (600 - 256) / 2);
  EXPECT_EQ(centred.crop_y, (400 - 256) / 2);
  TransformOptions scale = train;
  scale.preprocess = Preprocess::kScaleWidth;
  EXPECT_EQ(test_transform(scale).load_size, 256);
}

TEST(Results, CheckpointNames) {
  const std::string dir = test::temp_dir();
  fs::create_directories(dir + "/checkpoints");
  for (const std::string name : {"latest", "best", "5"})
    std::ofstream(dir + "/checkpoints/" + name + "_net_G.pth") << "x";
  EXPECT_EQ(generator_checkpoint(dir, "latest"), dir + "/checkpoints/latest_net_G.pth");
  EXPECT_EQ(generator_checkpoint(dir, "best"), dir + "/checkpoints/best_net_G.pth");
  EXPECT_EQ(generator_checkpoint(dir, "005"), dir + "/checkpoints/5_net_G.pth");
  std::string message = error_of([&] { generator_checkpoint(dir, "7"); });
  EXPECT_NE(message.find("7_net_G.pth"), std::string::npos) << message;
  EXPECT_NE(message.find("best, latest, 5"), std::string::npos) << message;
  message = error_of([&] { generator_checkpoint(dir, "last"); });
  EXPECT_EQ(message.rfind("epoch: ", 0), 0u) << message;
  EXPECT_EQ(error_of([&] { generator_checkpoint(dir, "0"); }).rfind("epoch: ", 0), 0u);
}

// A run trained for one step with a small U-Net at 64 x 64 on facades (labels -> photos).
std::string tiny_run(const std::string& dir) {
  TrainOptions o = test::small_train_options(test::shared_dir() + "/data/facades", dir, "tiny");
  o.direction = Direction::kBtoA;
  o.loader.workers = 1;
  o.max_steps = 1;
  o.validate = false;
  train(o);
  return dir + "/runs/tiny";
}

TEST(Results, RunTestWritesEveryFile) {
  const std::string dir = test::temp_dir();
  const std::string run = tiny_run(dir);
  TestOptions options;
  options.run = run;
  options.num_test = 3;
  std::vector<std::string> lines;
  const TestResult result =
      run_test(options, [&](const std::string& line) { lines.push_back(line); });
  const std::string out = run + "/results/test_latest";
  EXPECT_EQ(result.results_dir, out);
  EXPECT_TRUE(result.train_mode);
  ASSERT_EQ(result.images.size(), 3u);
  bool mode_said = false;
  for (const auto& line : lines) mode_said = mode_said || line.rfind("mode: train", 0) == 0;
  EXPECT_TRUE(mode_said);
  // Facades test files sort as 1, 10, 100, ...
  const std::vector<std::string> names = {"1", "10", "100"};
  std::vector<ImageMetrics> from_files;
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(result.images[i].name, names[i]);
    for (const std::string kind : {"real_A", "fake_B", "real_B"}) {
      const std::string path = out + "/images/" + names[i] + "_" + kind + ".png";
      ASSERT_TRUE(fs::exists(path)) << path;
      const Image image = read_image(path);
      EXPECT_EQ(image.width, 64);
      EXPECT_EQ(image.height, 64);
    }
    // The metrics are those of the written images.
    const ImageMetrics m =
        compare_images(read_image(out + "/images/" + names[i] + "_real_B.png"),
                       read_image(out + "/images/" + names[i] + "_fake_B.png"), names[i]);
    EXPECT_DOUBLE_EQ(m.ssim, result.images[i].metrics.ssim);
    EXPECT_DOUBLE_EQ(m.psnr, result.images[i].metrics.psnr);
    from_files.push_back(m);
  }
  const std::string csv = read_file(out + "/metrics.csv");
  EXPECT_EQ(csv, metrics_csv(names, from_files));
  const Json summary = Json::parse(read_file(out + "/summary.json"));
  EXPECT_EQ(summary["mode"], "train");
  EXPECT_EQ(summary["checkpoint"], run + "/checkpoints/latest_net_G.pth");
  EXPECT_EQ(summary["images"], 3);
  EXPECT_EQ(summary["dataset_images"], 106);
  EXPECT_EQ(summary["split"], "test");
  EXPECT_NEAR(summary["mean"]["ssim"].get<double>(), mean_metrics(from_files).ssim, 1e-12);
  const std::string html = read_file(out + "/index.html");
  for (const auto& name : names)
    for (const std::string kind : {"real_A", "fake_B", "real_B"})
      EXPECT_NE(html.find("images/" + name + "_" + kind + ".png"), std::string::npos) << kind;
  EXPECT_NE(html.find("mode <b>train"), std::string::npos);
  for (const auto& entry : fs::directory_iterator(out))
    EXPECT_EQ(entry.path().extension().string().find(".tmp"), std::string::npos) << entry.path();

  // Train mode with the same seed repeats itself exactly; eval mode differs from it.
  const TestResult again = run_test(options);
  EXPECT_EQ(again.images[0].metrics.ssim, result.images[0].metrics.ssim);
  options.train_mode = false;
  options.num_test = 1;
  const TestResult eval = run_test(options);
  EXPECT_NE(eval.images[0].metrics.ssim, result.images[0].metrics.ssim);
  EXPECT_EQ(Json::parse(read_file(out + "/summary.json"))["mode"], "eval");
  // Another split and a missing one.
  options.split = "val";
  EXPECT_EQ(run_test(options).results_dir, run + "/results/val_latest");
  options.split = "nope";
  EXPECT_NE(error_of([&] { run_test(options); }).find("nope"), std::string::npos);
}

}  // namespace
}  // namespace pix2pix
