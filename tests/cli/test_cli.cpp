// The command-line tool: help, version, flag validation and exit codes, `model`'s summary and the
// weights it writes (checked against the PyTorch reference).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"
#include "train/train_options.h"

namespace pix2pix {
namespace {

using test::run_cli;

int count_lines(const std::string& s) {
  int lines = 0;
  for (char c : s) lines += c == '\n';
  return lines;
}

TEST(Cli, HelpAndVersion) {
  auto help = run_cli("--help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("translate"), std::string::npos);
  EXPECT_NE(help.output.find("model"), std::string::npos);
  auto version = run_cli("--version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.output.find("pix2pix 0."), std::string::npos);
  auto model_help = run_cli("model --help");
  EXPECT_EQ(model_help.exit_code, 0);
  EXPECT_NE(model_help.output.find("--netG"), std::string::npos);
  auto translate_help = run_cli("translate --help");
  EXPECT_EQ(translate_help.exit_code, 0);
  EXPECT_NE(translate_help.output.find("--train-mode"), std::string::npos);
}

// The CLI reference in docs/cli.md is the binary's own help, verbatim (`--help-all` of the tool
// and of its two command groups): a flag added, renamed or re-described without
// `scripts/cli_reference.sh` fails here.
TEST(Cli, DocsReferenceIsTheHelpOfEveryCommand) {
  std::string expected = "```text\n";
  for (const std::string group : {"", "data", "bench"}) {
    auto help = run_cli(group + " --help-all");
    ASSERT_EQ(help.exit_code, 0) << help.output;
    expected += "$ pix2pix" + (group.empty() ? "" : " " + group) + " --help-all\n" + help.output;
  }
  expected += "```\n";
  for (const char* text : {"train", "translate", "test", "eval", "report", "demo", "synth", "check",
                           "combine", "infer", "--on-bad-file", "--precision"})
    EXPECT_NE(expected.find(text), std::string::npos) << text;
  std::ifstream in(test::source_dir() + "/docs/cli.md");
  const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string begin =
      "<!-- cli-reference:begin (scripts/cli_reference.sh writes this block) -->\n";
  const size_t start = doc.find(begin);
  const size_t stop = doc.find("<!-- cli-reference:end -->");
  ASSERT_NE(start, std::string::npos);
  ASSERT_NE(stop, std::string::npos);
  EXPECT_EQ(doc.substr(start + begin.size(), stop - start - begin.size()), expected)
      << "docs/cli.md's CLI reference is out of date: run scripts/cli_reference.sh";
}

TEST(Cli, RejectsBadUsageWithOneLineAndExitTwo) {
  for (const std::string args :
       {"", "frobnicate", "model --bogus", "model --norm group", "model --ngf -3",
        "model --n-layers-D 9", "model --netG vgg", "model --netG unet_256 --num-downs 6",
        "translate --out x", "translate --weights /nonexistent.pth --out x a.png",
        "--threads 0 model"}) {
    SCOPED_TRACE(args);
    auto result = run_cli(args);
    EXPECT_EQ(result.exit_code, 2) << result.output;
    EXPECT_EQ(count_lines(result.output), 1) << result.output;
    EXPECT_EQ(result.output.rfind("error: ", 0), 0u) << result.output;
  }
}

// Each training option has its flag in `train`, named and described by the options table: an
// option added to the table without a flag, or a flag with its own help, fails here.
TEST(Cli, TrainHasTheTablesFlagForEveryOption) {
  const auto help = run_cli("train --help");
  ASSERT_EQ(help.exit_code, 0) << help.output;
  std::vector<std::string> lines;
  std::istringstream in(help.output);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  for (const detail::OptionField& field : detail::option_fields()) {
    std::string flag = field.key;
    std::replace(flag.begin(), flag.end(), '_', '-');
    flag = (field.negated_flag ? "--no-" : "--") + flag;
    // "  --flag TYPE=default  help", the help on the next line when the first is long.
    auto line = std::find_if(lines.begin(), lines.end(), [&](const std::string& l) {
      const size_t start = l.find_first_not_of(' ');
      return start != std::string::npos && l.compare(start, flag.size(), flag) == 0 &&
             (l.size() == start + flag.size() || l[start + flag.size()] == ' ');
    });
    ASSERT_NE(line, lines.end()) << flag << " is not a flag of train";
    const std::string text = *line + (line + 1 != lines.end() ? " " + *(line + 1) : "");
    EXPECT_NE(text.find(field.doc), std::string::npos) << flag << " lacks its help: " << field.doc;
  }
}

// The library names its options by field (`num_downs`); the CLI shows the running command's
// flags in their place, in the leading field and inside the text.
TEST(Cli, LibraryMessagesShowTheCommandsFlags) {
  auto result = run_cli("model --netG unet_256 --num-downs 6");
  EXPECT_NE(result.output.find("error: --num-downs: 6 contradicts --netG unet_256 (depth 8); use "
                               "--netG unet with --num-downs"),
            std::string::npos)
      << result.output;
  EXPECT_EQ(result.output.find('`'), std::string::npos) << result.output;
  const std::string dir = test::temp_dir();
  std::ofstream(dir + "/G.pth") << "not a checkpoint";
  result = run_cli("translate --weights " + dir + "/G.pth --epoch 3 --out " + dir + "/out " + dir +
                   "/G.pth");
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("--epoch: needs a run directory as --weights; "), std::string::npos)
      << result.output;
}

TEST(Cli, ModelSummary) {
  auto result = run_cli("model --netG unet_256 --netD basic --norm batch");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("54413955"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("2768705"), std::string::npos);
  EXPECT_NE(result.output.find("70x70"), std::string::npos);
  EXPECT_NE(result.output.find("1x30x30"), std::string::npos);

  auto json = run_cli("model --netG unet_128 --netD n_layers --n-layers-D 5 --size 512 --json");
  ASSERT_EQ(json.exit_code, 0) << json.output;
  auto summary = nlohmann::json::parse(json.output);
  EXPECT_EQ(summary["generator"]["parameters"], 41828995);
  EXPECT_EQ(summary["generator"]["num_downs"], 7);
  EXPECT_EQ(summary["discriminator"]["receptive_field"], 286);
  EXPECT_EQ(summary["discriminator"]["output_shape"], nlohmann::json({1, 14, 14}));

  auto pixel = nlohmann::json::parse(run_cli("model --netD pixel --json").output);
  EXPECT_EQ(pixel["discriminator"]["receptive_field"], 1);
  EXPECT_EQ(pixel["discriminator"]["output_shape"], nlohmann::json({1, 256, 256}));
  auto image = run_cli("model --netD image");
  EXPECT_NE(image.output.find("whole image"), std::string::npos) << image.output;
}

// `model --save-G/--save-D` follows the reference's seeding and initialisation order, so its
// weights equal the reference's for the same seed, and Python loads them strictly.
TEST(Cli, SavedInitialWeightsEqualReferenceInitialisation) {
  if (!test::have_python_torch()) GTEST_SKIP() << "needs /usr/bin/python3 with torch";
  const std::string dir = test::temp_dir();
  for (const auto& [net, depth, norm] : std::vector<std::tuple<std::string, int, std::string>>{
           {"unet_256", 8, "batch"}, {"unet_128", 7, "instance"}}) {
    SCOPED_TRACE(net + " " + norm);
    const std::string g = dir + "/G_" + net + ".pth", d = dir + "/D_" + net + ".pth";
    auto made = run_cli("model --netG " + net + " --norm " + norm + " --seed 3 --save-G " + g +
                        " --save-D " + d);
    ASSERT_EQ(made.exit_code, 0) << made.output;
    auto check = test::run_python(test::source_dir() + "/tests/reference/ref_weights.py " +
                                  test::shared_dir() + " check-init " + g + " " + d + " 3 " +
                                  std::to_string(depth) + " " + norm);
    ASSERT_EQ(check.exit_code, 0) << check.output;
    auto report = nlohmann::json::parse(check.output);
    EXPECT_TRUE(report["strict_load"].get<bool>());
    EXPECT_TRUE(report["G_equal"].get<bool>()) << check.output;
    EXPECT_TRUE(report["D_equal"].get<bool>()) << check.output;
  }
}

TEST(Cli, SaveToUnwritablePathFailsCleanly) {
  auto result = run_cli("model --netG unet_128 --save-G /nonexistent-dir/G.pth");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("/nonexistent-dir/G.pth"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace pix2pix
