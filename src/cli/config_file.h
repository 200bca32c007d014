// `--config FILE` (TOML) for subcommands that declare it: the file's keys become flags placed in
// front of the command line's own, and every option keeps the last value it is given, so flags on
// the command line override the file.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace pix2pix::cli {

/// Declares `--config FILE` on `command` and makes its options take the last value given.
/// Call after every other option of `command` has been added.
void add_config_option(CLI::App* command);

/// Rewrites `args` (argv without the program name) when it names a subcommand of `app` that has
/// `--config FILE`: the option is removed and FILE's `key = value` lines are inserted right after
/// the subcommand's name as `--key value` (`key = true` as `--key`, `key = false` dropped).
/// Keys may use `-` or `_`. Throws pix2pix::Error (kInput) naming FILE for an unreadable file,
/// bad TOML, a [section], or a key the subcommand does not know.
std::vector<std::string> expand_config_file(const CLI::App& app, std::vector<std::string> args);

}  // namespace pix2pix::cli
