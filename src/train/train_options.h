// Every TrainOptions field described once (its options.json key, and whether a --resume may
// change it): options.json, reading a run's options back and the resume check all derive from
// this one table (train_options.cpp).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pix2pix/train/trainer.h"

namespace pix2pix::detail {

/// One option of a training run.
struct OptionField {
  const char* key;            ///< its key in options.json
  bool may_change_on_resume;  ///< steers only logging, speed or the run's length
};

/// The options, in options.json's order.
const std::vector<OptionField>& option_fields();

/// {key: value} of every option.
nlohmann::json options_json(const TrainOptions& options);

/// Sets the options present in `json` (an options.json "options" object); the others are left
/// as they are. Throws Error naming `file` and the key for a value of the wrong type or name.
void read_options_json(const nlohmann::json& json, const std::string& file, TrainOptions* options);

/// The options a --resume may not change that differ between `stored` and `current`, as
/// "key (old -> new)".
std::vector<std::string> resume_conflicts(const nlohmann::json& stored,
                                          const nlohmann::json& current);

}  // namespace pix2pix::detail
