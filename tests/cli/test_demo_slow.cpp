// `pix2pix demo` end to end (slow label: it trains for two minutes): the validation L1 after
// training is at most half the untrained model's, and the report, TensorBoard events, test
// translations and checkpoints are where it says.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <regex>

#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;

TEST(Demo, HalvesTheValidationL1AndWritesEverything) {
  const std::string out = test::temp_dir() + "/demo";
  const test::CommandResult result =
      test::run_cli("demo --out " + test::shell_quote(out) + " --minutes 2");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::smatch match;
  ASSERT_TRUE(std::regex_search(result.output, match,
                                std::regex(R"(untrained ([0-9.]+) -> trained ([0-9.]+))")))
      << result.output;
  const double before = std::stod(match[1].str()), after = std::stod(match[2].str());
  EXPECT_LE(after, 0.5 * before) << result.output;

  // The same numbers are the first and last val rows of metrics.jsonl.
  const std::string run = out + "/facades_synth";
  std::vector<double> val_l1;
  for (const auto& row : test::metrics_rows(run, "val"))
    val_l1.push_back(row["val_L1"].get<double>());
  ASSERT_GE(val_l1.size(), 2u);
  EXPECT_NEAR(val_l1.front(), before, 1e-4);
  EXPECT_NEAR(val_l1.back(), after, 1e-4);

  for (const std::string file :
       {"report.html", "checkpoints/latest_net_G.pth", "samples/epoch000.png", "options.json"})
    EXPECT_TRUE(fs::exists(run + "/" + file)) << file;
  EXPECT_FALSE(fs::is_empty(run + "/tb"));
  // `test` ran on the 8 test images, and the report links its page.
  EXPECT_TRUE(fs::exists(run + "/results/test_latest/index.html"));
  EXPECT_EQ(std::distance(fs::directory_iterator(run + "/results/test_latest/images"),
                          fs::directory_iterator()),
            3 * 8);  // real_A, fake_B, real_B per image
  std::ifstream report(run + "/report.html");
  const std::string html((std::istreambuf_iterator<char>(report)),
                         std::istreambuf_iterator<char>());
  EXPECT_NE(html.find("results/test_latest/index.html"), std::string::npos);
  // A second demo into the same folder needs --force.
  const test::CommandResult again = test::run_cli("demo --out " + test::shell_quote(out));
  EXPECT_EQ(again.exit_code, 2) << again.output;
  EXPECT_NE(again.output.find("--force"), std::string::npos) << again.output;
}

}  // namespace
}  // namespace pix2pix
