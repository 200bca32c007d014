// bench/reproduce.sh end to end on facades with a few steps: every experiment selected trains,
// is tested in both modes, and lands in results.json, results.md and a grid (label slow).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;

TEST(Reproduce, SmokeRunsEndToEnd) {
  const std::string data = test::shared_dir() + "/data/facades";
  if (!test::required(fs::exists(data + "/train"), "../shared/data/facades"))
    GTEST_SKIP() << "no facades data";
  if (!test::have_python_pil()) GTEST_SKIP() << "no python3 with PIL and numpy";
  const std::string out = test::temp_dir() + "/study";
  const auto run = test::run_command("bash " + test::source_dir() + "/bench/reproduce.sh " +
                                     test::shell_quote(data) + " " + test::shell_quote(out) +
                                     " --steps 8 --only main_seed0,l1_only,cgan_only --binary " +
                                     test::shell_quote(test::cli_path()));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  std::ifstream in(out + "/results.json");
  const auto results = nlohmann::json::parse(in);
  ASSERT_EQ(results["experiments"].size(), 3u) << results.dump(1);
  for (const auto& experiment : results["experiments"]) {
    const std::string name = experiment["name"];
    for (const char* mode : {"paper", "eval"})
      for (const char* metric : {"l1", "ssim", "sharpness", "checkerboard", "colour_error"})
        EXPECT_TRUE(experiment[mode].contains(metric)) << name << " " << mode << " " << metric;
    EXPECT_TRUE(fs::exists(out + "/grids/" + name + ".png")) << name;
  }
  std::ifstream md(out + "/results.md");
  const std::string text((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("| l1_only |"), std::string::npos) << text;
  EXPECT_NE(text.find("loss ablation"), std::string::npos) << text;
}

}  // namespace
}  // namespace pix2pix
