#include "pix2pix/threads.h"

#include <ATen/Parallel.h>
#include <unistd.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

namespace pix2pix {

namespace {

using Clock = std::chrono::steady_clock;

struct Governor {
  int max_threads = 0;
  bool started = false;
  Clock::time_point last;
  double busy_ticks = 0, own_ticks = 0;  // the whole machine's busy time, and this process's
};
Governor governor;

// Busy clock ticks of all CPUs (/proc/stat's first line: all but idle, iowait and steal, the
// time a hypervisor gave to other machines, which fewer threads would not win back), or -1.
double machine_busy_ticks() {
  std::ifstream stat("/proc/stat");
  std::string cpu;
  double user, nice, system, idle, iowait, irq, softirq, steal;
  if (!(stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal) ||
      cpu != "cpu")
    return -1;
  return user + nice + system + irq + softirq;
}

// This process's user + system clock ticks, all threads (/proc/self/stat fields 14, 15), or -1.
double own_ticks() {
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (!std::getline(stat, line)) return -1;
  std::istringstream fields(line.substr(line.rfind(')') + 2));  // after "pid (comm) "
  std::string field;
  double utime = -1, stime = -1;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  return utime < 0 || stime < 0 ? -1 : utime + stime;
}

}  // namespace

void tune_allocator() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

void share_main_heap() {
#if defined(__GLIBC__)
  mallopt(M_ARENA_MAX, 1);
#endif
}

void set_adaptive_threads(int max_threads) {
  governor = Governor{};
  governor.max_threads = std::max(0, max_threads);
}

void adapt_threads() {
  Governor& g = governor;
  if (g.max_threads <= 0) return;
  const Clock::time_point now = Clock::now();
  if (g.started && now - g.last < std::chrono::seconds(1)) return;
  const double busy = machine_busy_ticks(), own = own_ticks();
  if (busy < 0 || own < 0) return;
  if (g.started) {
    const double seconds = std::chrono::duration<double>(now - g.last).count();
    const double ticks_per_second = static_cast<double>(sysconf(_SC_CLK_TCK));
    // Cores other processes kept busy, on average since the last look.
    const double others =
        std::max(0.0, (busy - g.busy_ticks) - (own - g.own_ticks)) / ticks_per_second / seconds;
    const int cores = static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
    const int free_cores = static_cast<int>(std::floor(cores - others + 0.5));
    const int threads = std::clamp(free_cores, 1, g.max_threads);
    if (threads != at::get_num_threads()) at::set_num_threads(threads);
  }
  g.started = true;
  g.last = now;
  g.busy_ticks = busy;
  g.own_ticks = own;
}

}  // namespace pix2pix
