// Slow (CTest label `slow`): `pix2pix test` on the whole facades test split (106 images) with a
// full-size unet_256 run trained for one step, then `eval` on its results folder.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "pix2pix/data/dataset.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;
using test::run_cli;
using test::shell_quote;

TEST(ResultsSlow, WholeFacadesTestSplit) {
  const std::string dir = test::temp_dir();
  const std::string facades = test::shared_dir() + "/data/facades";
  auto result =
      run_cli("train --data " + shell_quote(facades) + " --direction BtoA --name full" +
              " --runs-dir " + shell_quote(dir + "/runs") + " --max-steps 1 --no-validate");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const std::string run = dir + "/runs/full";
  result = run_cli("test --run " + shell_quote(run));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const std::string out = run + "/results/test_latest";
  const std::vector<std::string> files = list_images(facades + "/test");
  ASSERT_EQ(files.size(), 106u);
  for (const auto& file : files) {
    const std::string stem = fs::path(file).stem().string();
    for (const std::string kind : {"real_A", "fake_B", "real_B"}) {
      const std::string path = out + "/images/" + stem + "_" + kind + ".png";
      ASSERT_TRUE(fs::exists(path)) << path;
      const ImageInfo info = read_image_info(path);
      EXPECT_EQ(info.width, 256);
      EXPECT_EQ(info.height, 256);
    }
  }
  std::ifstream summary_file(out + "/summary.json");
  const auto summary = nlohmann::json::parse(summary_file);
  EXPECT_EQ(summary["images"], 106);
  EXPECT_EQ(summary["mode"], "train");
  std::ifstream csv_file(out + "/metrics.csv");
  std::stringstream csv;
  csv << csv_file.rdbuf();
  const std::string text = csv.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 107);
  result = run_cli("eval --real " + shell_quote(out + "/images") + " > " +
                   shell_quote(dir + "/eval.txt"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::ifstream eval_file(dir + "/eval.txt");
  std::stringstream eval;
  eval << eval_file.rdbuf();
  EXPECT_EQ(eval.str().substr(0, eval.str().find("mean,")), text);
}

}  // namespace
}  // namespace pix2pix
