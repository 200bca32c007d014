// `pix2pix translate` beyond single files: weights from a run directory (options.json +
// checkpoints/), from one of its checkpoints or a plain state_dict; folders (recursive) and `-`
// (paths on stdin) with outputs mirroring the input names; odd sizes; tiling flags; unreadable
// inputs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "pix2pix/io/image_io.h"
#include "pix2pix/io/pytorch_import.h"
#include "pix2pix/models/generator.h"
#include "pix2pix/train/trainer.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;
using test::run_cli;
using test::shell_quote;

const std::string kSmallNet = "--netG unet --num-downs 5 --ngf 8";

// Weights of the kSmallNet generator (seeded torch init), written as `model --save-G` would.
using test::save_small_unet;

Image pattern(int width, int height, int seed) {
  Image image(width, height, 3);
  for (size_t i = 0; i < image.data.size(); ++i)
    image.data[i] = static_cast<uint8_t>((i * (7 + seed) + i / 97 * 13 + seed * 31) % 256);
  return image;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// runs/demo as the trainer writes it: options.json (small U-Net, BtoA) and two checkpoints.
std::string make_run(const std::string& dir) {
  const std::string run = dir + "/runs/demo";
  fs::create_directories(run + "/checkpoints");
  TrainOptions options;
  options.name = "demo";
  options.generator.net = "unet";
  options.generator.num_downs = 5;
  options.generator.ngf = 8;
  options.direction = Direction::kBtoA;
  std::ofstream(run + "/options.json") << options_to_json(options);
  save_small_unet(run + "/checkpoints/latest_net_G.pth", 1);
  save_small_unet(run + "/checkpoints/5_net_G.pth", 2);
  return run;
}

TEST(TranslateCli, WeightsFromARunDirectoryACheckpointOrAFile) {
  const std::string dir = test::temp_dir();
  const std::string run = make_run(dir);
  test::put_image(dir, "in/a.png", pattern(100, 70, 1));
  const std::string input = dir + "/in/a.png";

  auto from_run = run_cli("translate --weights " + run + " --out " + dir + "/o1 " + input);
  ASSERT_EQ(from_run.exit_code, 0) << from_run.output;
  EXPECT_TRUE(contains(from_run.output, "architecture from " + run + "/options.json"))
      << from_run.output;
  const Image reference = read_image(dir + "/o1/a.png");
  EXPECT_EQ(reference.width, 100);
  EXPECT_EQ(reference.height, 70);

  // The same weights as a checkpoint of the run (no flags needed) and as a loose file (flags).
  auto checkpoint = run_cli("translate --weights " + run + "/checkpoints/latest_net_G.pth --out " +
                            dir + "/o2 " + input);
  ASSERT_EQ(checkpoint.exit_code, 0) << checkpoint.output;
  EXPECT_EQ(read_image(dir + "/o2/a.png"), reference);
  fs::copy_file(run + "/checkpoints/latest_net_G.pth", dir + "/G.pth");
  auto file = run_cli("translate " + kSmallNet + " --weights " + dir + "/G.pth --out " + dir +
                      "/o3 " + input);
  ASSERT_EQ(file.exit_code, 0) << file.output;
  EXPECT_EQ(read_image(dir + "/o3/a.png"), reference);

  // --epoch picks another checkpoint; a missing one lists those that exist.
  auto epoch5 = run_cli("translate --weights " + run + " --epoch 5 --out " + dir + "/o5 " + input);
  ASSERT_EQ(epoch5.exit_code, 0) << epoch5.output;
  EXPECT_TRUE(contains(epoch5.output, "5_net_G.pth")) << epoch5.output;
  EXPECT_NE(read_image(dir + "/o5/a.png"), reference);
  auto best = run_cli("translate --weights " + run + " --epoch best --out " + dir + "/o6 " + input);
  EXPECT_EQ(best.exit_code, 2);
  EXPECT_TRUE(contains(best.output, "best_net_G.pth")) << best.output;
  EXPECT_TRUE(contains(best.output, "available epochs: latest, 5")) << best.output;
  auto epoch_with_file = run_cli("translate " + kSmallNet + " --weights " + dir +
                                 "/G.pth --epoch 5 --out " + dir + "/o7 " + input);
  EXPECT_EQ(epoch_with_file.exit_code, 2);
  EXPECT_TRUE(contains(epoch_with_file.output, "--epoch")) << epoch_with_file.output;
  auto not_a_run = run_cli("translate --weights " + dir + "/in --out " + dir + "/o8 " + input);
  EXPECT_EQ(not_a_run.exit_code, 2);
  EXPECT_TRUE(contains(not_a_run.output, "options.json")) << not_a_run.output;

  // --aligned takes the run's direction (BtoA): the right half is the input.
  const Image left = pattern(100, 70, 2), right = pattern(100, 70, 3);
  Image pair(200, 70, 3);
  for (int y = 0; y < 70; ++y)
    for (int x = 0; x < 200; ++x)
      for (int c = 0; c < 3; ++c)
        pair.at<uint8_t>(y, x, c) =
            x < 100 ? left.at<uint8_t>(y, x, c) : right.at<uint8_t>(y, x - 100, c);
  test::put_image(dir, "pair/p.png", pair);
  test::put_image(dir, "half/p.png", right);
  ASSERT_EQ(run_cli("translate --aligned --weights " + run + " --out " + dir + "/o9 " + dir +
                    "/pair/p.png")
                .exit_code,
            0);
  ASSERT_EQ(run_cli("translate --weights " + run + " --out " + dir + "/o10 " + dir + "/half/p.png")
                .exit_code,
            0);
  EXPECT_EQ(read_image(dir + "/o9/p.png"), read_image(dir + "/o10/p.png"));
}

TEST(TranslateCli, FoldersAndStdinListsMirrorInputNames) {
  const std::string dir = test::temp_dir();
  const std::string weights = dir + "/G.pth";
  save_small_unet(weights, 0);
  const std::string translate = "translate " + kSmallNet + " --weights " + weights;
  test::put_image(dir, "in/x.png", pattern(64, 40, 1));
  test::put_image(dir, "in/sub/y.jpg.png", pattern(33, 65, 2));
  test::put_image(dir, "in/sub/deeper/z.tif", pattern(32, 32, 3));  // PNG data, TIFF name
  std::ofstream(dir + "/in/notes.txt") << "not an image, not listed";

  // A folder: every image below it, recursively, at the same relative path, as PNG.
  auto folder = run_cli(translate + " --out " + dir + "/o1 " + dir + "/in");
  ASSERT_EQ(folder.exit_code, 0) << folder.output;
  EXPECT_EQ(read_image(dir + "/o1/x.png").width, 64);
  EXPECT_EQ(read_image(dir + "/o1/sub/y.jpg.png").height, 65);
  EXPECT_EQ(read_image(dir + "/o1/sub/deeper/z.png").width, 32);
  EXPECT_EQ(std::distance(fs::recursive_directory_iterator(dir + "/o1"),
                          fs::recursive_directory_iterator()),
            5);  // 3 images + 2 folders

  // `-`: paths from stdin, one per line (blank lines skipped), output by stem.
  std::ofstream(dir + "/list.txt") << dir << "/in/x.png\n\n" << dir << "/in/sub/deeper/z.tif\n";
  auto listed = run_cli(translate + " --out " + dir + "/o2 - < " + shell_quote(dir + "/list.txt"));
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_EQ(read_image(dir + "/o2/x.png"), read_image(dir + "/o1/x.png"));
  EXPECT_TRUE(fs::exists(dir + "/o2/z.png"));
  EXPECT_FALSE(fs::exists(dir + "/o2/y.jpg.png"));

  // Two listed files with one stem would overwrite each other; a listed path that does not
  // exist is named. Nothing is written in either case.
  test::put_image(dir, "other/x.png", pattern(64, 40, 4));
  std::ofstream(dir + "/clash.txt") << dir << "/in/x.png\n" << dir << "/other/x.png\n";
  auto clash = run_cli(translate + " --out " + dir + "/o3 - < " + shell_quote(dir + "/clash.txt"));
  EXPECT_EQ(clash.exit_code, 2);
  EXPECT_TRUE(contains(clash.output, "would overwrite")) << clash.output;
  EXPECT_FALSE(fs::exists(dir + "/o3"));
  std::ofstream(dir + "/missing.txt") << dir << "/in/x.png\n" << dir << "/in/gone.png\n";
  auto missing =
      run_cli(translate + " --out " + dir + "/o4 - < " + shell_quote(dir + "/missing.txt"));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_TRUE(contains(missing.output, "gone.png: no such file")) << missing.output;
  EXPECT_FALSE(fs::exists(dir + "/o4"));
  // An empty list (a file of our own: some CI sandboxes make /dev/null a regular file).
  std::ofstream(dir + "/empty.txt").flush();
  auto empty = run_cli(translate + " --out " + dir + "/o5 - < " + shell_quote(dir + "/empty.txt"));
  EXPECT_EQ(empty.exit_code, 2);
  EXPECT_TRUE(contains(empty.output, "stdin")) << empty.output;
}

TEST(TranslateCli, UnreadableInputs) {
  const std::string dir = test::temp_dir();
  const std::string weights = dir + "/G.pth";
  save_small_unet(weights, 0);
  const std::string translate = "translate " + kSmallNet + " --weights " + weights;
  test::put_image(dir, "good.png", pattern(64, 64, 1));
  std::ofstream(dir + "/junk.png") << "not a PNG at all";

  // A file whose header cannot be read: named, exit 2, nothing written (checked first).
  auto junk =
      run_cli(translate + " --out " + dir + "/o1 " + dir + "/good.png " + dir + "/junk.png");
  EXPECT_EQ(junk.exit_code, 2);
  EXPECT_TRUE(contains(junk.output, "junk.png")) << junk.output;
  EXPECT_FALSE(fs::exists(dir + "/o1/good.png"));

  // A file whose header is fine but whose pixel data is cut short is found while translating:
  // it is named, the other inputs are still written, the exit status is 2.
  Image noise(256, 256, 3);
  for (size_t i = 0; i < noise.data.size(); ++i)
    noise.data[i] = static_cast<uint8_t>((i * 2654435761u) >> 13);
  write_png(dir + "/cut.png", noise);
  fs::resize_file(dir + "/cut.png", fs::file_size(dir + "/cut.png") / 2);
  ASSERT_NO_THROW(read_image_info(dir + "/cut.png"));
  auto cut = run_cli(translate + " --out " + dir + "/o2 " + dir + "/cut.png " + dir + "/good.png");
  EXPECT_EQ(cut.exit_code, 2) << cut.output;
  EXPECT_TRUE(contains(cut.output, "cut.png")) << cut.output;
  EXPECT_TRUE(contains(cut.output, "1 of 2 inputs failed")) << cut.output;
  EXPECT_TRUE(fs::exists(dir + "/o2/good.png"));
  EXPECT_FALSE(fs::exists(dir + "/o2/cut.png"));
}

TEST(TranslateCli, TilingFlags) {
  const std::string dir = test::temp_dir();
  const std::string weights = dir + "/G.pth";
  save_small_unet(weights, 0);
  const std::string translate = "translate " + kSmallNet + " --weights " + weights;
  const std::string input = test::put_image(dir, "big.png", pattern(200, 150, 1));

  auto tiled = run_cli(translate + " --tile 96 --overlap 32 --out " + dir + "/o1 " + input);
  ASSERT_EQ(tiled.exit_code, 0) << tiled.output;
  EXPECT_TRUE(contains(tiled.output, "padded to 224x160, 3x2 tiles of 96 overlapping 32"))
      << tiled.output;
  const Image result = read_image(dir + "/o1/big.png");
  EXPECT_EQ(result.width, 200);
  EXPECT_EQ(result.height, 150);

  auto automatic = run_cli(translate + " --max-pixels 10000 --out " + dir + "/o2 " + input);
  ASSERT_EQ(automatic.exit_code, 0) << automatic.output;
  EXPECT_TRUE(contains(automatic.output, "tiles of 96 overlapping 24 (automatic)"))
      << automatic.output;

  auto off_grid = run_cli(translate + " --tile 50 --out " + dir + "/o3 " + input);
  EXPECT_EQ(off_grid.exit_code, 2);
  EXPECT_TRUE(contains(off_grid.output, "--tile: 50 ")) << off_grid.output;
  auto overlap = run_cli(translate + " --tile 64 --overlap 40 --out " + dir + "/o3 " + input);
  EXPECT_EQ(overlap.exit_code, 2);
  EXPECT_TRUE(contains(overlap.output, "--overlap: 40 ")) << overlap.output;
  auto train = run_cli(translate + " --train-mode --tile 64 --out " + dir + "/o3 " + input);
  EXPECT_EQ(train.exit_code, 2);
  EXPECT_TRUE(contains(train.output, "--tile: tiling needs eval mode")) << train.output;
  EXPECT_FALSE(fs::exists(dir + "/o3"));
  auto train_big =
      run_cli(translate + " --train-mode --max-pixels 10000 --out " + dir + "/o4 " + input);
  ASSERT_EQ(train_big.exit_code, 0) << train_big.output;
  EXPECT_TRUE(contains(train_big.output, "train mode translates whole images")) << train_big.output;
}

// The README's C++ example is examples/translate.cpp verbatim, and the built program translates
// as `pix2pix translate` does (the same bytes), from a run directory, with only the public header.
TEST(TranslateExample, IsTheReadmesAndTranslatesAsTheCli) {
  std::ifstream example_file(test::source_dir() + "/examples/translate.cpp");
  std::ifstream readme_file(test::source_dir() + "/README.md");
  const std::string example((std::istreambuf_iterator<char>(example_file)), {});
  const std::string readme((std::istreambuf_iterator<char>(readme_file)), {});
  ASSERT_FALSE(example.empty());
  EXPECT_TRUE(contains(readme, "```cpp\n" + example + "```"))
      << "README.md must show examples/translate.cpp verbatim in a ```cpp block";

  const std::string binary = test::example_translate();
  if (binary.empty()) GTEST_SKIP() << "examples not built (-DPIX2PIX_BUILD_EXAMPLES=OFF)";
  const std::string dir = test::temp_dir();
  const std::string run = make_run(dir);
  const std::string input = test::put_image(dir, "in/a.png", pattern(100, 70, 3));
  const auto ours = test::run_command(shell_quote(binary) + " " + run + " " + input + " " + dir +
                                      "/example.png 2>&1");
  ASSERT_EQ(ours.exit_code, 0) << ours.output;
  const auto cli = run_cli("translate --weights " + run + " --out " + dir + "/cli " + input);
  ASSERT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_EQ(read_image(dir + "/example.png"), read_image(dir + "/cli/a.png"));

  const auto missing = test::run_command(shell_quote(binary) + " " + dir + "/nothing " + input +
                                         " " + dir + "/x.png 2>&1");
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_TRUE(contains(missing.output, dir + "/nothing")) << missing.output;
}

}  // namespace
}  // namespace pix2pix
