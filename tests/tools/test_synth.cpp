// Tests for the synthetic facades dataset: determinism (bytes, across thread counts), the
// aligned layout on disk (counts, sizes, A = label | B = photo), the label map's palette and
// structure (classes, windows in columns and rows, doors on the ground), the photo following the
// label without being a function of it, and refusing to overwrite a user's folder. Sizes stay
// small (64-128) so the whole file runs in a second or two.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "pix2pix/error.h"
#include "pix2pix/io/image_io.h"
#include "pix2pix/tools/synth.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;
using test::temp_dir;

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

SynthOptions small_options(uint64_t seed = 7) {
  SynthOptions options;
  options.train = 3;
  options.val = 2;
  options.test = 2;
  options.size = 64;
  options.seed = seed;
  return options;
}

// The files of a dataset folder: relative path -> bytes.
std::map<std::string, std::string> dataset_files(const fs::path& root) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(root))
    if (entry.is_regular_file())
      files[fs::relative(entry.path(), root).string()] = read_bytes(entry.path());
  return files;
}

int palette_index(const uint8_t* rgb) {
  const auto& palette = synth_palette();
  for (int k = 0; k < kSynthClassCount; ++k)
    if (palette[size_t(k)].r == rgb[0] && palette[size_t(k)].g == rgb[1] &&
        palette[size_t(k)].b == rgb[2])
      return k;
  return -1;
}

// A connected region's bounding box, half-open.
struct Component {
  int x0, y0, x1, y1;
};

// The 4-connected regions of pixels whose class is one of `labels`.
std::vector<Component> components(const std::vector<uint8_t>& classes, int size,
                                  std::initializer_list<SynthClass> labels) {
  bool member[256] = {};
  for (SynthClass label : labels) member[uint8_t(label)] = true;
  std::vector<Component> found;
  std::vector<bool> seen(classes.size(), false);
  std::vector<int> stack;
  for (int start = 0; start < size * size; ++start) {
    if (seen[size_t(start)] || !member[classes[size_t(start)]]) continue;
    Component c{size, size, 0, 0};
    stack.push_back(start);
    seen[size_t(start)] = true;
    while (!stack.empty()) {
      const int i = stack.back();
      stack.pop_back();
      const int x = i % size, y = i / size;
      c.x0 = std::min(c.x0, x), c.y0 = std::min(c.y0, y);
      c.x1 = std::max(c.x1, x + 1), c.y1 = std::max(c.y1, y + 1);
      const int neighbours[4][2] = {{x - 1, y}, {x + 1, y}, {x, y - 1}, {x, y + 1}};
      for (const auto& n : neighbours) {
        if (n[0] < 0 || n[1] < 0 || n[0] >= size || n[1] >= size) continue;
        const int j = n[1] * size + n[0];
        if (!seen[size_t(j)] && member[classes[size_t(j)]]) {
          seen[size_t(j)] = true;
          stack.push_back(j);
        }
      }
    }
    found.push_back(c);
  }
  return found;
}

TEST(Synth, PaletteIsTheFacadesColours) {
  const auto& palette = synth_palette();
  // Spot checks against the facades label images: wall blue, window light blue, shop dark red.
  EXPECT_EQ(palette[size_t(SynthClass::kWall)].b, 255);
  EXPECT_EQ(palette[size_t(SynthClass::kWindow)].g, 85);
  EXPECT_EQ(palette[size_t(SynthClass::kShop)].r, 170);
  std::set<std::tuple<int, int, int>> distinct;
  for (const auto& c : palette) distinct.emplace(c.r, c.g, c.b);
  EXPECT_EQ(distinct.size(), size_t(kSynthClassCount));
  EXPECT_STREQ(to_string(SynthClass::kBalcony), "balcony");
}

TEST(Synth, SameSeedSamePairDifferentSeedDifferentPair) {
  const SynthPair a = render_synth_pair(42, 96);
  const SynthPair b = render_synth_pair(42, 96);
  const SynthPair c = render_synth_pair(43, 96);
  EXPECT_EQ(a.label, b.label);
  EXPECT_EQ(a.photo, b.photo);
  EXPECT_EQ(a.classes, b.classes);
  EXPECT_NE(a.photo, c.photo);
  EXPECT_NE(a.label, c.label);
}

TEST(Synth, PairSeedsDependOnSeedSplitAndIndex) {
  std::set<uint64_t> seeds;
  for (uint64_t seed : {0, 1})
    for (const char* split : {"train", "val", "test"})
      for (int index = 1; index <= 50; ++index) seeds.insert(synth_pair_seed(seed, split, index));
  EXPECT_EQ(seeds.size(), 2u * 3u * 50u);
  EXPECT_EQ(synth_pair_seed(5, "val", 3), synth_pair_seed(5, "val", 3));
}

TEST(Synth, DatasetIsByteIdenticalForASeedAndAnyThreadCount) {
  const std::string dir = temp_dir();
  SynthOptions options = small_options();
  options.threads = 1;
  write_synth_dataset(dir + "/one", options);
  options.threads = 3;
  write_synth_dataset(dir + "/three", options);
  const auto one = dataset_files(dir + "/one");
  const auto three = dataset_files(dir + "/three");
  ASSERT_EQ(one.size(), 7u);
  EXPECT_TRUE(one == three) << "the same seed gave different files";

  write_synth_dataset(dir + "/other", small_options(8));
  const auto other = dataset_files(dir + "/other");
  ASSERT_EQ(other.size(), one.size());
  for (const auto& [name, bytes] : one) EXPECT_NE(bytes, other.at(name)) << name;
  // Splits differ from each other too (the split name is part of each pair's seed).
  EXPECT_NE(one.at("train/1.png"), one.at("val/1.png"));
}

TEST(Synth, WritesAlignedSplitsWithTheRightCountsAndSizes) {
  const std::string dir = temp_dir();
  SynthOptions options = small_options();
  options.size = 80;               // not a power of two
  std::vector<std::string> calls;  // "split done/total", in call order
  const SynthSummary summary = write_synth_dataset(dir, options, [&](const SynthProgress& p) {
    calls.push_back(p.split + " " + std::to_string(p.done) + "/" + std::to_string(p.total));
  });
  EXPECT_EQ(calls, (std::vector<std::string>{"train 1/3", "train 2/3", "train 3/3", "val 1/2",
                                             "val 2/2", "test 1/2", "test 2/2"}));
  ASSERT_EQ(summary.splits.size(), 3u);
  const std::map<std::string, int> expected = {{"train", 3}, {"val", 2}, {"test", 2}};
  for (const auto& split : summary.splits) {
    EXPECT_EQ(split.count, expected.at(split.split));
    EXPECT_GT(split.bytes, 0u);
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator(fs::path(dir) / split.split))
      names.insert(entry.path().filename().string());
    std::set<std::string> wanted;
    for (int i = 1; i <= split.count; ++i) wanted.insert(std::to_string(i) + ".png");
    EXPECT_EQ(names, wanted) << split.split;
    for (const auto& name : names) {
      const ImageInfo info = read_image_info((fs::path(dir) / split.split / name).string());
      EXPECT_EQ(info.format, ImageFormat::kPng);
      EXPECT_EQ(info.width, 160);
      EXPECT_EQ(info.height, 80);
      EXPECT_EQ(info.channels, 3);
    }
  }
}

TEST(Synth, FileHoldsLabelLeftAndPhotoRightOfThePairItsSeedRenders) {
  const std::string dir = temp_dir();
  const SynthOptions options = small_options(11);
  write_synth_dataset(dir, options);
  const Image file = read_image(dir + "/val/2.png");
  const SynthPair pair = render_synth_pair(synth_pair_seed(11, "val", 2), 64);
  EXPECT_EQ(file, synth_aligned_image(pair));
  for (int y = 0; y < 64; y += 9)
    for (int x = 0; x < 64; x += 7)
      for (int c = 0; c < 3; ++c) {
        ASSERT_EQ(file.at<uint8_t>(y, x, c), pair.label.at<uint8_t>(y, x, c));
        ASSERT_EQ(file.at<uint8_t>(y, 64 + x, c), pair.photo.at<uint8_t>(y, x, c));
      }
}

TEST(Synth, SkipsEmptySplits) {
  const std::string dir = temp_dir();
  SynthOptions options = small_options();
  options.val = 0;
  const SynthSummary summary = write_synth_dataset(dir, options);
  EXPECT_EQ(summary.splits[1].count, 0);
  EXPECT_FALSE(fs::exists(fs::path(dir) / "val"));
  EXPECT_TRUE(fs::exists(fs::path(dir) / "test" / "2.png"));
}

TEST(Synth, LabelHalfUsesOnlyPaletteColoursAndMatchesTheClassMap) {
  const std::string dir = temp_dir();
  write_synth_dataset(dir, small_options(3));
  for (const char* name : {"train/1.png", "train/3.png", "test/2.png"}) {
    const Image image = read_image(dir + "/" + name);
    int off_palette = 0;
    for (int y = 0; y < image.height; ++y)
      for (int x = 0; x < image.height; ++x)
        if (palette_index(&image.at<uint8_t>(y, x, 0)) < 0) ++off_palette;
    EXPECT_EQ(off_palette, 0) << name;
  }
  const SynthPair pair = render_synth_pair(123, 100);
  for (int y = 0; y < 100; ++y)
    for (int x = 0; x < 100; ++x)
      ASSERT_EQ(palette_index(&pair.label.at<uint8_t>(y, x, 0)), pair.classes[size_t(y * 100 + x)]);
}

TEST(Synth, LabelMapsHaveFacadeStructure) {
  const int size = 128;
  int openings_total = 0, row_aligned = 0, column_aligned = 0, with_shop = 0, with_balcony = 0,
      with_blind = 0;
  for (uint64_t seed = 0; seed < 30; ++seed) {
    const SynthPair pair = render_synth_pair(synth_pair_seed(1, "train", int(seed)), size);
    std::set<uint8_t> present(pair.classes.begin(), pair.classes.end());
    EXPECT_GE(present.size(), 3u) << "seed " << seed;
    EXPECT_TRUE(present.count(uint8_t(SynthClass::kWall))) << "seed " << seed;
    EXPECT_TRUE(present.count(uint8_t(SynthClass::kDoor))) << "seed " << seed;
    with_shop += present.count(uint8_t(SynthClass::kShop)) > 0;
    with_balcony += present.count(uint8_t(SynthClass::kBalcony)) > 0;
    with_blind += present.count(uint8_t(SynthClass::kBlind)) > 0;

    // Windows sit on a grid. Openings (a window with its blinds and shutters) share their
    // bottom edge with the others of their floor (blinds may cover a window's top) and their
    // centre with the others of their column.
    const auto openings = components(pair.classes, size, {SynthClass::kWindow, SynthClass::kBlind});
    EXPECT_GE(openings.size(), 4u) << "seed " << seed;
    for (const auto& o : openings) {
      ++openings_total;
      bool same_row = false, same_column = false;
      for (const auto& other : openings) {
        if (&other == &o) continue;
        same_row = same_row || other.y1 == o.y1;
        same_column = same_column || std::abs((other.x0 + other.x1) - (o.x0 + o.x1)) <= 1;
      }
      row_aligned += same_row;
      column_aligned += same_column;
    }

    // Doors stand on the ground: below a door is the street or the image's bottom edge.
    for (const auto& door : components(pair.classes, size, {SynthClass::kDoor})) {
      if (door.y1 == size) continue;
      EXPECT_EQ(pair.classes[size_t(door.y1 * size + (door.x0 + door.x1) / 2)],
                uint8_t(SynthClass::kBackground))
          << "seed " << seed << ": a door floating at row " << door.y1;
    }
  }
  EXPECT_GE(row_aligned, openings_total * 9 / 10) << "windows not aligned in rows";
  EXPECT_GE(column_aligned, openings_total * 9 / 10) << "windows not aligned in columns";
  // Layouts vary: optional parts appear in some images and not in others.
  EXPECT_GT(with_shop, 0);
  EXPECT_LT(with_shop, 30);
  EXPECT_GT(with_balcony, 0);
  EXPECT_LT(with_balcony, 30);
  EXPECT_GT(with_blind, 0);
  EXPECT_LT(with_blind, 30);
}

TEST(Synth, PhotoFollowsTheLabelButIsNotAFunctionOfIt) {
  const int size = 128;
  std::vector<double> wall_means;
  for (uint64_t seed = 0; seed < 6; ++seed) {
    const SynthPair pair = render_synth_pair(seed, size);
    // Texture: the wall region is not flat.
    double sum = 0, sum_sq = 0;
    int n = 0;
    std::map<uint8_t, std::set<int>> photo_colours;  // label class -> distinct photo colours
    std::map<uint8_t, int> pixels_of;                // label class -> pixel count
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x) {
        const uint8_t label = pair.classes[size_t(y * size + x)];
        const uint8_t* p = &pair.photo.at<uint8_t>(y, x, 0);
        photo_colours[label].insert(p[0] << 16 | p[1] << 8 | p[2]);
        ++pixels_of[label];
        if (label != uint8_t(SynthClass::kWall)) continue;
        const double luma = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
        sum += luma, sum_sq += luma * luma, ++n;
      }
    ASSERT_GT(n, size * size / 10) << "seed " << seed;
    const double mean = sum / n, stddev = std::sqrt(std::max(0.0, sum_sq / n - mean * mean));
    EXPECT_GT(stddev, 2.0) << "seed " << seed << ": flat wall";
    for (const auto& [label, colours] : photo_colours) {
      // Every class with more than a sliver of pixels shows more than one photo colour.
      if (pixels_of[label] < 20) continue;
      EXPECT_GT(colours.size(), 5u) << "seed " << seed << ": " << to_string(SynthClass(label));
    }
    wall_means.push_back(mean);

    // Structure: the photo changes most where the label does (edges line up).
    double edge = 0, flat = 0;
    int edges = 0, flats = 0;
    for (int y = 0; y < size; ++y)
      for (int x = 0; x + 1 < size; ++x) {
        const size_t i = size_t(y * size + x);
        double d = 0;
        for (int c = 0; c < 3; ++c)
          d += std::abs(int(pair.photo.at<uint8_t>(y, x + 1, c)) - pair.photo.at<uint8_t>(y, x, c));
        if (pair.classes[i] != pair.classes[i + 1])
          edge += d, ++edges;
        else
          flat += d, ++flats;
      }
    EXPECT_GT(edge / edges, 2.0 * flat / flats) << "seed " << seed;
  }
  // Per-image style: the same class looks different from one image to the next.
  const auto [lo, hi] = std::minmax_element(wall_means.begin(), wall_means.end());
  EXPECT_GT(*hi - *lo, 15.0);
}

TEST(Synth, AnySizeFrom64Works) {
  for (int size : {64, 65, 100, 257}) {
    const SynthPair pair = render_synth_pair(9, size);
    EXPECT_EQ(pair.label.width, size);
    EXPECT_EQ(pair.photo.height, size);
    EXPECT_EQ(pair.classes.size(), size_t(size) * size_t(size));
    const Image aligned = synth_aligned_image(pair);
    EXPECT_EQ(aligned.width, 2 * size);
    EXPECT_EQ(aligned.height, size);
  }
  EXPECT_THROW(render_synth_pair(0, 63), Error);
  EXPECT_THROW(render_synth_pair(0, 0), Error);
}

TEST(Synth, RejectsBadOptions) {
  const std::string dir = temp_dir();
  SynthOptions options = small_options();
  options.size = 32;
  EXPECT_THROW(write_synth_dataset(dir + "/a", options), Error);
  options = small_options();
  options.train = -1;
  EXPECT_THROW(write_synth_dataset(dir + "/a", options), Error);
  options = small_options();
  options.compression_level = 10;
  EXPECT_THROW(write_synth_dataset(dir + "/a", options), Error);
  EXPECT_FALSE(fs::exists(dir + "/a"));
  std::ofstream(dir + "/file") << "x";
  try {
    write_synth_dataset(dir + "/file", small_options());
    FAIL() << "wrote into a file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/file"), std::string::npos) << e.what();
  }
}

TEST(Synth, RefusesANonEmptySplitFolderUnlessForced) {
  const std::string dir = temp_dir();
  fs::create_directories(dir + "/test");
  std::ofstream(dir + "/test/mine.txt") << "user data";
  std::ofstream(dir + "/test/9.png") << "stale";
  try {
    write_synth_dataset(dir, small_options());
    FAIL() << "wrote into a non-empty folder";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/test"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("`force`"), std::string::npos) << e.what();
  }
  // Checked before anything was written.
  EXPECT_FALSE(fs::exists(dir + "/train"));
  EXPECT_EQ(read_bytes(dir + "/test/mine.txt"), "user data");

  SynthOptions options = small_options();
  options.force = true;
  write_synth_dataset(dir, options);
  EXPECT_EQ(read_bytes(dir + "/test/mine.txt"), "user data");  // not ours: left alone
  EXPECT_FALSE(fs::exists(dir + "/test/9.png"));               // a leftover pair: removed
  EXPECT_TRUE(fs::exists(dir + "/test/2.png"));
  EXPECT_TRUE(fs::exists(dir + "/train/3.png"));
}

TEST(Synth, CliWritesSummaryAndRefusesToOverwrite) {
  const std::string dir = temp_dir() + "/data";
  const std::string args =
      "data synth --out " + test::shell_quote(dir) + " --train 2 --val 1 --test 1 --size 64";
  auto result = test::run_cli(args + " --seed 5");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("train  2 pairs of 128x64"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("total  4 pairs"), std::string::npos) << result.output;
  EXPECT_TRUE(fs::exists(dir + "/test/1.png"));
  const std::string first = read_bytes(dir + "/train/2.png");

  result = test::run_cli(args);
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("error: " + dir + "/train"), std::string::npos) << result.output;
  EXPECT_EQ(read_bytes(dir + "/train/2.png"), first);

  result = test::run_cli(args + " --seed 5 --force");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(read_bytes(dir + "/train/2.png"), first);

  result = test::run_cli("data synth --out " + test::shell_quote(dir) + " --size 32");
  EXPECT_EQ(result.exit_code, 2) << result.output;
}

}  // namespace
}  // namespace pix2pix
