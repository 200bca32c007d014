// TensorBoard event files: CRC-32C against its check value, and files read back by an
// independent reader (tests/reference/read_tfevents.py: Python's protobuf runtime, our .proto
// compiled by protoc at test time, CRCs recomputed bit by bit) finding every scalar and image
// with the right step and value, for the writer alone and for a training run.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/crc32c.h"
#include "pix2pix/error.h"
#include "pix2pix/io/image_io.h"
#include "pix2pix/io/tensorboard.h"
#include "pix2pix/tools/synth.h"
#include "pix2pix/train/trainer.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

bool have_python_protobuf() {
  return test::required(test::run_command("command -v protoc >/dev/null && /usr/bin/python3 -c "
                                          "'import google.protobuf' 2>/dev/null")
                                .exit_code == 0,
                        "protoc and python3-protobuf");
}

// The events of `file`, as read_tfevents.py prints them; fails the test on a reader error.
std::vector<Json> read_events(const std::string& file) {
  const std::string work = fs::path(file).parent_path().string() + "/reader";
  const test::CommandResult result = test::run_python(
      test::shell_quote(test::source_dir() + "/tests/reference/read_tfevents.py") + " " +
      test::shell_quote(file) + " " +
      test::shell_quote(test::source_dir() + "/src/proto/tensorboard_event.proto") + " " +
      test::shell_quote(work));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  std::vector<Json> events;
  std::istringstream lines(result.output);
  std::string line;
  while (std::getline(lines, line))
    if (!line.empty() && line[0] == '{') events.push_back(Json::parse(line));
  return events;
}

std::string md5_of(const std::string& path) {
  const test::CommandResult result = test::run_command("md5sum " + test::shell_quote(path));
  return result.output.substr(0, 32);
}

std::vector<std::string> event_files(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0)
      files.push_back(entry.path().string());
  return files;
}

TEST(Crc32c, MatchesTheCheckValues) {
  // The published check value of CRC-32C (iSCSI) and RFC 3720's test vectors.
  EXPECT_EQ(detail::crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(detail::crc32c("", 0), 0u);
  const std::vector<uint8_t> zeros(32, 0x00), ones(32, 0xff);
  EXPECT_EQ(detail::crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(detail::crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  std::vector<uint8_t> ascending(32);
  for (int i = 0; i < 32; ++i) ascending[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(detail::crc32c(ascending.data(), ascending.size()), 0x46DD794Eu);
  const uint32_t crc = detail::crc32c("123456789", 9);
  EXPECT_EQ(detail::masked_crc32c("123456789", 9), ((crc >> 15) | (crc << 17)) + 0xa282ead8u);
}

TEST(TensorBoardWriter, NamesItsFileAndNeverReusesOne) {
  const std::string dir = test::temp_dir() + "/tb";
  TensorBoardWriter a(dir);
  TensorBoardWriter b(dir);  // the same second: a suffixed name, not a shared file
  EXPECT_NE(a.path(), b.path());
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  const std::string name = fs::path(a.path()).filename().string();
  EXPECT_EQ(name.rfind("events.out.tfevents.", 0), 0u) << name;
  EXPECT_NE(name.find(std::string(".") + host), std::string::npos) << name;
  EXPECT_EQ(event_files(dir).size(), 2u);
}

TEST(TensorBoardWriter, UnwritableFolderIsARuntimeError) {
  const std::string file = test::temp_dir() + "/a_file";
  std::ofstream(file) << "x";
  try {
    TensorBoardWriter writer(file + "/tb");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kRuntime);
    EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
  }
}

TEST(TensorBoardWriter, PythonReadsBackEveryScalarAndImage) {
  if (!have_python_protobuf()) GTEST_SKIP() << "needs protoc and python3-protobuf";
  const std::string dir = test::temp_dir();
  Image image(24, 10, 3);
  for (size_t i = 0; i < image.data.size(); ++i) image.data[i] = static_cast<uint8_t>(i * 7);
  const std::string png = dir + "/strip.png";
  write_png(png, image);
  std::string file;
  {
    TensorBoardWriter writer(dir + "/tb");
    file = writer.path();
    writer.add_scalars(5, {{"train/G_GAN", 0.6931}, {"train/G_L1", 0.25}});
    writer.add_scalar("val/val_L1", 9, 0.125);
    writer.add_scalar("train/big", 123456789012, -3.5e7);
    writer.add_png_file("samples/train", 10, png);
    Image gray(5, 7, 1);
    write_png(dir + "/gray.png", gray);
    writer.add_png_file("samples/gray", 11, dir + "/gray.png");
  }
  const std::vector<Json> events = read_events(file);
  ASSERT_EQ(events.size(), 6u);
  EXPECT_EQ(events[0]["file_version"], "brain.Event:2");
  EXPECT_EQ(events[1]["step"], 5);
  EXPECT_FLOAT_EQ(events[1]["scalars"]["train/G_GAN"].get<float>(), 0.6931f);
  EXPECT_FLOAT_EQ(events[1]["scalars"]["train/G_L1"].get<float>(), 0.25f);
  EXPECT_EQ(events[2]["step"], 9);
  EXPECT_FLOAT_EQ(events[2]["scalars"]["val/val_L1"].get<float>(), 0.125f);
  EXPECT_EQ(events[3]["step"], 123456789012);
  EXPECT_FLOAT_EQ(events[3]["scalars"]["train/big"].get<float>(), -3.5e7f);
  EXPECT_EQ(events[4]["step"], 10);
  const Json& strip = events[4]["images"]["samples/train"];
  EXPECT_EQ(strip["width"], 24);
  EXPECT_EQ(strip["height"], 10);
  EXPECT_EQ(strip["colorspace"], 3);
  EXPECT_EQ(strip["md5"], md5_of(png));
  EXPECT_TRUE(strip["png_signature_ok"].get<bool>());
  EXPECT_EQ(events[5]["images"]["samples/gray"]["colorspace"], 1);
  EXPECT_GT(events[1]["wall_time"].get<double>(), 1.6e9);  // seconds since 1970, not ms
}

TEST(TensorBoardWriter, ReaderRejectsACorruptedRecord) {
  if (!have_python_protobuf()) GTEST_SKIP() << "needs protoc and python3-protobuf";
  // The reader must be able to fail: flip one byte of a record's data.
  const std::string dir = test::temp_dir();
  std::string file;
  {
    TensorBoardWriter writer(dir + "/tb");
    file = writer.path();
    writer.add_scalar("x", 1, 2.0);
  }
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(-6, std::ios::end);
  f.put('\x55');
  f.close();
  const test::CommandResult result = test::run_python(
      test::shell_quote(test::source_dir() + "/tests/reference/read_tfevents.py") + " " +
      test::shell_quote(file) + " " +
      test::shell_quote(test::source_dir() + "/src/proto/tensorboard_event.proto") + " " +
      test::shell_quote(dir + "/reader"));
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("CRC mismatch"), std::string::npos) << result.output;
}

// A tiny training run (64x64, 6 pairs, 2 epochs).
TrainOptions tiny_run(const std::string& dir) {
  TrainOptions o = test::small_train_options(test::small_synth_data(dir), dir, "tb");
  o.schedule.n_epochs = 1;
  o.schedule.n_epochs_decay = 1;
  o.print_every = 2;
  o.sample_every = 4;
  o.save_every_epochs = 0;
  o.report = false;
  return o;
}

TEST(TensorBoardWriter, TrainingLogsEveryMetricsRowAndSample) {
  if (!have_python_protobuf()) GTEST_SKIP() << "needs protoc and python3-protobuf";
  const std::string dir = test::temp_dir();
  TrainOptions o = tiny_run(dir);
  o.validate_first = true;
  train(o);
  const std::string run = dir + "/runs/tb";
  const std::vector<std::string> files = event_files(run + "/tb");
  ASSERT_EQ(files.size(), 1u);
  const std::vector<Json> events = read_events(files[0]);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0]["file_version"], "brain.Event:2");

  // Every numeric field of every metrics.jsonl row (but its step) is a scalar "kind/key" at the
  // row's step, with the row's value (TensorBoard stores float32).
  int rows = 0, val_rows = 0;
  size_t next_event = 1;
  for (const Json& row : test::metrics_rows(run)) {
    const std::string line = row.dump();
    ++rows;
    const std::string kind = row["kind"];
    val_rows += kind == "val";
    // Events come in the rows' order; images may sit between them.
    while (next_event < events.size() && events[next_event]["scalars"].empty()) ++next_event;
    ASSERT_LT(next_event, events.size()) << "no event for row " << line;
    const Json& event = events[next_event++];
    EXPECT_EQ(event["step"], row["step"]) << line;
    int fields = 0;
    for (const auto& [key, value] : row.items()) {
      if (key == "step" || !value.is_number()) continue;
      ++fields;
      const std::string tag = kind + "/" + key;
      ASSERT_TRUE(event["scalars"].contains(tag)) << tag << " missing at step " << row["step"];
      EXPECT_FLOAT_EQ(event["scalars"][tag].get<float>(), static_cast<float>(value.get<double>()))
          << tag;
    }
    EXPECT_EQ(event["scalars"].size(), static_cast<size_t>(fields)) << line;
  }
  EXPECT_EQ(rows, 6 + 3);  // 12 steps / print_every 2, and val rows at steps 0, 6, 12
  EXPECT_EQ(val_rows, 3);

  // Every sample strip is an image with the file's exact bytes: train strips every 4 steps,
  // validation strips at the end of each epoch (and before training).
  std::map<std::string, std::pair<int64_t, std::string>> expected = {
      {"samples/step0000004.png", {4, "samples/train"}},
      {"samples/step0000008.png", {8, "samples/train"}},
      {"samples/step0000012.png", {12, "samples/train"}},
      {"samples/epoch000.png", {0, "samples/val"}},
      {"samples/epoch001.png", {6, "samples/val"}},
      {"samples/epoch002.png", {12, "samples/val"}},
  };
  size_t images = 0;
  for (const Json& event : events)
    if (event.contains("images")) images += event["images"].size();
  EXPECT_EQ(images, expected.size());
  for (const auto& [file, where] : expected) {
    const auto& [step, tag] = where;
    ASSERT_TRUE(fs::exists(run + "/" + file)) << file;
    const ImageInfo info = read_image_info(run + "/" + file);
    bool found = false;
    for (const Json& event : events)
      if (event.contains("images") && event["images"].contains(tag) && event["step"] == step) {
        const Json& image = event["images"][tag];
        found = image["md5"] == md5_of(run + "/" + file) && image["width"] == info.width &&
                image["height"] == info.height;
      }
    EXPECT_TRUE(found) << file << " not logged as " << tag << " at step " << step;
  }
}

TEST(TensorBoardWriter, NoTensorBoardWritesNoEvents) {
  const std::string dir = test::temp_dir();
  TrainOptions o = tiny_run(dir);
  o.tensorboard = false;
  o.max_steps = 2;
  train(o);
  EXPECT_FALSE(fs::exists(dir + "/runs/tb/tb"));
}

}  // namespace
}  // namespace pix2pix
