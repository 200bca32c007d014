// `pix2pix launch --nproc N -- train ...`: data-parallel training on one machine without
// torchrun. Starts N copies of this binary (/proc/self/exe) with RANK, LOCAL_RANK, WORLD_SIZE,
// LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set, forwards SIGINT/SIGTERM to them, and waits.
// When one fails, the others are stopped (SIGTERM, then SIGKILL after a grace period) and the
// launcher exits 1 naming the failed rank.
#include <fmt/core.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <thread>

#include "commands.h"
#include "pix2pix/error.h"

namespace pix2pix::cli {

namespace {

struct LaunchFlags {
  int nproc = 1;                          ///< processes to start
  std::string master_addr = "127.0.0.1";  ///< where rank 0's rendezvous store listens
  int master_port = 29500;                ///< its port
  double grace_seconds = 30;              ///< after a failure: SIGTERM, then SIGKILL after this
  std::vector<std::string> command;       ///< the pix2pix command line each rank runs
};

// The children's pids, for the signal handler (written before the handler is installed).
constexpr int kMaxProcesses = 1024;
pid_t g_children[kMaxProcesses];
std::atomic<int> g_child_count{0};
std::atomic<int> g_signal{0};

extern "C" void forward_signal(int signal) {
  g_signal.store(signal);
  const int count = g_child_count.load();
  for (int i = 0; i < count; ++i)
    if (g_children[i] > 0) kill(g_children[i], signal);
}

std::string describe(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("was killed by signal {}", WTERMSIG(status));
  return "stopped";
}

// The number of cores each rank gets by default (`--threads`), so that N ranks do not each
// start a thread per core.
int threads_per_rank(int nproc) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / nproc);
}

int run_launch(const LaunchFlags& flags) {
  if (flags.command.empty())
    throw Error("launch", "no command to run: pix2pix launch --nproc N -- train ...");
  if (flags.nproc > kMaxProcesses) throw Error("--nproc", "at most 1024 processes");
  std::vector<std::string> args{"pix2pix"};
  const bool has_threads =
      std::any_of(flags.command.begin(), flags.command.end(),
                  [](const std::string& arg) { return arg.rfind("--threads", 0) == 0; });
  if (!has_threads) {
    args.push_back("--threads");
    args.push_back(std::to_string(threads_per_rank(flags.nproc)));
  }
  args.insert(args.end(), flags.command.begin(), flags.command.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  struct sigaction action {};
  action.sa_handler = forward_signal;
  sigemptyset(&action.sa_mask);
  const pid_t launcher = getpid();
  for (int rank = 0; rank < flags.nproc; ++rank) {
    const pid_t pid = fork();
    if (pid < 0) {
      forward_signal(SIGKILL);
      throw Error(
          "launch",
          std::string("cannot start rank ") + std::to_string(rank) + ": " + std::strerror(errno),
          ErrorKind::kRuntime);
    }
    if (pid == 0) {
      // Its own process group: a terminal's Ctrl-C reaches the launcher alone, which forwards
      // it once (two would make train exit without saving). It dies with the launcher.
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != launcher) _exit(1);
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(flags.nproc).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(flags.nproc).c_str(), 1);
      setenv("MASTER_ADDR", flags.master_addr.c_str(), 1);
      setenv("MASTER_PORT", std::to_string(flags.master_port).c_str(), 1);
      execv("/proc/self/exe", argv.data());
      fmt::print(stderr, "error: launch: rank {}: cannot run /proc/self/exe: {}\n", rank,
                 std::strerror(errno));
      _exit(127);
    }
    g_children[rank] = pid;
    g_child_count.store(rank + 1);
    if (rank == 0) {
      sigaction(SIGINT, &action, nullptr);
      sigaction(SIGTERM, &action, nullptr);
    }
  }

  int running = flags.nproc;
  std::optional<std::pair<int, int>> failed;  // rank, status
  std::optional<std::chrono::steady_clock::time_point> kill_at;
  while (running > 0) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, kill_at ? WNOHANG : 0);
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0) break;  // no children left
    if (pid == 0) {      // waiting out the grace period
      if (std::chrono::steady_clock::now() >= *kill_at) {
        for (int i = 0; i < flags.nproc; ++i)
          if (g_children[i] > 0) kill(g_children[i], SIGKILL);
        kill_at.reset();
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      continue;
    }
    const auto child = std::find(g_children, g_children + flags.nproc, pid);
    if (child == g_children + flags.nproc) continue;
    const int rank = static_cast<int>(child - g_children);
    *child = 0;
    --running;
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok && !failed && g_signal.load() == 0) {
      failed = {rank, status};
      fmt::print(stderr, "launch: rank {} {}; stopping the other ranks\n", rank, describe(status));
      for (int i = 0; i < flags.nproc; ++i)
        if (g_children[i] > 0) kill(g_children[i], SIGTERM);
      kill_at = std::chrono::steady_clock::now() +
                std::chrono::milliseconds(static_cast<int64_t>(flags.grace_seconds * 1000));
    }
  }
  g_child_count.store(0);
  if (failed)
    throw Error(
        "launch",
        fmt::format("rank {} of {} {}", failed->first, flags.nproc, describe(failed->second)),
        ErrorKind::kRuntime);
  if (g_signal.load() != 0) return 128 + g_signal.load();
  return 0;
}

}  // namespace

Command add_launch_command(CLI::App& parent) {
  auto flags = std::make_shared<LaunchFlags>();
  CLI::App* app = parent.add_subcommand(
      "launch",
      "Run a command as N data-parallel processes on this machine (torchrun-style variables)");
  app->add_option("--nproc", flags->nproc, "processes (ranks) to start")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app->add_option("--master-addr", flags->master_addr, "rendezvous address (rank 0 listens)")
      ->capture_default_str();
  app->add_option("--master-port", flags->master_port, "rendezvous TCP port")
      ->check(CLI::Range(1, 65535))
      ->capture_default_str();
  app->add_option("--grace", flags->grace_seconds,
                  "seconds the other ranks get to stop after one fails, before SIGKILL")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("command", flags->command,
                  "the pix2pix command each rank runs, after '--' (e.g. -- train --data ...); "
                  "--threads cores/N is added unless given")
      ->required();
  return {app, [flags] { return run_launch(*flags); }};
}

}  // namespace pix2pix::cli
