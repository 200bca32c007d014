// The CLI's subcommands. Each lives in its own cmd_<name>.cpp, declares its flags on a CLI11
// subcommand and returns the action to run once the command line has been parsed. To add a
// command: write cmd_<name>.cpp with an add_<name>_command and list it in main.cpp.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <vector>

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
Command add_train_command(CLI::App& parent);
Command add_test_command(CLI::App& parent);
Command add_eval_command(CLI::App& parent);
Command add_report_command(CLI::App& parent);
Command add_demo_command(CLI::App& parent);
Command add_launch_command(CLI::App& parent);  ///< cmd_launch.cpp: N data-parallel ranks
Command add_export_command(CLI::App& parent);  ///< cmd_export.cpp: a generator as ONNX
Command add_serve_command(CLI::App& parent);   ///< cmd_serve.cpp: a generator over HTTP

/// `data` and its subcommands (check, combine, synth, get): cmd_data*.cpp.
std::vector<Command> add_data_commands(CLI::App& parent);
Command add_data_check_command(CLI::App& data);
Command add_data_combine_command(CLI::App& data);
Command add_data_synth_command(CLI::App& data);
Command add_data_get_command(CLI::App& data);

/// `bench` and its subcommands (loader, train, infer): cmd_bench*.cpp.
std::vector<Command> add_bench_commands(CLI::App& parent);
Command add_bench_loader_command(CLI::App& bench);
Command add_bench_train_command(CLI::App& bench);  ///< cmd_bench_networks.cpp
Command add_bench_infer_command(CLI::App& bench);  ///< cmd_bench_networks.cpp

}  // namespace pix2pix::cli
