// The training loop: run-directory contents, exact resume, refusal to clobber a run, and the
// train command on the built-in synthetic data.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "pix2pix/data/dataset.h"
#include "pix2pix/data/loader.h"
#include "pix2pix/error.h"
#include "pix2pix/io/image_io.h"
#include "pix2pix/io/pytorch_import.h"
#include "pix2pix/tools/synth.h"
#include "pix2pix/train/trainer.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;

// A small synthetic dataset (64 x 64 halves) and options for a network that fits it.
TrainOptions small_run(const std::string& dir, const std::string& name) {
  TrainOptions o = test::small_train_options(test::small_synth_data(dir), dir, name);
  o.loader.workers = 2;
  o.schedule.n_epochs = 2;
  o.schedule.n_epochs_decay = 2;
  o.print_every = 2;
  o.sample_every = 3;
  o.save_every_epochs = 2;
  return o;
}

StateDict weights(const std::string& path) { return read_state_dict(path); }

// Every tensor equal, except the state's copy of the options (run names differ).
void expect_same_weights(const std::string& a, const std::string& b) {
  const StateDict x = weights(a), y = weights(b);
  ASSERT_EQ(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(x[i].first, y[i].first);
    if (x[i].first == "options") continue;
    EXPECT_TRUE(torch::equal(x[i].second, y[i].second)) << a << " vs " << b << ": " << x[i].first;
  }
}

TEST(TrainRun, WritesTheRunDirectory) {
  const std::string dir = test::temp_dir();
  TrainOptions o = small_run(dir, "full");
  std::vector<std::string> lines;
  TrainContext context;
  context.loggers.push_back(
      message_logger([&](const std::string& line) { lines.push_back(line); }));
  const TrainResult result = train(o, context);
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
  int train_rows = 0, val_rows = 0;
  std::vector<double> lrs;
  for (const auto& row : test::metrics_rows(run)) {
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

// bf16 too: the resumed run remakes each layer's bfloat16 working copy from the loaded float32
// weights, which is what the straight run's copies hold after every step.
TEST(TrainRun, ResumeContinuesExactlyInBf16) {
  PIX2PIX_SKIP_WITHOUT_BF16();
  const std::string dir = test::temp_dir();
  TrainOptions straight = small_run(dir, "straight");
  straight.deterministic = true;
  straight.compute.precision = Precision::kBFloat16;
  straight.max_steps = 12;
  train(straight);
  TrainOptions first = small_run(dir, "resumed");
  first.deterministic = true;
  first.compute.precision = Precision::kBFloat16;
  first.max_steps = 7;
  train(first);
  TrainOptions second = first;
  second.max_steps = 12;
  second.resume = true;
  EXPECT_EQ(train(second).steps, 12);
  at::globalContext().setDeterministicAlgorithms(false, false);
  const std::string a = dir + "/runs/straight/checkpoints/", b = dir + "/runs/resumed/checkpoints/";
  expect_same_weights(a + "latest_net_G.pth", b + "latest_net_G.pth");
  expect_same_weights(a + "latest_net_D.pth", b + "latest_net_D.pth");
  expect_same_weights(a + "latest_state.pt", b + "latest_state.pt");
}

TEST(TrainRun, ResumeContinuesExactly) {
  // The contract: with --deterministic, 20 steps straight and 10 + resume 10 give identical
  // weights, optimiser moments and generator states (6 steps per epoch: both stops fall inside
  // an epoch).
  const std::string dir = test::temp_dir();
  TrainOptions straight = small_run(dir, "straight");
  straight.deterministic = true;
  straight.max_steps = 20;
  train(straight);
  TrainOptions first = small_run(dir, "resumed");
  first.deterministic = true;
  first.max_steps = 10;
  train(first);
  TrainOptions second = first;
  second.max_steps = 20;
  second.resume = true;
  const TrainResult result = train(second);
  at::globalContext().setDeterministicAlgorithms(false, false);
  EXPECT_EQ(result.steps, 20);
  const std::string a = dir + "/runs/straight/checkpoints/", b = dir + "/runs/resumed/checkpoints/";
  expect_same_weights(a + "latest_net_G.pth", b + "latest_net_G.pth");
  expect_same_weights(a + "latest_net_D.pth", b + "latest_net_D.pth");
  expect_same_weights(a + "latest_state.pt", b + "latest_state.pt");
  // The state carries the run's options.
  bool has_options = false;
  for (const auto& [key, value] : weights(b + "latest_state.pt"))
    if (key == "options") {
      has_options = true;
      const std::string text(reinterpret_cast<const char*>(value.data_ptr<uint8_t>()),
                             static_cast<size_t>(value.numel()));
      EXPECT_EQ(nlohmann::json::parse(text)["options"]["ngf"], 8);
    }
  EXPECT_TRUE(has_options);
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
  std::vector<int64_t> epoch_steps;
  for (const auto& row : test::metrics_rows(dir + "/runs/accumulated", "train"))
    epoch_steps.push_back(row["epoch_step"].get<int64_t>());
  EXPECT_EQ(epoch_steps, (std::vector<int64_t>{4, 6}));  // batches consumed
}

// The parity contract, through the CLI: `pix2pix train` on one aligned pair, started from the
// reference's initial weights, ends 5 steps later with the reference's weights
// (reference_step.py --trace reseeds with seed + 1 before its first step: ours runs with --seed 1).
TEST(TrainCommand, MatchesTheReferenceOnOnePair) {
  if (!test::have_python_torch()) GTEST_SKIP() << "needs /usr/bin/python3 with torch";
  const std::string dir = test::temp_dir();
  ASSERT_EQ(test::run_cli("data synth --out " + dir + "/data --train 1 --val 0 --test 0 --size 128")
                .exit_code,
            0);
  const std::string aligned = list_images(dir + "/data/train").at(0);
  const auto [a, b] = split_aligned(read_image(aligned), aligned);
  write_png(dir + "/A.png", a);
  write_png(dir + "/B.png", b);
  auto reference = test::run_python(test::shared_dir() +
                                    "/bench/reference_step.py --netG unet_128 --threads 1 --seed 0 "
                                    "--steps 5 --pair " +
                                    dir + "/B.png " + dir + "/A.png --trace " + dir + "/ref");
  ASSERT_EQ(reference.exit_code, 0) << reference.output;
  auto ours = test::run_cli(
      "--threads 1 train --data " + dir + "/data --runs-dir " + dir + "/runs --name parity " +
      "--netG unet_128 --direction BtoA --preprocess none --crop-size 128 --no-flip "
      "--batch-size 1 --max-steps 5 --seed 1 --deterministic --transposed-conv native "
      "--sample-every 0 --init-G " +
      dir + "/ref/init_G.pth --init-D " + dir + "/ref/init_D.pth");
  ASSERT_EQ(ours.exit_code, 0) << ours.output;
  for (const char* net : {"G", "D"}) {
    const StateDict theirs = read_state_dict(dir + "/ref/final_" + net + ".pth");
    const StateDict mine =
        read_state_dict(dir + "/runs/parity/checkpoints/latest_net_" + std::string(net) + ".pth");
    ASSERT_EQ(theirs.size(), mine.size());
    double max_diff = 0;
    bool bitwise = true;
    for (size_t i = 0; i < mine.size(); ++i) {
      ASSERT_EQ(theirs[i].first, mine[i].first);
      const at::Tensor x = theirs[i].second.to(at::kDouble), y = mine[i].second.to(at::kDouble);
      if (x.numel() > 0) max_diff = std::max(max_diff, (x - y).abs().max().item<double>());
      bitwise = bitwise && torch::equal(theirs[i].second, mine[i].second);
    }
    EXPECT_LE(max_diff, 1e-5) << net;
    std::printf("parity %s: max abs difference %.3g, bitwise %s\n", net, max_diff,
                bitwise ? "equal" : "different");
  }
}

// --config FILE: TOML keys are the flags' names (with - or _), flags on the command line win,
// and a bad file is refused naming it.
TEST(TrainCommand, ConfigFileSetsOptionsAndFlagsOverrideIt) {
  const std::string dir = test::temp_dir();
  ASSERT_EQ(test::run_cli("data synth --out " + dir + "/data --train 2 --val 0 --test 0 --size 64")
                .exit_code,
            0);
  {
    std::ofstream config(dir + "/run.toml");
    config << "# a small run\n"
              "netG = \"unet\"\nnum_downs = 6\nngf = 8\nndf = 8\nload-size = 72\n"
              "crop-size = \"64\"\nlr = 0.001\nmax-steps = 1\nno-flip = true\n"
              "no-validate = false\n";
  }
  const std::string common =
      "train --data " + dir + "/data --runs-dir " + dir + "/runs --config " + dir + "/run.toml";
  auto result = test::run_cli(common + " --name cfg --lr 0.0005");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::ifstream options_file(dir + "/runs/cfg/options.json");
  const auto options = nlohmann::json::parse(options_file)["options"];
  EXPECT_EQ(options["ngf"], 8);
  EXPECT_EQ(options["num_downs"], 6);
  EXPECT_EQ(options["flip"], false);
  EXPECT_DOUBLE_EQ(options["lr"].get<double>(), 0.0005);  // the command line wins
  {
    std::ofstream config(dir + "/bad.toml");
    config << "ngf = 8\nlearning_rate = 0.1\n";
  }
  auto bad = test::run_cli("train --data " + dir + "/data --runs-dir " + dir +
                           "/runs --name bad --config " + dir + "/bad.toml");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("bad.toml"), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find("learning_rate"), std::string::npos) << bad.output;
  auto missing = test::run_cli("train --data " + dir + "/data --runs-dir " + dir +
                               "/runs --name missing --config " + dir + "/none.toml");
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_NE(missing.output.find("none.toml"), std::string::npos) << missing.output;
}

// A tiny run on synthetic data for the reliability tests (long enough to be interrupted).
std::string tiny_train(const std::string& dir, const std::string& name) {
  return std::string(test::cli_path()) + " --threads 1 train --data " + dir + "/data --runs-dir " +
         dir + "/runs --name " + name +
         " --netG unet --num-downs 6 --ngf 4 --ndf 4 --load-size 72 --crop-size 64 "
         "--n-epochs 50 --n-epochs-decay 50 --print-every 1 --sample-every 0 --no-validate";
}

void synth(const std::string& dir) {
  ASSERT_EQ(test::run_cli("data synth --out " + dir + "/data --train 4 --val 0 --test 0 --size 64")
                .exit_code,
            0);
}

// SIGTERM (or SIGINT): finish the step, save, exit 143 (130); --resume continues from there.
TEST(TrainCommand, SignalStopsWithACheckpoint) {
  const std::string dir = test::temp_dir();
  synth(dir);
  const std::string log = dir + "/log.txt";
  auto result = test::run_command(
      tiny_train(dir, "sig") + " > " + log + " 2>&1 & pid=$!; for i in $(seq 1 600); do grep -q " +
      "'step 3/' " + log + " && break; sleep 0.1; done; kill -TERM $pid; wait $pid; echo rc=$?");
  EXPECT_NE(result.output.find("rc=143"), std::string::npos) << result.output;
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("stopped by signal 15"), std::string::npos) << text;
  ASSERT_TRUE(fs::exists(dir + "/runs/sig/checkpoints/latest_state.pt"));
  auto resumed = test::run_command(tiny_train(dir, "sig") + " --resume --max-steps 6");
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming"), std::string::npos) << resumed.output;
}

// SIGKILL at 20 random moments (checkpoints are written every step, so many kills land inside a
// save): every time, --resume starts from a valid checkpoint.
TEST(TrainCommand, ResumesAfterSigkillAtRandomMoments) {
  const std::string dir = test::temp_dir();
  synth(dir);
  const std::string state = dir + "/runs/kill/checkpoints/latest_state.pt";
  // The first run until a checkpoint exists; then kill/resume cycles.
  auto first = test::run_command(tiny_train(dir, "kill") + " --save-every-steps 1 > " + dir +
                                 "/log0.txt 2>&1 & pid=$!; for i in $(seq 1 600); do test -f " +
                                 state + " && break; sleep 0.05; done; kill -KILL $pid; wait $pid");
  ASSERT_TRUE(fs::exists(state)) << first.output;
  std::mt19937 random(12345);
  std::uniform_int_distribution<int> delay_ms(50, 1500);
  int64_t last_step = -1;
  for (int round = 1; round <= 20; ++round) {
    const double seconds = delay_ms(random) / 1000.0;
    const std::string log = dir + "/log" + std::to_string(round) + ".txt";
    test::run_command(tiny_train(dir, "kill") + " --save-every-steps 1 --resume > " + log +
                      " 2>&1 & pid=$!; sleep " + std::to_string(seconds) +
                      "; kill -KILL $pid; wait $pid");
    std::ifstream in(log);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Killed before it got far enough to say anything is fine; an error is not.
    EXPECT_EQ(text.find("error"), std::string::npos) << "round " << round << ": " << text;
    // The checkpoint on disk is always complete and loadable.
    StateDict checkpoint;
    ASSERT_NO_THROW(checkpoint = read_state_dict(state)) << "round " << round;
    for (const auto& [key, value] : checkpoint)
      if (key == "global_step") {
        EXPECT_GE(value.item<int64_t>(), last_step) << "round " << round;
        last_step = value.item<int64_t>();
      }
  }
  auto last = test::run_command(tiny_train(dir, "kill") + " --resume --max-steps " +
                                std::to_string(last_step + 2));
  EXPECT_EQ(last.exit_code, 0) << last.output;
  EXPECT_NE(last.output.find("resuming"), std::string::npos) << last.output;
}

// A save that fails (here: a file-size limit, as a full disk would) names the file, exits 1,
// and leaves the previous checkpoint loadable.
TEST(TrainCommand, FailedSaveKeepsThePreviousCheckpoint) {
  const std::string dir = test::temp_dir();
  synth(dir);
  auto first = test::run_command(tiny_train(dir, "full") + " --max-steps 2");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const std::string checkpoints = dir + "/runs/full/checkpoints/";
  const StateDict before = read_state_dict(checkpoints + "latest_state.pt");
  // 64 blocks of 512 bytes: enough for the logs, too little for a checkpoint.
  auto limited =
      test::run_command("ulimit -f 64; " + tiny_train(dir, "full") + " --resume --max-steps 4");
  EXPECT_EQ(limited.exit_code, 1) << limited.output;
  EXPECT_NE(limited.output.find("checkpoints/latest_"), std::string::npos) << limited.output;
  EXPECT_NE(limited.output.find("File too large"), std::string::npos) << limited.output;
  const StateDict after = read_state_dict(checkpoints + "latest_state.pt");
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i)
    EXPECT_TRUE(torch::equal(before[i].second, after[i].second)) << before[i].first;
  for (const auto& entry : fs::directory_iterator(checkpoints))
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos)
        << "temporary left behind: " << entry.path();
}

// Weights that blow up: every step's loss is non-finite, updates are skipped, and after
// --max-nonfinite in a row the run stops with an error; the checkpoint holds finite weights.
TEST(TrainCommand, StopsAfterTooManyNonFiniteSteps) {
  const std::string dir = test::temp_dir();
  synth(dir);
  auto result = test::run_command(tiny_train(dir, "nan") + " --lr 1e38 --max-nonfinite 3");
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("non-finite"), std::string::npos) << result.output;
  // Weights and batch-norm statistics are finite (the optimiser's moments may overflow: g^2).
  const std::string checkpoints = dir + "/runs/nan/checkpoints/";
  for (const std::string file : {"latest_state.pt", "latest_net_G.pth", "latest_net_D.pth"})
    for (const auto& [key, value] : read_state_dict(checkpoints + file))
      if ((file.back() == 'h' || key.rfind("net_", 0) == 0) && value.is_floating_point())
        EXPECT_TRUE(at::isfinite(value).all().item<bool>()) << file << ": " << key;
}

// --on-bad-file fail (default): the header scan names the bad files before anything is written
// (exit 2, one line); skip leaves them out, logs and counts them.
TEST(TrainCommand, BadFilesFoundByTheScanFailOrAreSkipped) {
  const std::string dir = test::temp_dir();
  synth(dir);
  const std::vector<std::string> files = list_images(dir + "/data/train");
  ASSERT_EQ(files.size(), 4u);
  std::ofstream(files[1], std::ios::trunc).flush();  // zero bytes
  write_png(files[3], Image(63, 64, 3));             // odd width: not an A|B pair
  auto failed = test::run_command(tiny_train(dir, "fail") + " --max-steps 2");
  EXPECT_EQ(failed.exit_code, 2) << failed.output;
  EXPECT_NE(failed.output.find("error: " + files[1] + ": "), std::string::npos) << failed.output;
  EXPECT_NE(failed.output.find("and 1 more bad file"), std::string::npos) << failed.output;
  EXPECT_NE(failed.output.find("--on-bad-file skip"), std::string::npos) << failed.output;
  EXPECT_FALSE(fs::exists(dir + "/runs/fail")) << "nothing written";

  auto skipped = test::run_command(tiny_train(dir, "skip") + " --max-steps 4 --on-bad-file skip");
  ASSERT_EQ(skipped.exit_code, 0) << skipped.output;
  EXPECT_NE(skipped.output.find("skipping a bad file: " + files[3] + ": odd width"),
            std::string::npos)
      << skipped.output;
  const auto bad = test::metrics_rows(dir + "/runs/skip", "bad_file");
  ASSERT_EQ(bad.size(), 2u);
  EXPECT_EQ(bad[0]["error"].get<std::string>().rfind(files[1] + ": ", 0), 0u) << bad[0];
  const auto train_rows = test::metrics_rows(dir + "/runs/skip", "train");
  ASSERT_FALSE(train_rows.empty());
  EXPECT_EQ(train_rows.back()["bad_files"], 2);
  // Two pairs left, batch 1: an epoch is two steps.
  EXPECT_EQ(train_rows.back()["epoch"], 2);
}

// A file whose header is fine but whose data is cut off is found only when loaded. fail: the run
// stops at that batch with a checkpoint, exit 2, naming the file; --resume --on-bad-file skip goes
// on past it and counts it.
TEST(TrainCommand, FileThatFailsDuringTrainingStopsWithACheckpointOrIsSkipped) {
  const std::string dir = test::temp_dir();
  synth(dir);
  const std::vector<std::string> files = list_images(dir + "/data/train");
  // The third sample of epoch 1 (seed 0): two steps are trained before it.
  const std::string victim = files.at(epoch_order(files.size(), 0, 1, true).at(2));
  const auto size = fs::file_size(victim);
  fs::resize_file(victim, size * 6 / 10);
  ASSERT_NO_THROW(read_image_info(victim));
  auto failed = test::run_command(tiny_train(dir, "late") + " --max-steps 6");
  EXPECT_EQ(failed.exit_code, 2) << failed.output;
  EXPECT_NE(failed.output.find("error: " + victim + ": "), std::string::npos) << failed.output;
  EXPECT_NE(failed.output.find("at step 2; checkpoint saved"), std::string::npos) << failed.output;
  ASSERT_TRUE(fs::exists(dir + "/runs/late/checkpoints/latest_state.pt"));

  auto again = test::run_command(tiny_train(dir, "late") + " --max-steps 6 --resume");
  EXPECT_EQ(again.exit_code, 2) << again.output;  // still fail: the same batch again
  auto resumed =
      test::run_command(tiny_train(dir, "late") + " --max-steps 6 --resume --on-bad-file skip");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  const auto bad = test::metrics_rows(dir + "/runs/late", "bad_file");
  ASSERT_GE(bad.size(), 1u);
  EXPECT_EQ(bad[0]["step"], 2);
  EXPECT_EQ(bad[0]["error"].get<std::string>().rfind(victim + ": ", 0), 0u) << bad[0];
  const auto train_rows = test::metrics_rows(dir + "/runs/late", "train");
  EXPECT_EQ(train_rows.back()["step"], 6);
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

// A run that ends between two train rows logs the steps since the last one (here: a run shorter
// than print_every, and the tail of one that is not a multiple of it), and the loggers the
// caller adds see the same rows, messages and samples as the run's files.
TEST(TrainRun, LogsTheLastPartialIntervalAndReportsToItsLoggers) {
  struct Recorder : RunLogger {
    std::vector<nlohmann::json> rows;
    std::vector<std::string> lines, samples;
    std::vector<int64_t> saved_at;
    void message(const std::string& line) override { lines.push_back(line); }
    void metrics(const nlohmann::json& row) override { rows.push_back(row); }
    void sample(const std::string& tag, int64_t, const std::string& png) override {
      samples.push_back(tag + " " + png);
    }
    void saved(int64_t step) override { saved_at.push_back(step); }
  };
  const std::string dir = test::temp_dir();
  TrainOptions o = small_run(dir, "short");
  o.print_every = 100;
  o.max_steps = 3;
  auto recorder = std::make_shared<Recorder>();
  TrainContext context;
  context.loggers.push_back(recorder);
  EXPECT_EQ(train(o, context).steps, 3);
  auto train_rows = test::metrics_rows(dir + "/runs/short", "train");
  ASSERT_EQ(train_rows.size(), 1u);
  EXPECT_EQ(train_rows[0]["step"], 3);
  EXPECT_EQ(train_rows[0]["epoch_step"], 3);

  TrainOptions tail = small_run(dir, "tail");
  tail.print_every = 5;  // 6 steps per epoch, 2 epochs: rows at 5, 10 and the last, 12
  tail.schedule.n_epochs = 1;
  tail.schedule.n_epochs_decay = 1;
  EXPECT_EQ(train(tail).steps, 12);
  train_rows = test::metrics_rows(dir + "/runs/tail", "train");
  std::vector<int64_t> steps;
  for (const auto& row : train_rows) steps.push_back(row["step"].get<int64_t>());
  EXPECT_EQ(steps, (std::vector<int64_t>{5, 10, 12}));

  // The recorder saw what metrics.jsonl holds, in order, and the samples the run wrote.
  EXPECT_EQ(recorder->rows, test::metrics_rows(dir + "/runs/short"));
  EXPECT_EQ(recorder->samples, (std::vector<std::string>{"samples/train " + dir +
                                                         "/runs/short/samples/step0000003.png"}));
  EXPECT_EQ(recorder->saved_at, (std::vector<int64_t>{3}));
  ASSERT_FALSE(recorder->lines.empty());
  EXPECT_NE(recorder->lines.front().find("training " + dir + "/runs/short"), std::string::npos);
}

}  // namespace
}  // namespace pix2pix
