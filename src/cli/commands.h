// The CLI's subcommands. Each lives in its own cmd_<name>.cpp, declares its flags on a CLI11
// subcommand and returns the action to run once the command line has been parsed. To add a
// command: write cmd_<name>.cpp with an add_<name>_command and list it in main.cpp.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace pix2pix::cli {

/// A parsed subcommand's action; returns the process exit status.
using Action = std::function<int()>;

/// One registered subcommand.
struct Command {
  CLI::App* app = nullptr;
  Action run;
};

Command add_model_command(CLI::App& parent);
Command add_translate_command(CLI::App& parent);

}  // namespace pix2pix::cli
