// Tests for the Loader: every sample once per epoch, seeded shuffles, batches bitwise identical
// whatever the worker count, torch's global generator untouched, the same crop and flip for input
// and target, the decoded-sample cache, errors from workers reaching next() with the file's name,
// and prompt shutdown mid-epoch. Datasets are small aligned PNG folders written per test.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "pix2pix/data/dataset.h"
#include "pix2pix/data/loader.h"
#include "pix2pix/data/transforms.h"
#include "pix2pix/error.h"
#include "pix2pix/io/image_io.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;

// Writes `count` aligned images <dir>/train/<i>.png of (2 * half_width) x height. With
// equal_halves the A and B halves hold the same pixels; otherwise B is A's negative.
std::string write_aligned_dataset(const std::string& dir, int count, int half_width, int height,
                                  bool equal_halves, uint32_t seed = 1) {
  fs::create_directories(dir + "/train");
  std::mt19937 random(seed);
  for (int i = 0; i < count; ++i) {
    Image image(2 * half_width, height, 3);
    for (int y = 0; y < height; ++y) {
      for (int x = 0; x < half_width; ++x) {
        for (int c = 0; c < 3; ++c) {
          const auto value = static_cast<uint8_t>(random() & 0xff);
          image.at<uint8_t>(y, x, c) = value;
          image.at<uint8_t>(y, half_width + x, c) =
              equal_halves ? value : static_cast<uint8_t>(255 - value);
        }
      }
    }
    char name[32];
    std::snprintf(name, sizeof(name), "%03d.png", i);
    PngWriteOptions png;
    png.compression_level = 1;
    write_png(dir + "/train/" + name, image, png);
  }
  return dir;
}

std::shared_ptr<const Dataset> open_dataset(const std::string& root,
                                            Direction direction = Direction::kAtoB) {
  DatasetOptions options;
  options.root = root;
  options.direction = direction;
  return std::make_shared<const Dataset>(options);
}

// resize_and_crop scaled down for speed: 32x32 halves -> 36x36 -> random 32x32 crop, flips on.
TransformOptions small_transform() {
  TransformOptions options;
  options.load_size = 36;
  options.crop_height = 32;
  options.crop_width = 32;
  return options;
}

LoaderOptions loader_options(int64_t batch_size, int workers, uint64_t seed = 7) {
  LoaderOptions options;
  options.batch_size = batch_size;
  options.workers = workers;
  options.seed = seed;
  return options;
}

std::vector<Batch> read_epoch(Loader& loader, int64_t epoch) {
  loader.start_epoch(epoch);
  std::vector<Batch> batches;
  while (auto batch = loader.next()) batches.push_back(std::move(*batch));
  return batches;
}

void expect_same_batches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].names, b[i].names) << "batch " << i;
    ASSERT_TRUE(a[i].input.equal(b[i].input)) << "batch " << i;
    ASSERT_TRUE(a[i].target.equal(b[i].target)) << "batch " << i;
  }
}

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = write_aligned_dataset(test::temp_dir(), 10, 32, 32, /*equal_halves=*/false);
    dataset_ = open_dataset(root_);
    ASSERT_EQ(dataset_->size(), 10u);
  }
  std::string root_;
  std::shared_ptr<const Dataset> dataset_;
};

TEST_F(LoaderTest, EverySampleOncePerEpochInBatches) {
  Loader loader(dataset_, small_transform(), loader_options(3, 2));
  EXPECT_EQ(loader.batches_per_epoch(), 4);
  EXPECT_EQ(loader.size(), 10u);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    const std::vector<Batch> batches = read_epoch(loader, epoch);
    ASSERT_EQ(batches.size(), 4u);
    std::multiset<std::string> names;
    for (size_t i = 0; i < batches.size(); ++i) {
      const int64_t n = i + 1 < batches.size() ? 3 : 1;
      EXPECT_EQ(batches[i].input.sizes().vec(), (std::vector<int64_t>{n, 3, 32, 32}));
      EXPECT_EQ(batches[i].target.sizes().vec(), (std::vector<int64_t>{n, 3, 32, 32}));
      ASSERT_EQ(batches[i].names.size(), size_t(n));
      for (size_t j = 0; j < batches[i].names.size(); ++j) {
        names.insert(batches[i].names[j]);
        EXPECT_EQ(dataset_->entry(batches[i].indices[j]).name, batches[i].names[j]);
      }
    }
    EXPECT_EQ(names.size(), 10u);
    EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), 10u) << "duplicates";
    EXPECT_FALSE(loader.next().has_value()) << "the epoch is over";
  }

  LoaderOptions drop = loader_options(3, 1);
  drop.drop_last = true;
  Loader dropping(dataset_, small_transform(), drop);
  EXPECT_EQ(dropping.batches_per_epoch(), 3);
  const std::vector<Batch> batches = read_epoch(dropping, 0);
  ASSERT_EQ(batches.size(), 3u);
  for (const Batch& batch : batches) EXPECT_EQ(batch.input.size(0), 3);
}

TEST_F(LoaderTest, ShuffleDiffersBetweenEpochsAndIsReproducible) {
  Loader loader(dataset_, small_transform(), loader_options(1, 2, 42));
  read_epoch(loader, 0);
  const std::vector<size_t> order0 = loader.order();
  read_epoch(loader, 1);
  const std::vector<size_t> order1 = loader.order();
  EXPECT_NE(order0, order1);
  EXPECT_EQ(order0, epoch_order(10, 42, 0, true));
  EXPECT_EQ(order1, epoch_order(10, 42, 1, true));
  EXPECT_NE(epoch_order(10, 42, 0, true), epoch_order(10, 43, 0, true));
  std::vector<size_t> sorted = order0;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, epoch_order(10, 42, 0, false));

  Loader again(dataset_, small_transform(), loader_options(1, 1, 42));
  std::vector<std::string> names0, names_again;
  for (const Batch& batch : read_epoch(again, 1)) names_again.push_back(batch.names[0]);
  for (size_t index : order1) names0.push_back(dataset_->entry(index).name);
  EXPECT_EQ(names_again, names0);

  LoaderOptions in_order = loader_options(1, 1, 42);
  in_order.shuffle = false;
  Loader ordered(dataset_, small_transform(), in_order);
  const std::vector<Batch> batches = read_epoch(ordered, 5);
  for (size_t i = 0; i < batches.size(); ++i) EXPECT_EQ(batches[i].indices[0], i);
}

TEST_F(LoaderTest, WorkerCountDoesNotChangeBatchesBitwise) {
  std::vector<std::vector<Batch>> runs;
  for (int workers : {1, 3, 0}) {
    LoaderOptions options = loader_options(2, workers);
    options.prefetch = workers == 3 ? 1 : 4;
    Loader loader(dataset_, small_transform(), options);
    std::vector<Batch> all = read_epoch(loader, 0);
    for (Batch& batch : read_epoch(loader, 3)) all.push_back(std::move(batch));
    runs.push_back(std::move(all));
  }
  expect_same_batches(runs[0], runs[1]);
  expect_same_batches(runs[0], runs[2]);

  // The documented contract: sample at position p of epoch e uses
  // draw_transform_params(..., sample_seed(seed, e, p)).
  const Batch& batch = runs[0][1];  // epoch 0, positions 2 and 3
  for (int64_t j = 0; j < 2; ++j) {
    const Sample sample = dataset_->load(batch.indices[size_t(j)]);
    const TransformParams params = draw_transform_params(
        small_transform(), sample.input.width, sample.input.height, sample_seed(7, 0, 2 + j));
    EXPECT_TRUE(batch.input[j].equal(apply_transform(sample.input, small_transform(), params)));
    EXPECT_TRUE(batch.target[j].equal(apply_transform(sample.target, small_transform(), params)));
  }
  // Different seeds: different batches.
  Loader other(dataset_, small_transform(), loader_options(2, 2, 8));
  const std::vector<Batch> other_batches = read_epoch(other, 0);
  bool any_different = false;
  for (size_t i = 0; i < other_batches.size(); ++i)
    any_different |= !other_batches[i].input.equal(runs[0][i].input);
  EXPECT_TRUE(any_different);
}

TEST_F(LoaderTest, TorchGlobalGeneratorAndThreadCountUntouched) {
  at::manual_seed(123);
  const at::Tensor expected = at::rand({8});
  at::manual_seed(123);
  const int threads = at::get_num_threads();
  {
    Loader loader(dataset_, small_transform(), loader_options(2, 2));
    read_epoch(loader, 0);
    read_epoch(loader, 1);
  }
  Loader inline_loader(dataset_, small_transform(), loader_options(2, 0));
  read_epoch(inline_loader, 0);
  EXPECT_TRUE(at::rand({8}).equal(expected)) << "the loader drew from torch's generator";
  EXPECT_EQ(at::get_num_threads(), threads);
}

TEST_F(LoaderTest, CacheGivesIdenticalBatches) {
  LoaderOptions cached = loader_options(3, 2);
  cached.cache = true;
  Loader with_cache(dataset_, small_transform(), cached);
  Loader without_cache(dataset_, small_transform(), loader_options(3, 2));
  for (int64_t epoch = 0; epoch < 3; ++epoch)
    expect_same_batches(read_epoch(with_cache, epoch), read_epoch(without_cache, epoch));
}

TEST_F(LoaderTest, RestartingAnEpochMidwayStartsOver) {
  Loader loader(dataset_, small_transform(), loader_options(1, 2));
  loader.start_epoch(0);
  ASSERT_TRUE(loader.next().has_value());
  ASSERT_TRUE(loader.next().has_value());
  const std::vector<Batch> epoch1 = read_epoch(loader, 1);
  EXPECT_EQ(epoch1.size(), 10u);
  Loader fresh(dataset_, small_transform(), loader_options(1, 1));
  expect_same_batches(epoch1, read_epoch(fresh, 1));
  // next() without start_epoch starts epoch 0.
  Loader implicit(dataset_, small_transform(), loader_options(1, 2));
  EXPECT_TRUE(implicit.next().has_value());
  EXPECT_EQ(implicit.epoch(), 0);
}

TEST_F(LoaderTest, InvalidOptionsAreRejected) {
  EXPECT_THROW(Loader(dataset_, small_transform(), loader_options(0, 1)), Error);
  EXPECT_THROW(Loader(dataset_, small_transform(), loader_options(1, -1)), Error);
  LoaderOptions no_prefetch = loader_options(1, 1);
  no_prefetch.prefetch = 0;
  EXPECT_THROW(Loader(dataset_, small_transform(), no_prefetch), Error);
  TransformOptions bad = small_transform();
  bad.load_size = 16;  // smaller than the 32 crop
  EXPECT_THROW(Loader(dataset_, bad, loader_options(1, 1)), Error);
  EXPECT_THROW(Loader(nullptr, small_transform(), loader_options(1, 1)), Error);
}

// Aligned images whose halves are equal: whatever crop and flip a sample gets, input == target.
TEST(LoaderPairs, InputAndTargetGetTheSameCropAndFlip) {
  const std::string root = write_aligned_dataset(test::temp_dir(), 12, 40, 48, true, 3);
  for (Direction direction : {Direction::kAtoB, Direction::kBtoA}) {
    TransformOptions transform;
    transform.load_size = 60;
    transform.crop_height = 32;
    transform.crop_width = 48;
    Loader loader(open_dataset(root, direction), transform, loader_options(4, 2));
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      for (const Batch& batch : read_epoch(loader, epoch)) {
        EXPECT_EQ(batch.input.sizes().vec(), (std::vector<int64_t>{4, 3, 32, 48}));
        EXPECT_TRUE(batch.input.equal(batch.target));
      }
    }
  }
}

// A file that fails to decode surfaces from next() as the worker's pix2pix::Error, naming the
// file, at its batch's position; the other batches still arrive.
TEST(LoaderErrors, BadFileIsReportedByNextWithItsName) {
  const std::string root = write_aligned_dataset(test::temp_dir(), 6, 32, 32, false);
  const std::string bad = root + "/train/003.png";
  fs::resize_file(bad, fs::file_size(bad) / 2);  // header intact, pixel data truncated
  for (int workers : {0, 1, 3}) {
    for (bool cache : {false, true}) {
      LoaderOptions options = loader_options(1, workers);
      options.cache = cache;
      Loader loader(open_dataset(root), small_transform(), options);
      for (int64_t epoch = 0; epoch < 2; ++epoch) {
        loader.start_epoch(epoch);
        int good = 0, errors = 0;
        for (int64_t i = 0; i < loader.batches_per_epoch(); ++i) {
          try {
            auto batch = loader.next();
            ASSERT_TRUE(batch.has_value());
            ++good;
          } catch (const Error& e) {
            ++errors;
            EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
          }
        }
        EXPECT_FALSE(loader.next().has_value());
        EXPECT_EQ(good, 5) << "workers " << workers;
        EXPECT_EQ(errors, 1) << "workers " << workers;
      }
    }
  }
}

// An image smaller than the crop is a transform error; it too names the file.
TEST(LoaderErrors, ImageSmallerThanTheCropNamesTheFile) {
  const std::string root = write_aligned_dataset(test::temp_dir(), 2, 32, 32, false);
  TransformOptions transform;
  transform.preprocess = Preprocess::kCrop;
  transform.crop_height = 48;
  transform.crop_width = 48;
  Loader loader(open_dataset(root), transform, loader_options(1, 2));
  loader.start_epoch(0);
  try {
    loader.next();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(root + "/train/00"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("32x32"), std::string::npos) << e.what();
  }
}

// preprocess none keeps each image's size, so a batch of two sizes cannot be stacked.
TEST(LoaderErrors, DifferentSizesInOneBatchAreAnError) {
  const std::string dir = test::temp_dir();
  write_aligned_dataset(dir + "/a", 1, 32, 32, false);
  write_aligned_dataset(dir + "/b", 1, 40, 32, false);
  fs::create_directories(dir + "/mixed/train");
  fs::copy_file(dir + "/a/train/000.png", dir + "/mixed/train/x.png");
  fs::copy_file(dir + "/b/train/000.png", dir + "/mixed/train/y.png");
  TransformOptions transform;
  transform.preprocess = Preprocess::kNone;
  LoaderOptions options = loader_options(2, 1);
  options.shuffle = false;
  Loader loader(open_dataset(dir + "/mixed"), transform, options);
  try {
    loader.next();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("y.png"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("batch size 1"), std::string::npos) << e.what();
  }
  options.batch_size = 1;
  Loader one_by_one(open_dataset(dir + "/mixed"), transform, options);
  EXPECT_EQ(read_epoch(one_by_one, 0).size(), 2u);
}

// Destroying a loader whose workers are busy (and whose queue is full) returns promptly.
TEST(LoaderShutdown, DestroyingMidEpochReturnsPromptly) {
  const std::string root = write_aligned_dataset(test::temp_dir(), 24, 256, 256, false);
  const auto dataset = open_dataset(root);
  TransformOptions transform;  // the full-size default: 256 -> 286 -> 256
  using Clock = std::chrono::steady_clock;
  for (int consumed : {0, 1, 3}) {
    LoaderOptions options = loader_options(2, 2);
    options.prefetch = 2;
    auto loader = std::make_unique<Loader>(dataset, transform, options);
    loader->start_epoch(0);
    for (int i = 0; i < consumed; ++i) ASSERT_TRUE(loader->next().has_value());
    const auto start = Clock::now();
    loader.reset();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    EXPECT_LT(seconds, 2.0) << "after " << consumed << " batches";
  }
  // Never started: no work to stop.
  auto idle = std::make_unique<Loader>(dataset, transform, loader_options(1, 4));
  idle.reset();
}

}  // namespace
}  // namespace pix2pix
