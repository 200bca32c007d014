// Long training checks (CTest label `slow`, not in the default run): a real run on the facades
// data set drives the validation L1 down.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "pix2pix/train/trainer.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;

TEST(TrainerSlow, FacadesRunDrivesValidationL1Down) {
  const std::string facades = test::shared_dir() + "/data/facades";
  if (!fs::exists(facades + "/train")) GTEST_SKIP() << "needs ../shared/data/facades";
  const std::string dir = test::temp_dir();
  TrainOptions options;
  options.data = facades;
  options.direction = Direction::kBtoA;  // labels -> photos
  options.name = "facades";
  options.runs_dir = dir;
  options.generator.net = "unet_128";  // 128 x 128 crops keep the run within minutes
  options.transform.load_size = 143;
  options.transform.crop_height = options.transform.crop_width = 128;
  options.schedule.n_epochs = 2;
  options.schedule.n_epochs_decay = 0;
  options.sample_every = 0;
  train(options);
  std::vector<double> val_l1;
  for (const auto& row : test::metrics_rows(dir + "/facades", "val"))
    val_l1.push_back(row["val_L1"].get<double>());
  ASSERT_EQ(val_l1.size(), 2u);
  // An untrained generator outputs about 0 (grey): its L1 to the photos is about 0.5.
  EXPECT_LT(val_l1.back(), 0.45) << "validation L1 per epoch: " << val_l1[0] << ", " << val_l1[1];
}

}  // namespace
}  // namespace pix2pix
