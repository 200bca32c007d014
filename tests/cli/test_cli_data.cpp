// `pix2pix data check` and `pix2pix data combine`: counts on the facades dataset, every bad file
// named with exit status 1, usage errors with exit status 2, combine round trips and refusals
// that write nothing.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "pix2pix/data/dataset.h"
#include "pix2pix/io/image_io.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;
using test::put_image;
using test::run_cli;
using test::shell_quote;

Image make_image(int width, int height, int channels, int seed) {
  Image image(width, height, channels);
  for (size_t i = 0; i < image.data.size(); ++i) image.data[i] = uint8_t((seed * 53 + i) % 256);
  return image;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

int count_lines_starting(const std::string& text, const std::string& prefix) {
  int count = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    count += line.compare(0, prefix.size(), prefix) == 0;
    start = end + 1;
  }
  return count;
}

size_t files_under(const std::string& folder) {
  if (!fs::exists(folder)) return 0;
  size_t count = 0;
  for (const auto& entry : fs::recursive_directory_iterator(folder))
    count += entry.is_regular_file();
  return count;
}

TEST(CliData, CheckFacadesCountsEverySplit) {
  const std::string facades = test::shared_dir() + "/data/facades";
  if (!test::required(fs::exists(facades), facades)) GTEST_SKIP() << "needs " << facades;
  const auto result = run_cli("data check " + shell_quote(facades));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (const std::string line :
       {"train: 400 pairs\n  sizes: 512x256 (400)\n", "val: 100 pairs\n  sizes: 512x256 (100)\n",
        "test: 106 pairs\n  sizes: 512x256 (106)\n", "JPEG rgb 8-bit, 3 channels (400)",
        "606 pairs in 3 splits: no problems"}) {
    EXPECT_TRUE(contains(result.output, line)) << "'" << line << "' not in:\n" << result.output;
  }

  const auto json = run_cli("data check --json --direction BtoA " + shell_quote(facades));
  ASSERT_EQ(json.exit_code, 0) << json.output;
  const auto report = nlohmann::json::parse(json.output);
  EXPECT_EQ(report["layout"], "aligned");
  EXPECT_EQ(report["direction"], "BtoA");
  EXPECT_EQ(report["clean"], true);
  ASSERT_EQ(report["splits"].size(), 3u);
  const std::vector<std::pair<std::string, int>> expected = {
      {"train", 400}, {"val", 100}, {"test", 106}};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(report["splits"][i]["split"], expected[i].first);
    EXPECT_EQ(report["splits"][i]["pairs"], expected[i].second);
    EXPECT_EQ(report["splits"][i]["images"][0]["sizes"]["512x256"], expected[i].second);
  }
}

TEST(CliData, CheckNamesTruncatedAndOddWidthFilesAndExitsOne) {
  const std::string root = test::temp_dir();
  put_image(root, "train/good.png", make_image(8, 4, 3, 1));
  const std::string odd = put_image(root, "train/odd.png", make_image(7, 4, 3, 2));
  const std::string truncated = root + "/train/truncated.jpg";
  const std::string facades_jpeg = test::shared_dir() + "/data/facades/train/1.jpg";
  if (fs::exists(facades_jpeg)) {
    fs::copy_file(facades_jpeg, truncated);
  } else {
    put_image(root, "train/truncated.jpg",
              make_image(64, 64, 3, 3));  // a PNG: still truncated below
  }
  fs::resize_file(truncated, fs::file_size(truncated) / 2);

  const auto result = run_cli("data check " + shell_quote(root));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_TRUE(contains(result.output, "train: 3 pairs, 2 bad")) << result.output;
  EXPECT_EQ(count_lines_starting(result.output, "  bad: "), 2) << result.output;
  EXPECT_TRUE(contains(result.output, "  bad: " + odd + ": odd width 7")) << result.output;
  EXPECT_TRUE(contains(result.output, "  bad: " + truncated + ": truncated")) << result.output;
  EXPECT_TRUE(contains(result.output, "2 bad files")) << result.output;

  const auto json = nlohmann::json::parse(run_cli("data check --json " + shell_quote(root)).output);
  EXPECT_EQ(json["clean"], false);
  EXPECT_EQ(json["problem_count"], 2);
}

TEST(CliData, CheckPairedFoldersNamesUnmatchedAndMismatchedFiles) {
  const std::string root = test::temp_dir();
  put_image(root, "A/train/a.png", make_image(4, 4, 3, 1));
  put_image(root, "B/train/a.png", make_image(4, 4, 3, 2));
  const std::string lonely = put_image(root, "A/train/b.png", make_image(4, 4, 3, 3));
  const std::string big_a = put_image(root, "A/val/c.png", make_image(4, 4, 3, 4));
  const std::string big_b = put_image(root, "B/val/c.png", make_image(6, 4, 3, 5));
  const auto result = run_cli("data check " + shell_quote(root));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_TRUE(contains(result.output, "train: 1 pair, 1 bad")) << result.output;
  EXPECT_TRUE(contains(result.output, "  A sizes: 4x4 (2)")) << result.output;
  EXPECT_TRUE(contains(result.output, "  bad: " + lonely + ": no file with stem 'b'"))
      << result.output;
  EXPECT_TRUE(contains(
      result.output, "  bad: " + big_a + ": size 4x4 differs from its partner " + big_b + " (6x4)"))
      << result.output;
}

TEST(CliData, CheckUsageErrorsExitTwo) {
  const std::string root = test::temp_dir();
  for (const std::string args :
       {std::string("data check"), "data check " + root + "/missing",
        "data check --layout diagonal " + root, "data check --direction AB " + root,
        "data check " + root /* no split folders */, "data check --layout paired " + root}) {
    SCOPED_TRACE(args);
    const auto result = run_cli(args);
    EXPECT_EQ(result.exit_code, 2) << result.output;
    EXPECT_EQ(count_lines_starting(result.output, "error: "), 1) << result.output;
  }
  EXPECT_TRUE(contains(run_cli("data check " + root + "/missing").output,
                       "error: " + root + "/missing: dataset folder does not exist"));
}

TEST(CliData, CombineRoundTripsThroughTheAlignedDataset) {
  const std::string root = test::temp_dir();
  std::map<std::string, std::pair<Image, Image>> pairs;
  int seed = 0;
  for (const std::string name : {"train/x", "train/y", "val/z"}) {
    pairs[name] = {make_image(6, 4, 3, ++seed), make_image(6, 4, 3, ++seed * 11)};
    put_image(root, "A/" + name + ".png", pairs[name].first);
    put_image(root, "B/" + name + ".png", pairs[name].second);
  }
  const std::string out = root + "/AB";
  const auto result = run_cli("data combine --a " + root + "/A --b " + root + "/B --out " + out);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(contains(result.output, "train: 2 pairs -> " + out + "/train")) << result.output;
  EXPECT_TRUE(contains(result.output, "wrote 3 images")) << result.output;
  for (const std::string split : {"train", "val"}) {
    DatasetOptions options;
    options.root = out;
    options.split = split;
    Dataset dataset(options);
    ASSERT_EQ(dataset.layout(), DatasetLayout::kAligned);
    ASSERT_EQ(dataset.size(), split == "train" ? 2u : 1u);
    for (size_t i = 0; i < dataset.size(); ++i) {
      const Sample sample = dataset.load(i);
      const auto& expected = pairs.at(split + "/" + sample.name);
      EXPECT_EQ(sample.input, expected.first) << sample.name;
      EXPECT_EQ(sample.target, expected.second) << sample.name;
    }
  }

  // Flat folders with a split name go to OUT/<name>/.
  put_image(root, "flatA/p.png", pairs["val/z"].first);
  put_image(root, "flatB/p.png", pairs["val/z"].second);
  const auto flat = run_cli("data combine --a " + root + "/flatA --b " + root + "/flatB --out " +
                            root + "/flatAB --split test");
  ASSERT_EQ(flat.exit_code, 0) << flat.output;
  EXPECT_EQ(read_image(root + "/flatAB/test/p.png"),
            join_aligned(pairs["val/z"].first, pairs["val/z"].second));
}

TEST(CliData, CombineRefusesSizeMismatchWithoutResizeAndWritesNothing) {
  const std::string root = test::temp_dir();
  put_image(root, "A/train/same.png", make_image(6, 4, 3, 1));
  put_image(root, "B/train/same.png", make_image(6, 4, 3, 2));
  const std::string a = put_image(root, "A/train/x.png", make_image(6, 4, 3, 3));
  const std::string b = put_image(root, "B/train/x.png", make_image(10, 8, 1, 4));
  const std::string out = root + "/AB";
  const std::string args = "data combine --a " + root + "/A --b " + root + "/B --out " + out;
  const auto refused = run_cli(args);
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_TRUE(contains(refused.output,
                       "error: " + a + ": size 6x4 differs from its partner " + b + " (10x8)"))
      << refused.output;
  EXPECT_TRUE(contains(refused.output, "nothing written")) << refused.output;
  EXPECT_EQ(files_under(out), 0u);

  const auto resized = run_cli(args + " --resize");
  ASSERT_EQ(resized.exit_code, 0) << resized.output;
  const Image ab = read_image(out + "/train/x.png");
  EXPECT_EQ(ab.width, 12);
  EXPECT_EQ(ab.height, 4);
  EXPECT_EQ(ab.channels, 3);  // B converted to A's channel count
  EXPECT_EQ(files_under(out), 2u);
}

TEST(CliData, CombineListsEveryUnmatchedFileAndWritesNothing) {
  const std::string root = test::temp_dir();
  for (const std::string stem : {"a", "b", "c"})
    put_image(root, "A/" + stem + ".png", make_image(4, 4, 3, 1));
  for (const std::string stem : {"a", "d", "e"})
    put_image(root, "B/" + stem + ".png", make_image(4, 4, 3, 2));
  const std::string out = root + "/AB";
  const auto result = run_cli("data combine --a " + root + "/A --b " + root + "/B --out " + out);
  EXPECT_EQ(result.exit_code, 2) << result.output;
  for (const std::string file : {"A/b.png", "A/c.png", "B/d.png", "B/e.png"})
    EXPECT_TRUE(contains(result.output, "error: " + root + "/" + file + ": no file with stem"))
        << file << " in:\n"
        << result.output;
  EXPECT_EQ(count_lines_starting(result.output, "error: "), 5) << result.output;
  EXPECT_FALSE(fs::exists(out));

  // Usage errors: a missing folder, a missing flag.
  EXPECT_EQ(
      run_cli("data combine --a " + root + "/nowhere --b " + root + "/B --out " + out).exit_code,
      2);
  EXPECT_EQ(run_cli("data combine --a " + root + "/A --out " + out).exit_code, 2);
}

}  // namespace
}  // namespace pix2pix
