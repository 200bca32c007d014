// The `eval` and `test` commands: outputs, flags and error messages.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "pix2pix/data/dataset.h"
#include "pix2pix/data/transforms.h"
#include "pix2pix/eval/metrics.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using test::run_cli;
using test::shell_quote;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

Image photo(int index) {
  const std::string path =
      test::shared_dir() + "/data/facades/test/" + std::to_string(index) + ".jpg";
  return crop_image(split_aligned(read_image(path), path).first, 0, 0, 64, 48);
}

Image darker(const Image& image, int by) {
  Image out = image;
  for (auto& v : out.data) v = uint8_t(std::max(0, int(v) - by));
  return out;
}

TEST(CliEval, PrintsCsvMeansAndWhyFidIsUnavailable) {
  const std::string dir = test::temp_dir();
  for (int i = 1; i <= 3; ++i) {
    test::put_image(dir, "real/" + std::to_string(i) + ".png", photo(i));
    test::put_image(dir, "fake/" + std::to_string(i) + ".png", darker(photo(i), 4 * i));
  }
  // stdout to a file (without FID weights nothing goes to stderr; with them, progress lines).
  const auto result = run_cli(
      "eval --real " + shell_quote(dir + "/real") + " --fake " + shell_quote(dir + "/fake") +
      " --csv " + shell_quote(dir + "/out.csv") + " > " + shell_quote(dir + "/stdout.txt"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const std::string output = read_file(dir + "/stdout.txt");
  EXPECT_EQ(output.rfind("name,l1,psnr,ssim,sharpness,checkerboard,colour_error\n1,", 0), 0u)
      << output;
  EXPECT_NE(output.find("\nmean,"), std::string::npos) << output;
  EXPECT_NE(output.find("# FID/KID unavailable: no InceptionV3 weights"), std::string::npos)
      << output;
  const std::string csv = read_file(dir + "/out.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 4);
  EXPECT_EQ(output.rfind(csv, 0), 0u);

  const auto json_result =
      run_cli("eval --json --real " + shell_quote(dir + "/real") + " --fake " +
              shell_quote(dir + "/fake") + " > " + shell_quote(dir + "/out.json"));
  ASSERT_EQ(json_result.exit_code, 0) << json_result.output;
  const Json json = Json::parse(read_file(dir + "/out.json"));
  ASSERT_EQ(json["images"].size(), 3u);
  // Darkening by 4 levels: L1 = 4 / 127.5 unless clipped at 0.
  EXPECT_NEAR(json["images"][0]["l1"].get<double>(), 4 / 127.5, 0.2 * 4 / 127.5);
  EXPECT_GT(json["images"][0]["psnr"].get<double>(), json["images"][2]["psnr"].get<double>());
  EXPECT_TRUE(json["fid"].is_null());
  EXPECT_NE(json["fid_unavailable"].get<std::string>().find("--fid-weights"), std::string::npos);
}

TEST(CliEval, ErrorsNameTheFolderOrFiles) {
  const std::string dir = test::temp_dir();
  test::put_image(dir, "real/a.png", photo(1));
  test::put_image(dir, "fake/a.png", crop_image(photo(1), 0, 0, 64, 40));
  test::put_image(dir, "other/b.png", photo(1));
  auto result = run_cli("eval --real " + shell_quote(dir + "/missing") + " --fake " +
                        shell_quote(dir + "/fake"));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.output.find("error: " + dir + "/missing"), std::string::npos) << result.output;
  result = run_cli("eval --real " + shell_quote(dir + "/real") + " --fake " +
                   shell_quote(dir + "/other"));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.output.find("no image pairs"), std::string::npos) << result.output;
  result = run_cli("eval --real " + shell_quote(dir + "/real") + " --fake " +
                   shell_quote(dir + "/fake"));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.output.find(dir + "/fake/a.png: is 64x40 but its real image " + dir +
                               "/real/a.png is 64x48"),
            std::string::npos)
      << result.output;
  result = run_cli("eval --fake " + shell_quote(dir + "/fake"));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.output.find("--real"), std::string::npos) << result.output;
}

// `test` on the facades test split with a run trained for one step (small U-Net, 64 x 64), then
// `eval` on its results folder.
TEST(CliTest, WritesTheResultsFolderAndEvalReadsIt) {
  const std::string dir = test::temp_dir();
  const std::string facades = test::shared_dir() + "/data/facades";
  auto result = run_cli("train --data " + shell_quote(facades) +
                        " --direction BtoA --name tiny --runs-dir " + shell_quote(dir + "/runs") +
                        " --max-steps 1 --netG unet --num-downs 6 --ngf 8 --ndf 8 --load-size 72"
                        " --crop-size 64 --no-validate --workers 1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const std::string run = dir + "/runs/tiny";
  result = run_cli("test --run " + shell_quote(run) + " --num-test 4");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("mode: train"), std::string::npos) << result.output;
  const std::string out = run + "/results/test_latest";
  for (const std::string name : {"1", "10", "100", "101"})
    for (const std::string kind : {"real_A", "fake_B", "real_B"})
      EXPECT_TRUE(fs::exists(out + "/images/" + name + "_" + kind + ".png")) << name << kind;
  for (const std::string file : {"index.html", "metrics.csv", "summary.json"})
    EXPECT_TRUE(fs::exists(out + "/" + file)) << file;
  const Json summary = Json::parse(read_file(out + "/summary.json"));
  EXPECT_EQ(summary["mode"], "train");
  EXPECT_EQ(summary["images"], 4);

  // eval on the one folder holding both kinds gives metrics.csv's numbers.
  result = run_cli("eval --real " + shell_quote(out + "/images") + " > " +
                   shell_quote(dir + "/eval.txt"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const std::string eval_output = read_file(dir + "/eval.txt");
  EXPECT_EQ(eval_output.substr(0, eval_output.find("mean,")), read_file(out + "/metrics.csv"));

  result = run_cli("test --run " + shell_quote(run) + " --eval --num-test 1 --epoch latest");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("mode: eval"), std::string::npos) << result.output;
  EXPECT_EQ(Json::parse(read_file(out + "/summary.json"))["mode"], "eval");

  result = run_cli("test --run " + shell_quote(run) + " --epoch 3");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.output.find("3_net_G.pth: no such checkpoint"), std::string::npos)
      << result.output;
  result = run_cli("test --run " + shell_quote(run) + " --eval --train-mode");
  EXPECT_EQ(result.exit_code, 2) << result.output;
  result = run_cli("test --run " + shell_quote(run) + " --split nope");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.output.find("nope"), std::string::npos) << result.output;
  result = run_cli("test --run " + shell_quote(dir));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.output.find("options.json"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace pix2pix
