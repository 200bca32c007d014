// Where a training step's time goes: runs the pix2pix step (unet_256 + basic D, 256x256, batch 1)
// on random inputs and prints a table of ATen operators by self time (time inside the operator
// minus the operators it called), measured with a RecordFunction observer on the calling thread.
// Usage: profile_step [fp32|bf16] [steps=5] [size=256] [matmul_max_side=16]
// [matmul_max_side_transposed=8] [matmul_max_side_float32=2] [small_products=1] (ComputeOptions;
// 0 0 runs every bf16 convolution on oneDNN's convolution, and 16 0 0 every fp32 one as before
// the matrix-product forms; small_products 0 runs the bf16 matrix products on oneDNN's matmul
// only). Environment:
// PROFILE_SHAPES=1 one row per operator and input shapes, PROFILE_ROWS=N rows printed (40).
// A benchmark, never a test.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <fmt/core.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "pix2pix/models/compute.h"
#include "pix2pix/models/discriminator.h"
#include "pix2pix/models/generator.h"
#include "pix2pix/models/init.h"
#include "pix2pix/threads.h"
#include "pix2pix/train/trainer.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Frame {
  Clock::time_point start;
  double children = 0;
  std::string shapes;  // PROFILE_SHAPES=1: the inputs' types and sizes (read at entry)
  long faults = 0;     // minor page faults so far, at entry
};

long minor_faults() {
  rusage usage{};
  getrusage(RUSAGE_THREAD, &usage);
  return usage.ru_minflt;
}
struct Totals {
  double self = 0;
  int64_t calls = 0;
  long faults = 0;  // minor page faults inside (children included)
};

bool recording = false;
thread_local std::vector<Frame> stack;
std::map<std::string, Totals> totals;

bool by_shape = false;  // PROFILE_SHAPES=1: one row per operator and input shapes

// The inputs' types and sizes; inputs are only readable in the entry callback.
std::string input_shapes(const at::RecordFunction& fn) {
  std::string name;
  if (!by_shape || fn.scope() != at::RecordScope::FUNCTION) return name;
  for (const auto& input : fn.inputs())
    if (input.isTensor() && input.toTensor().defined()) {
      const at::Tensor& t = input.toTensor();
      std::string sizes;
      for (const int64_t size : t.sizes())
        sizes += (sizes.empty() ? "" : "x") + std::to_string(size);
      name += fmt::format(" {}[{}]{}", c10::toString(t.scalar_type()), sizes,
                          t.is_contiguous() ? "" : "nc");
    }
  return name;
}

std::unique_ptr<at::ObserverContext> on_enter(const at::RecordFunction& fn) {
  if (recording) stack.push_back({Clock::now(), 0, input_shapes(fn), minor_faults()});
  return nullptr;
}

void on_exit(const at::RecordFunction& fn, at::ObserverContext*) {
  if (!recording || stack.empty()) return;
  const Frame frame = stack.back();
  stack.pop_back();
  const double total = std::chrono::duration<double>(Clock::now() - frame.start).count();
  auto& t = totals[fn.name() + frame.shapes];
  t.self += total - frame.children;
  t.faults += minor_faults() - frame.faults;
  ++t.calls;
  if (!stack.empty()) stack.back().children += total;
}

}  // namespace

int main(int argc, char** argv) {
  pix2pix::tune_allocator();  // as the CLI
  const std::string precision = argc > 1 ? argv[1] : "bf16";
  const int steps = argc > 2 ? std::stoi(argv[2]) : 5;
  const int64_t size = argc > 3 ? std::stoll(argv[3]) : 256;
  using namespace pix2pix;
  at::set_num_threads(static_cast<int>(std::thread::hardware_concurrency()));  // as `bench`
  at::manual_seed(0);
  GeneratorOptions g_options;
  auto generator = make_generator(g_options);
  init_weights(*generator);
  DiscriminatorOptions d_options;
  d_options.input_nc = g_options.input_nc + g_options.output_nc;
  auto discriminator = make_discriminator(d_options);
  init_weights(*discriminator);
  ComputeOptions compute;
  compute.precision = parse_precision(precision);
  if (argc > 4) compute.matmul_max_side = std::stoll(argv[4]);
  if (argc > 5) compute.matmul_max_side_transposed = std::stoll(argv[5]);
  if (argc > 6) compute.matmul_max_side_float32 = std::stoll(argv[6]);
  if (argc > 7) compute.small_products = std::stoll(argv[7]) != 0;
  set_compute(*generator, compute);
  set_compute(*discriminator, compute);
  Pix2PixStep model(generator, discriminator, {}, {}, {});
  const at::Tensor x = at::rand({1, 3, size, size}) * 2 - 1;
  const at::Tensor y = at::rand({1, 3, size, size}) * 2 - 1;
  // Warm-up: oneDNN builds its kernels and the heap grows to its working size (page faults)
  // over the first few steps.
  for (int i = 0; i < 5; ++i) model.step(x, y);
  by_shape = std::getenv("PROFILE_SHAPES") != nullptr;
  const at::CallbackHandle handle = at::addGlobalCallback(
      at::RecordFunctionCallback(&on_enter, &on_exit)
          .needsInputs(by_shape)
          .scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION}));
  recording = true;
  const auto start = Clock::now();
  for (int i = 0; i < steps; ++i) model.step(x, y);
  const double wall = std::chrono::duration<double>(Clock::now() - start).count() / steps;
  recording = false;
  at::removeCallback(handle);
  std::vector<std::pair<std::string, Totals>> rows(totals.begin(), totals.end());
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.self > b.second.self; });
  double sum = 0;
  for (const auto& row : rows) sum += row.second.self;
  fmt::print("{} step: {:.3f} s wall per step (observer on), operators' self time {:.3f} s\n",
             precision, wall, sum / steps);
  fmt::print("{:<70} {:>10} {:>8} {:>7} {:>12}\n", "operator", "ms/step", "calls", "share",
             "faults/step");
  const char* rows_wanted = std::getenv("PROFILE_ROWS");  // rows printed (default 40)
  const size_t printed = std::min<size_t>(rows.size(), rows_wanted ? std::atoi(rows_wanted) : 40);
  for (size_t i = 0; i < printed; ++i)
    fmt::print("{:<70} {:>10.2f} {:>8} {:>6.1f}% {:>12}\n", rows[i].first,
               1e3 * rows[i].second.self / steps, rows[i].second.calls / steps,
               100.0 * rows[i].second.self / sum, rows[i].second.faults / steps);
  return 0;
}
