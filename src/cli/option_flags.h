// The flags of the training options, named and described by the library's table of options
// (src/train/train_options.cpp), so that a flag, its help, options.json and the resume check
// cannot drift apart. Each command binds the flag to its own variable.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "train/train_options.h"

namespace pix2pix::cli {

/// The flag of a training option: --key with dashes (lambda_l1: --lambda-l1, init_G: --init-G),
/// or --no-key for an option the flag turns off (flip: --no-flip).
std::string option_flag(const detail::OptionField& field);

/// Adds the flag of the training option `key`, bound to `value`, with the table's help.
template <typename T>
CLI::Option* add_option_flag(CLI::App* app, const std::string& key, T& value) {
  const detail::OptionField& field = detail::option_field(key);
  return app->add_option(option_flag(field), value, field.doc);
}

/// Adds the switch of the boolean training option `key`: it sets `value` (or, for a negated
/// option, clears it).
CLI::Option* add_switch(CLI::App* app, const std::string& key, bool& value);

}  // namespace pix2pix::cli
