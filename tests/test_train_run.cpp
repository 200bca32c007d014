// The training loop: run-directory contents, exact resume, refusal to clobber a run, and the
// train command on the built-in synthetic data.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "pix2pix/error.h"
#include "pix2pix/pytorch_import.h"
#include "pix2pix/synth.h"
#include "pix2pix/trainer.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;

// A small synthetic dataset (64 x 64 halves) and options for a network that fits it.
TrainOptions small_run(const std::string& dir, const std::string& name) {
  if (!fs::exists(dir + "/data/train")) {
    SynthOptions synth;
    synth.train = 6;
    synth.val = 2;
    synth.test = 0;
    synth.size = 64;
    write_synth_dataset(dir + "/data", synth);
  }
  TrainOptions o;
  o.data = dir + "/data";
  o.name = name;
  o.runs_dir = dir + "/runs";
  o.generator.net = "unet";
  o.generator.num_downs = 6;
  o.generator.ngf = 8;
  o.discriminator.ndf = 8;
  o.transform.load_size = 72;
  o.transform.crop_height = o.transform.crop_width = 64;
  o.loader.workers = 2;
  o.schedule.n_epochs = 2;
  o.schedule.n_epochs_decay = 2;
  o.print_every = 2;
  o.sample_every = 3;
  o.save_every_epochs = 2;
  return o;
}

StateDict weights(const std::string& path) { return read_state_dict(path); }

void expect_same_weights(const std::string& a, const std::string& b) {
  const StateDict x = weights(a), y = weights(b);
  ASSERT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(x[i].first, y[i].first);
    EXPECT_TRUE(torch::equal(x[i].second, y[i].second)) << a << " vs " << b << ": " << x[i].first;
  }
}

TEST(TrainRun, WritesTheRunDirectory) {
  const std::string dir = test::temp_dir();
  TrainOptions o = small_run(dir, "full");
  std::vector<std::string> lines;
  const TrainResult result = train(o, [&](const std::string& line) { lines.push_back(line); });
  EXPECT_EQ(result.steps, 4 * 6);
  const std::string run = dir + "/runs/full";
  for (const std::string file :
       {"options.json", "model.txt", "metrics.jsonl", "checkpoints/latest_net_G.pth",
        "checkpoints/latest_net_D.pth", "checkpoints/latest_state.pt", "checkpoints/2_net_G.pth",
        "checkpoints/4_net_G.pth", "checkpoints/best_net_G.pth", "samples/step0000003.png"})
    EXPECT_TRUE(fs::exists(run + "/" + file)) << file;
  std::ifstream options_file(run + "/options.json");
  auto options = nlohmann::json::parse(options_file);
  EXPECT_EQ(options["options"]["ngf"], 8);
  EXPECT_NE(std::find(options["non_defaults"].begin(), options["non_defaults"].end(), "ngf"),
            options["non_defaults"].end());
  std::ifstream metrics(run + "/metrics.jsonl");
  int train_rows = 0, val_rows = 0;
  std::vector<double> lrs;
  for (std::string line; std::getline(metrics, line);) {
    auto row = nlohmann::json::parse(line);
    if (row["kind"] == "train") {
      ++train_rows;
      EXPECT_TRUE(row.contains("D_acc_real"));
      lrs.push_back(row["lr"].get<double>());
    } else {
      ++val_rows;
      EXPECT_GT(row["val_PSNR"].get<double>(), 0);
    }
  }
  EXPECT_EQ(train_rows, 12);
  EXPECT_EQ(val_rows, 4);
  // Linear decay over epochs 3 and 4: factors 1 - 1/3 and 1 - 2/3.
  EXPECT_DOUBLE_EQ(lrs.front(), 2e-4);
  EXPECT_NEAR(lrs.back(), 2e-4 * (1.0 / 3.0), 1e-12);
  EXPECT_FALSE(lines.empty());
  // Without --resume an existing run is left alone.
  EXPECT_THROW(train(o), Error);
}

TEST(TrainRun, ResumeContinuesExactly) {
  const std::string dir = test::temp_dir();
  TrainOptions straight = small_run(dir, "straight");
  straight.max_steps = 14;  // stops inside epoch 3 (6 steps per epoch)
  train(straight);
  TrainOptions first = small_run(dir, "resumed");
  first.max_steps = 8;  // stops inside epoch 2
  train(first);
  TrainOptions second = first;
  second.max_steps = 14;
  second.resume = true;
  const TrainResult result = train(second);
  EXPECT_EQ(result.steps, 14);
  const std::string a = dir + "/runs/straight/checkpoints/", b = dir + "/runs/resumed/checkpoints/";
  expect_same_weights(a + "latest_net_G.pth", b + "latest_net_G.pth");
  expect_same_weights(a + "latest_net_D.pth", b + "latest_net_D.pth");
  expect_same_weights(a + "latest_state.pt", b + "latest_state.pt");
  // Changing the model on resume is refused, naming the option.
  TrainOptions changed = second;
  changed.adam.lr = 1e-3;
  try {
    train(changed);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lr"), std::string::npos) << e.what();
  }
}

TEST(TrainRun, StartsFromGivenWeightsAndIsDeterministic) {
  const std::string dir = test::temp_dir();
  TrainOptions a = small_run(dir, "a");
  a.max_steps = 3;
  a.deterministic = true;
  train(a);
  TrainOptions b = a;
  b.name = "b";
  train(b);
  expect_same_weights(dir + "/runs/a/checkpoints/latest_net_G.pth",
                      dir + "/runs/b/checkpoints/latest_net_G.pth");
  // Fine-tuning: a run that starts from run a's weights and trains 0 steps ends with them.
  TrainOptions c = a;
  c.name = "c";
  c.max_steps = 0;
  c.schedule.n_epochs = 0;
  c.schedule.n_epochs_decay = 0;
  c.init_g = dir + "/runs/a/checkpoints/latest_net_G.pth";
  c.init_d = dir + "/runs/a/checkpoints/latest_net_D.pth";
  train(c);
  EXPECT_FALSE(fs::exists(dir + "/runs/c/checkpoints/latest_net_G.pth"));  // no epoch ran
  TrainOptions d = c;
  d.name = "d";
  d.init_g = dir + "/runs/a/checkpoints/latest_net_D.pth";  // D's weights into G: refused
  try {
    train(d);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("latest_net_D.pth"), std::string::npos) << e.what();
  }
  at::globalContext().setDeterministicAlgorithms(false, false);
}

TEST(TrainRun, AccumulateCountsOptimiserSteps) {
  const std::string dir = test::temp_dir();
  TrainOptions o = small_run(dir, "accumulated");
  o.accumulate = 4;  // 6 batches per epoch: steps of 4 and 2 batches
  o.schedule.n_epochs = 1;
  o.schedule.n_epochs_decay = 0;
  o.print_every = 1;
  EXPECT_EQ(train(o).steps, 2);
  std::ifstream metrics(dir + "/runs/accumulated/metrics.jsonl");
  std::vector<int64_t> epoch_steps;
  for (std::string line; std::getline(metrics, line);) {
    auto row = nlohmann::json::parse(line);
    if (row["kind"] == "train") epoch_steps.push_back(row["epoch_step"].get<int64_t>());
  }
  EXPECT_EQ(epoch_steps, (std::vector<int64_t>{4, 6}));  // batches consumed
}

TEST(TrainCommand, TrainsOnSyntheticDataAndRejectsBadFlags) {
  const std::string dir = test::temp_dir();
  ASSERT_EQ(test::run_cli("data synth --out " + dir + "/data --train 4 --val 2 --test 0 --size 64")
                .exit_code,
            0);
  auto result = test::run_cli("train --data " + dir + "/data --runs-dir " + dir +
                              "/runs --name cli --netG unet --num-downs 6 --ngf 8 --ndf 8 "
                              "--load-size 72 --crop-size 64 --n-epochs 1 --n-epochs-decay 0 "
                              "--print-every 2");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("validation"), std::string::npos) << result.output;
  EXPECT_TRUE(fs::exists(dir + "/runs/cli/checkpoints/latest_net_G.pth"));
  // The checkpoint is a generator the translate command takes.
  auto translated = test::run_cli("translate --netG unet --num-downs 6 --ngf 8 --weights " + dir +
                                  "/runs/cli/checkpoints/latest_net_G.pth --out " + dir + "/out " +
                                  dir + "/data/val/1.png");
  EXPECT_EQ(translated.exit_code, 0) << translated.output;
  EXPECT_TRUE(fs::exists(dir + "/out/1.png"));
  auto bad = test::run_cli("train --data " + dir + "/data --runs-dir " + dir +
                           "/runs --name bad --netG unet_256 --crop-size 100");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("--crop-size"), std::string::npos) << bad.output;
  auto missing =
      test::run_cli("train --data " + dir + "/nothing --name x --runs-dir " + dir + "/runs");
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_NE(missing.output.find("nothing"), std::string::npos) << missing.output;
}

}  // namespace
}  // namespace pix2pix
