// The trainer's run-level additions for the report and the demo: the time budget
// (max_seconds: stop, validate, save, resume), validate_first (the untrained model's row) and
// report.html after every epoch. Kept apart from test_train_run.cpp; same tiny runs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "pix2pix/tools/report.h"
#include "pix2pix/tools/synth.h"
#include "pix2pix/train/trainer.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

TrainOptions tiny_run(const std::string& dir) {
  TrainOptions o = test::small_train_options(test::small_synth_data(dir), dir, "budget");
  o.print_every = 1;
  o.sample_every = 0;
  o.save_every_epochs = 0;
  o.tensorboard = false;
  return o;
}

// As the CLI wires it: report.html rewritten by report_logger() unless TrainOptions::report is off.
TrainResult train_reporting(const TrainOptions& o) {
  TrainContext context;
  if (o.report) context.loggers.push_back(report_logger(run_directory(o)));
  return train(o, context);
}

TEST(TrainBudget, StopsValidatesAndSavesWhenTimeIsUp) {
  const std::string dir = test::temp_dir();
  TrainOptions o = tiny_run(dir);
  o.schedule.n_epochs = 100000;  // only the budget can end this run
  o.schedule.n_epochs_decay = 0;
  o.max_seconds = 1.5;
  o.validate_first = true;
  const TrainResult result = train_reporting(o);
  EXPECT_TRUE(result.stopped_by_time);
  EXPECT_GT(result.steps, 0);
  const std::string run = dir + "/runs/budget";
  const auto val = test::metrics_rows(run, "val");
  ASSERT_GE(val.size(), 2u);
  // The untrained model first (step 0, epoch 0), the stopped model last (its final step).
  EXPECT_EQ(val.front()["step"], 0);
  EXPECT_EQ(val.front()["epoch"], 0);
  EXPECT_DOUBLE_EQ(val.front()["val_L1"].get<double>(), result.first_val_l1);
  EXPECT_EQ(val.back()["step"], result.steps);
  EXPECT_DOUBLE_EQ(val.back()["val_L1"].get<double>(), result.last_val_l1);
  EXPECT_EQ(test::metrics_rows(run, "train").size(), static_cast<size_t>(result.steps));
  for (const std::string file : {"report.html", "checkpoints/latest_state.pt",
                                 "checkpoints/best_net_G.pth", "samples/epoch000.png"})
    EXPECT_TRUE(fs::exists(run + "/" + file)) << file;

  // --resume continues after the stop (here for a few more steps).
  TrainOptions more = o;
  more.resume = true;
  more.max_seconds = 0;
  more.max_steps = result.steps + 3;
  const TrainResult resumed = train(more);
  EXPECT_EQ(resumed.steps, result.steps + 3);
  EXPECT_FALSE(resumed.stopped_by_time);
}

TEST(TrainBudget, WritesTheReportAfterEveryEpochUnlessTurnedOff) {
  const std::string dir = test::temp_dir();
  TrainOptions o = tiny_run(dir);
  o.schedule.n_epochs = 1;
  o.schedule.n_epochs_decay = 0;
  train_reporting(o);
  const std::string run = dir + "/runs/budget";
  ASSERT_TRUE(fs::exists(run + "/report.html"));
  std::ifstream in(run + "/report.html");
  const std::string html((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("data:image/png;base64,"), std::string::npos);  // samples/epoch001.png
  EXPECT_TRUE(test::metrics_rows(run, "val").size() == 1u);  // no validate_first: no step-0 row

  TrainOptions quiet = tiny_run(dir + "/b");
  quiet.schedule.n_epochs = 1;
  quiet.schedule.n_epochs_decay = 0;
  quiet.report = false;
  train_reporting(quiet);
  EXPECT_FALSE(fs::exists(dir + "/b/runs/budget/report.html"));
}

}  // namespace
}  // namespace pix2pix
