// The options table (src/train/train_options.cpp): every option of a run is written to
// options.json, read back by read_run_options, and classified for --resume, from one entry.
// The tests walk the table: a new option needs no test of its own.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "pix2pix/error.h"
#include "pix2pix/tools/results.h"
#include "pix2pix/train/trainer.h"
#include "test_util.h"
#include "train/train_options.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// A value of the same JSON type that differs from `value`; strings get a prefix (a name that
// no parser knows, for the fields read by name).
Json other_value(const Json& value) {
  if (value.is_boolean()) return !value.get<bool>();
  if (value.is_number_unsigned()) return value.get<uint64_t>() + 3;
  if (value.is_number_integer()) return value.get<int64_t>() + 3;
  if (value.is_number_float()) return value.get<double>() + 0.25;
  return "other-" + value.get<std::string>();
}

TEST(TrainOptionsTable, EveryFieldIsWrittenWithItsKey) {
  const Json json = detail::options_json(TrainOptions{});
  std::set<std::string> keys;
  for (const auto& field : detail::option_fields()) {
    EXPECT_TRUE(keys.insert(field.key).second) << "twice: " << field.key;
    EXPECT_TRUE(json.contains(field.key)) << field.key;
  }
  EXPECT_EQ(keys.size(), json.size());
}

// Each option in turn set to another value, written as options.json and read back as `test`
// and `translate` read a run: the same value, or (a name no parser knows) an error naming the
// file and the key.
TEST(TrainOptionsTable, EveryFieldRoundTripsThroughOptionsJson) {
  const std::string run = test::temp_dir() + "/runs/round";
  fs::create_directories(run);
  const Json defaults = detail::options_json(TrainOptions{});
  int changed = 0, by_name = 0;
  for (const auto& field : detail::option_fields()) {
    const std::string key = field.key;
    if (key == "name" || key == "runs_dir") continue;  // taken from where the run is
    Json values = defaults;
    values[key] = other_value(defaults.at(key));
    std::ofstream(run + "/options.json") << Json{{"options", values}}.dump();
    try {
      const Json read = detail::options_json(read_run_options(run));
      EXPECT_EQ(read.at(key), values.at(key)) << key;
      for (const auto& [other, value] : defaults.items())
        if (other != key && other != "name" && other != "runs_dir")
          EXPECT_EQ(read.at(other), value) << key << " changed " << other;
      ++changed;
    } catch (const Error& e) {
      ASSERT_TRUE(defaults.at(key).is_string()) << key << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find(run + "/options.json: option \"" + key + "\""),
                std::string::npos)
          << e.what();
      ++by_name;
    }
  }
  EXPECT_GT(changed, 40);
  EXPECT_GT(by_name, 10);
}

// --resume refuses a change to exactly the options not classified as free to change.
TEST(TrainOptionsTable, ResumeRefusesExactlyTheFixedOptions) {
  const Json stored = detail::options_json(TrainOptions{});
  int fixed = 0, free = 0;
  for (const auto& field : detail::option_fields()) {
    Json current = stored;
    current[field.key] = other_value(stored.at(field.key));
    const auto conflicts = detail::resume_conflicts(stored, current);
    if (field.may_change_on_resume) {
      EXPECT_TRUE(conflicts.empty()) << field.key;
      ++free;
    } else {
      ASSERT_EQ(conflicts.size(), 1u) << field.key;
      EXPECT_EQ(conflicts[0].rfind(std::string(field.key) + " (", 0), 0u) << conflicts[0];
      ++fixed;
    }
  }
  EXPECT_GT(fixed, 30);
  EXPECT_GT(free, 15);
}

// The library names a bad option by its field (the CLI shows the flag: tests/cli/).
TEST(TrainOptionsTable, ErrorsNameTheOptionField) {
  TrainOptions o;
  o.data = test::temp_dir();
  o.accumulate = 0;
  try {
    train(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.field(), "accumulate");
    EXPECT_EQ(std::string(e.what()), "accumulate: must be at least 1");
    EXPECT_EQ(e.kind(), ErrorKind::kInput);
  }
}

}  // namespace
}  // namespace pix2pix
