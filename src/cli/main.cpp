// The pix2pix command-line tool: global flags, subcommand dispatch and the one place where
// exceptions become messages and exit codes (2: bad usage or input, 1: runtime failure).
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <fmt/core.h>
#include <signal.h>
#include <torch/version.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "commands.h"
#include "config_file.h"
#include "messages.h"
#include "pix2pix/cpu.h"
#include "pix2pix/error.h"
#include "pix2pix/threads.h"

namespace {

// OpenMP threads that spin while they wait for each other hold the cores that other processes,
// or a descheduled thread of ours, need: beside other work the step collapsed (issue 22). libgomp
// reads its settings when it is loaded, before main(); .preinit_array runs earlier still. A
// user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins. Measurements: docs/cpus.md.
void default_openmp_waiting(int, char**, char**) {
  if (!std::getenv("OMP_WAIT_POLICY") && !std::getenv("GOMP_SPINCOUNT"))
    setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
}
__attribute__((section(".preinit_array"),
               used)) void (*const kDefaultOpenmpWaiting)(int, char**,
                                                          char**) = &default_openmp_waiting;

// The first line of a message (libtorch appends C++ stack traces after it).
std::string first_line(const std::string& message) { return message.substr(0, message.find('\n')); }

}  // namespace

int main(int argc, char** argv) {
  pix2pix::tune_allocator();  // large buffers stay in the heap: ~3x faster steps (threads.h)
  // A file-size limit (ulimit -f) then fails the write with EFBIG, which is reported with the
  // file's name and leaves the previous file intact, instead of killing the process.
  signal(SIGXFSZ, SIG_IGN);

  CLI::App app{
      "pix2pix: paired image-to-image translation with conditional GANs (Isola et al. 2017)",
      "pix2pix"};
  app.set_version_flag("--version",
                       fmt::format("pix2pix {} (libtorch {}.{}.{})", PIX2PIX_VERSION,
                                   TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH));
  // Every command's help in one text: the CLI reference in docs/cli.md (scripts/cli_reference.sh).
  app.set_help_all_flag("--help-all", "print the help of every command and exit");
  app.require_subcommand(1);
  app.fallthrough();
  int threads = 0;
  app.add_option("--threads", threads, "intra-op threads (default: all cores)")
      ->check(CLI::Range(1, 1024));

  std::vector<pix2pix::cli::Command> commands = {
      pix2pix::cli::add_model_command(app),  pix2pix::cli::add_translate_command(app),
      pix2pix::cli::add_train_command(app),  pix2pix::cli::add_test_command(app),
      pix2pix::cli::add_eval_command(app),   pix2pix::cli::add_report_command(app),
      pix2pix::cli::add_demo_command(app),   pix2pix::cli::add_launch_command(app),
      pix2pix::cli::add_export_command(app), pix2pix::cli::add_serve_command(app),
  };
  for (auto* add : {&pix2pix::cli::add_data_commands, &pix2pix::cli::add_bench_commands})
    for (auto& command : (*add)(app)) commands.push_back(std::move(command));

  try {
    // `--config FILE` becomes flags before the command line's own (config_file.h); CLI11 takes
    // the arguments in reverse order.
    std::vector<std::string> args =
        pix2pix::cli::expand_config_file(app, std::vector<std::string>(argv + 1, argv + argc));
    std::reverse(args.begin(), args.end());
    app.parse(args);
    // The environment's CPU settings, checked before any work (pix2pix/cpu.h).
    pix2pix::cpu_features();
    pix2pix::portable_kernels_forced();
  } catch (const pix2pix::Error& e) {
    fmt::print(stderr, "error: {}\n", pix2pix::cli::message_of(e, app));
    return 2;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string command = "pix2pix";
    for (const CLI::App* sub : pix2pix::cli::parsed_chain(app))
      if (sub != &app) command += " " + sub->get_name();
    fmt::print(stderr, "error: {} (see '{} --help')\n", first_line(e.what()), command);
    return 2;
  }

  // Debian's libtorch defaults to one thread; use every core unless told otherwise, and fewer
  // while other processes keep some busy (pix2pix/threads.h).
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads > 0 ? threads : cores);
  pix2pix::set_adaptive_threads(threads > 0 ? 0 : cores);
  try {
    for (const auto& command : commands)
      if (command.app->parsed()) return command.run();
  } catch (const pix2pix::Error& e) {
    fmt::print(stderr, "error: {}\n", pix2pix::cli::message_of(e, app));
    return e.kind() == pix2pix::ErrorKind::kInput ? 2 : 1;
  } catch (const c10::Error& e) {
    fmt::print(stderr, "error: {}\n", first_line(e.what_without_backtrace()));
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", first_line(e.what()));
    return 1;
  }
  return 2;
}
