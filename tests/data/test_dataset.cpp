// Datasets on disk: aligned A|B images split into exact halves with the direction applied,
// paired folders matched by stem (never by position), single folders, every error naming its
// file or folder, the whole-dataset check and the A/B combine.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "pix2pix/data/dataset.h"
#include "pix2pix/error.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;
using test::put_image;

// An 8-bit image whose samples all differ and depend on `seed`.
Image make_image(int width, int height, int channels, int seed) {
  Image image(width, height, channels);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < channels; ++c)
        image.at<uint8_t>(y, x, c) = uint8_t((seed * 53 + (y * width + x) * channels + c) % 256);
  return image;
}

Image filled(int width, int height, int channels, uint8_t value) {
  Image image(width, height, channels);
  std::fill(image.data.begin(), image.data.end(), value);
  return image;
}

// Columns [x0, x1) of `image`, computed sample by sample.
Image columns(const Image& image, int x0, int x1) {
  Image out(x1 - x0, image.height, image.channels, image.type);
  for (int y = 0; y < image.height; ++y)
    for (int x = x0; x < x1; ++x)
      for (int c = 0; c < image.channels; ++c)
        out.at<uint8_t>(y, x - x0, c) = image.at<uint8_t>(y, x, c);
  return out;
}

// Runs `body`, expecting a pix2pix::Error whose message contains every one of `parts`.
void expect_error(const std::function<void()>& body, const std::vector<std::string>& parts) {
  try {
    body();
    ADD_FAILURE() << "no error thrown; expected one mentioning " << parts.front();
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const auto& part : parts)
      EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
  }
}

DatasetOptions options_for(const std::string& root, const std::string& split = "train") {
  DatasetOptions options;
  options.root = root;
  options.split = split;
  return options;
}

TEST(Dataset, AlignedSplitsIntoExactHalvesAndDirectionSwaps) {
  const std::string root = test::temp_dir();
  const Image ab = make_image(10, 4, 3, 1);
  const std::string path = put_image(root, "train/p.png", ab);
  put_image(root, "train/q.png", make_image(10, 4, 3, 2));

  DatasetOptions options = options_for(root);
  Dataset a_to_b(options);
  EXPECT_EQ(a_to_b.layout(), DatasetLayout::kAligned);
  ASSERT_EQ(a_to_b.size(), 2u);
  EXPECT_EQ(a_to_b.entry(0).name, "p");
  EXPECT_EQ(a_to_b.entry(0).path_a, path);
  EXPECT_EQ(a_to_b.entry(0).path_b, path);
  const Sample sample = a_to_b.load(0);
  EXPECT_EQ(sample.name, "p");
  ASSERT_EQ(sample.input.width, 5);
  EXPECT_EQ(sample.input, columns(ab, 0, 5));
  EXPECT_EQ(sample.target, columns(ab, 5, 10));
  // Spot values: A's first sample and B's first sample (column 5 of the whole).
  EXPECT_EQ(sample.input.at<uint8_t>(0, 0, 0), ab.at<uint8_t>(0, 0, 0));
  EXPECT_EQ(sample.target.at<uint8_t>(3, 0, 2), ab.at<uint8_t>(3, 5, 2));

  options.direction = Direction::kBtoA;
  const Sample swapped = Dataset(options).load(0);
  EXPECT_EQ(swapped.input, columns(ab, 5, 10));
  EXPECT_EQ(swapped.target, columns(ab, 0, 5));

  const auto halves = split_aligned(ab, "ab");
  EXPECT_EQ(join_aligned(halves.first, halves.second), ab);
}

TEST(Dataset, OddWidthAlignedImageIsAnErrorNamingTheFile) {
  const std::string root = test::temp_dir();
  const std::string path = put_image(root, "train/odd.png", make_image(7, 4, 3, 0));
  Dataset dataset(options_for(root));
  expect_error([&] { dataset.load(0); }, {path, "odd width 7"});
}

TEST(Dataset, PairedFoldersAreMatchedByStemNotPosition) {
  const std::string root = test::temp_dir();
  // Written in different orders, with distinct contents per stem and side.
  std::map<std::string, Image> a_images, b_images;
  int seed = 0;
  for (const std::string stem : {"a", "b", "c"}) a_images[stem] = make_image(6, 5, 3, ++seed);
  for (const std::string stem : {"c", "b", "a"}) b_images[stem] = make_image(6, 5, 3, ++seed * 7);
  for (const auto& [stem, image] : a_images) put_image(root, "A/train/" + stem + ".png", image);
  for (const std::string stem : {"c", "b", "a"})
    put_image(root, "B/train/" + stem + ".png", b_images[stem]);
  // Sorted by file name, A lists a.m.png before a.png but B lists a.jpg before a.m.jpg: pairing
  // by position would cross them.
  a_images["a.m"] = make_image(6, 5, 3, 100);
  b_images["a.m"] = make_image(6, 5, 3, 101);
  put_image(root, "A/train/a.m.png", a_images["a.m"]);
  put_image(root, "B/train/a.m.jpg", b_images["a.m"]);
  fs::rename(root + "/B/train/a.png", root + "/B/train/a.jpg");

  Dataset dataset(options_for(root));
  EXPECT_EQ(dataset.layout(), DatasetLayout::kPairedFolders);
  ASSERT_EQ(dataset.size(), 4u);
  for (size_t i = 0; i < dataset.size(); ++i) {
    const Sample sample = dataset.load(i);
    SCOPED_TRACE(sample.name);
    EXPECT_EQ(fs::path(dataset.entry(i).path_a).stem(), fs::path(dataset.entry(i).path_b).stem());
    EXPECT_EQ(sample.input, a_images.at(sample.name));
    EXPECT_EQ(sample.target, b_images.at(sample.name));
  }
  DatasetOptions options = options_for(root);
  options.direction = Direction::kBtoA;
  options.layout = DatasetLayout::kPairedFolders;
  const Sample swapped = Dataset(options).load(0);
  EXPECT_EQ(swapped.input, b_images.at(swapped.name));
  EXPECT_EQ(swapped.target, a_images.at(swapped.name));
}

TEST(Dataset, UnmatchedPairedFileIsAnErrorNamingIt) {
  const std::string root = test::temp_dir();
  for (const std::string stem : {"a", "b", "c"})
    put_image(root, "A/train/" + stem + ".png", filled(4, 4, 3, 1));
  for (const std::string stem : {"a", "b", "d"})
    put_image(root, "B/train/" + stem + ".png", filled(4, 4, 3, 2));
  expect_error(
      [&] { Dataset dataset(options_for(root)); },
      {root + "/A/train/c.png", "no file with stem 'c' in " + root + "/B/train", "1 more problem"});
}

TEST(Dataset, PairedSizeMismatchNamesBothFiles) {
  const std::string root = test::temp_dir();
  const std::string a = put_image(root, "A/train/x.png", filled(4, 4, 3, 1));
  const std::string b = put_image(root, "B/train/x.png", filled(6, 4, 3, 2));
  Dataset dataset(options_for(root));
  expect_error([&] { dataset.load(0); }, {a, b, "4x4", "6x4"});
}

TEST(Dataset, DuplicateStemsAreAnError) {
  const std::string root = test::temp_dir();
  const std::string png = put_image(root, "train/a.png", filled(4, 2, 3, 1));
  const std::string jpg =
      put_image(root, "train/a.jpg", filled(4, 2, 3, 1));  // PNG bytes, any name
  expect_error([&] { Dataset dataset(options_for(root)); }, {png, jpg, "same stem 'a'"});
}

TEST(Dataset, MissingRootSplitOrImagesAreErrorsNamingThePath) {
  const std::string root = test::temp_dir();
  expect_error([&] { Dataset dataset(options_for(root + "/nowhere")); },
               {root + "/nowhere", "does not exist"});
  put_image(root, "train/x.png", filled(4, 2, 3, 1));
  put_image(root, "val/x.png", filled(4, 2, 3, 1));
  fs::create_directories(root + "/test");
  fs::create_directories(root + "/notes");  // holds no images: not listed as a split
  expect_error(
      [&] { Dataset dataset(options_for(root, "trian")); },
      {root + "/trian", "split folder does not exist", "splits in " + root + ": train, val"});
  expect_error([&] { Dataset dataset(options_for(root, "test")); }, {root + "/test", "no images"});

  const std::string paired = root + "/paired";
  put_image(paired, "A/train/x.png", filled(4, 2, 3, 1));
  put_image(paired, "B/train/x.png", filled(4, 2, 3, 1));
  put_image(paired, "B/val/x.png", filled(4, 2, 3, 1));
  expect_error([&] { Dataset dataset(options_for(paired, "val")); },
               {paired + "/A/val", "splits in " + paired + "/A: train"});
  DatasetOptions options = options_for(root);
  options.layout = DatasetLayout::kPairedFolders;
  expect_error([&] { Dataset dataset(options); }, {root + "/A", "does not exist"});
  expect_error([] { parse_direction("AB"); }, {"direction", "'AB'"});
  EXPECT_EQ(parse_direction("BtoA"), Direction::kBtoA);
  EXPECT_EQ(parse_layout("paired"), DatasetLayout::kPairedFolders);
}

TEST(Dataset, GrayscaleBecomesThreeChannelsAndInputNcOneTakesLuma) {
  const std::string root = test::temp_dir();
  const Image gray = make_image(6, 3, 1, 4);
  put_image(root, "train/gray.png", gray);
  const Sample sample = Dataset(options_for(root)).load(0);
  ASSERT_EQ(sample.input.channels, 3);
  ASSERT_EQ(sample.target.channels, 3);
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 3; ++x)
      for (int c = 0; c < 3; ++c) {
        EXPECT_EQ(sample.input.at<uint8_t>(y, x, c), gray.at<uint8_t>(y, x, 0));
        EXPECT_EQ(sample.target.at<uint8_t>(y, x, c), gray.at<uint8_t>(y, x + 3, 0));
      }

  const Image rgb = make_image(6, 3, 3, 5);
  put_image(root, "val/rgb.png", rgb);
  DatasetOptions options = options_for(root, "val");
  options.input_nc = 1;
  const Sample luma = Dataset(options).load(0);
  ASSERT_EQ(luma.input.channels, 1);
  EXPECT_EQ(luma.target.channels, 3);
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 3; ++x) {
      const uint32_t r = rgb.at<uint8_t>(y, x, 0), g = rgb.at<uint8_t>(y, x, 1),
                     b = rgb.at<uint8_t>(y, x, 2);
      EXPECT_EQ(luma.input.at<uint8_t>(y, x, 0), (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
    }
  options.input_nc = 0;
  expect_error([&] { Dataset dataset(options); }, {"input_nc"});
}

TEST(Dataset, SingleFolderUsesTheSplitWhenPresentElseTheRoot) {
  const std::string root = test::temp_dir();
  const Image image = make_image(5, 4, 3, 9);
  put_image(root, "x.png", image);
  DatasetOptions options = options_for(root, "test");
  options.layout = DatasetLayout::kSingle;
  options.input_nc = 1;
  Dataset flat(options);
  ASSERT_EQ(flat.size(), 1u);
  EXPECT_TRUE(flat.entry(0).path_b.empty());
  const Sample sample = flat.load(0);
  EXPECT_EQ(sample.input, convert_channels(image, 1));
  EXPECT_TRUE(sample.target.empty());
  put_image(root, "test/y.png", image);
  put_image(root, "test/z.png", image);
  EXPECT_EQ(Dataset(options).size(), 2u);
}

TEST(Dataset, CheckCollectsEveryProblemWithoutStopping) {
  const std::string root = test::temp_dir();
  put_image(root, "train/good.png", make_image(8, 4, 3, 1));
  const std::string odd = put_image(root, "train/odd.png", make_image(7, 4, 3, 2));
  const std::string cut = put_image(root, "train/cut.png", make_image(64, 64, 3, 3));
  fs::resize_file(cut, fs::file_size(cut) / 2);
  put_image(root, "val/v.png", make_image(8, 4, 1, 4));
  std::FILE* notes = std::fopen((root + "/val/notes.txt").c_str(), "w");
  std::fclose(notes);

  CheckOptions options;
  options.root = root;
  const DatasetCheck check = check_dataset(options);
  EXPECT_EQ(check.layout, DatasetLayout::kAligned);
  ASSERT_EQ(check.splits.size(), 2u);
  const SplitCheck& train = check.splits[0];
  EXPECT_EQ(train.split, "train");
  EXPECT_EQ(train.pairs, 3u);
  ASSERT_EQ(train.problems.size(), 2u);
  EXPECT_EQ(train.problems[0].path, cut);  // sorted by path
  EXPECT_EQ(train.problems[1].path, odd);
  EXPECT_NE(train.problems[1].reason.find("odd width 7"), std::string::npos);
  EXPECT_EQ(train.images.at(0).sizes.at("8x4"), 1u);
  EXPECT_EQ(train.images.at(0).sizes.at("7x4"), 1u);
  const SplitCheck& val = check.splits[1];
  EXPECT_TRUE(val.problems.empty());
  EXPECT_EQ(val.images.at(0).formats.at("PNG gray 8-bit, 1 channel"), 1u);
  ASSERT_EQ(val.ignored.size(), 1u);
  EXPECT_EQ(check.problem_count(), 2u);
}

TEST(Dataset, CombinePairMatchesDepthChannelsAndResizes) {
  // 8-bit A with 16-bit B: both 16-bit, A scaled by 257; gray B becomes A's RGB.
  Image a = make_image(3, 2, 3, 1);
  Image b(3, 2, 1, SampleType::kUint16);
  for (int i = 0; i < 6; ++i) b.samples<uint16_t>()[i] = uint16_t(1000 * i + 7);
  const Image ab = combine_pair(a, b, false, "a", "b");
  ASSERT_EQ(ab.type, SampleType::kUint16);
  ASSERT_EQ(ab.width, 6);
  ASSERT_EQ(ab.channels, 3);
  EXPECT_EQ(ab.at<uint16_t>(1, 2, 1), a.at<uint8_t>(1, 2, 1) * 257);
  EXPECT_EQ(ab.at<uint16_t>(1, 4, 0), b.at<uint16_t>(1, 1, 0));
  EXPECT_EQ(ab.at<uint16_t>(1, 4, 2), b.at<uint16_t>(1, 1, 0));

  // Resizing keeps a flat colour flat (normalised weights) and reaches A's size.
  expect_error(
      [] { combine_pair(filled(4, 4, 3, 0), filled(8, 6, 3, 77), false, "a.png", "b.png"); },
      {"a.png", "b.png", "4x4", "8x6"});
  const Image resized = combine_pair(filled(4, 4, 3, 0), filled(8, 6, 3, 77), true, "a", "b");
  ASSERT_EQ(resized.width, 8);
  ASSERT_EQ(resized.height, 4);
  for (int y = 0; y < 4; ++y)
    for (int x = 4; x < 8; ++x) EXPECT_EQ(resized.at<uint8_t>(y, x, 1), 77);
}

}  // namespace
}  // namespace pix2pix
