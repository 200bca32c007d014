// `pix2pix data`: dataset tools. Each subcommand lives in cmd_data_<name>.cpp.
#include "commands.h"

namespace pix2pix::cli {

std::vector<Command> add_data_commands(CLI::App& parent) {
  CLI::App* data = parent.add_subcommand("data", "Dataset tools: check, combine, synth, get");
  data->require_subcommand(1);
  return {add_data_check_command(*data), add_data_combine_command(*data),
          add_data_synth_command(*data), add_data_get_command(*data)};
}

std::vector<Command> add_bench_commands(CLI::App& parent) {
  CLI::App* bench = parent.add_subcommand("bench", "Benchmarks that print tables or JSON");
  bench->require_subcommand(1);
  return {add_bench_loader_command(*bench), add_bench_train_command(*bench),
          add_bench_infer_command(*bench)};
}

}  // namespace pix2pix::cli
