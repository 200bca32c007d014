// Every TrainOptions field described once (its options.json key, whether a resume may change it,
// its help text): options.json, reading a run's options back, the resume check and the CLI's
// flags (name and help) all derive from this one table (train_options.cpp).
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
  bool negated_flag;          ///< the CLI's flag turns it off: --no-<key> (flip: --no-flip)
  const char* doc;            ///< one line on what it does: the CLI's help
};

/// The option whose options.json key is `key`; throws std::out_of_range for another.
const OptionField& option_field(const std::string& key);

/// The options, in options.json's order.
const std::vector<OptionField>& option_fields();

/// {key: value} of every option.
nlohmann::json options_json(const TrainOptions& options);

/// Sets the options present in `json` (an options.json "options" object); the others are left
/// as they are. Throws Error naming `file` and the key for a value of the wrong type or name.
void read_options_json(const nlohmann::json& json, const std::string& file, TrainOptions* options);

/// The options object of a run's options.json ({"options": {...}, ...}; a bare object of
/// options works too). Throws Error naming `path` when it cannot be read or is not such JSON.
nlohmann::json read_options_file(const std::string& path);

/// The options a --resume may not change that differ between `stored` and `current`, as
/// "key (old -> new)".
std::vector<std::string> resume_conflicts(const nlohmann::json& stored,
                                          const nlohmann::json& current);

}  // namespace pix2pix::detail
