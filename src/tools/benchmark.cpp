#include "pix2pix/tools/benchmark.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <sys/resource.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/cuda.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>

#include "pix2pix/device.h"
#include "pix2pix/error.h"
#include "pix2pix/models/init.h"
#include "pix2pix/threads.h"
#include "pix2pix/train/trainer.h"

namespace pix2pix {

namespace {

// The running count (RecordFunction callbacks are plain function pointers).
std::atomic<bool> counting{false};
std::atomic<int64_t> counted_macs{0}, counted_forward{0}, counted_backward{0}, counted_matmul{0};
std::mutex count_mutex;

int64_t spatial(const at::IntArrayRef sizes) {
  int64_t n = 1;
  for (size_t d = 2; d < sizes.size(); ++d) n *= sizes[d];
  return n;
}

// Multiply-adds of one convolution: N x spatial size x numel(weight), where the spatial size is
// that of the convolution's output, or of a transposed convolution's input (the side where each
// position meets every weight once).
int64_t convolution_macs(at::IntArrayRef input, at::IntArrayRef weight, at::IntArrayRef stride,
                         at::IntArrayRef padding, at::IntArrayRef dilation, bool transposed) {
  int64_t weight_numel = 1;
  for (int64_t s : weight) weight_numel *= s;
  if (transposed) return input[0] * spatial(input) * weight_numel;
  int64_t out_spatial = 1;
  for (size_t d = 2; d < input.size(); ++d) {
    const size_t k = d - 2;
    const int64_t s = stride.size() > k ? stride[k] : stride[0];
    const int64_t p = padding.size() > k ? padding[k] : padding[0];
    const int64_t dl = dilation.size() > k ? dilation[k] : dilation[0];
    out_spatial *= (input[d] + 2 * p - dl * (weight[d] - 1) - 1) / s + 1;
  }
  return input[0] * out_spatial * weight_numel;
}

std::unique_ptr<at::ObserverContext> on_operator(const at::RecordFunction& fn) {
  if (!counting.load(std::memory_order_relaxed)) return nullptr;
  const char* name = fn.name();
  // pix2pix::convolution[_backward]: our bfloat16 convolutions called on oneDNN directly
  // (ComputeOptions::onednn_direct), recorded with the aten operations' arguments.
  const bool forward =
      std::strcmp(name, "aten::convolution") == 0 || std::strcmp(name, "pix2pix::convolution") == 0;
  const bool backward = !forward && (std::strcmp(name, "aten::convolution_backward") == 0 ||
                                     std::strcmp(name, "pix2pix::convolution_backward") == 0);
  // pix2pix::small_product(a, b): bfloat16 products with a small dimension on our kernels
  // (ComputeOptions::small_products).
  const bool mm =
      std::strcmp(name, "aten::mm") == 0 || std::strcmp(name, "pix2pix::small_product") == 0;
  const bool addmm = std::strcmp(name, "aten::addmm") == 0;
  if (!forward && !backward && !mm && !addmm) return nullptr;
  const auto inputs = fn.inputs();
  try {
    if (forward && inputs.size() >= 9) {
      // convolution(input, weight, bias, stride, padding, dilation, transposed, ...)
      counted_macs += convolution_macs(inputs[0].toTensor().sizes(), inputs[1].toTensor().sizes(),
                                       inputs[3].toIntVector(), inputs[4].toIntVector(),
                                       inputs[5].toIntVector(), inputs[6].toBool());
      ++counted_forward;
    } else if (backward && inputs.size() >= 11) {
      // convolution_backward(grad_output, input, weight, bias_sizes, stride, padding, dilation,
      // transposed, output_padding, groups, output_mask): each requested gradient of input or
      // weight costs one convolution.
      const bool transposed = inputs[7].toBool();
      const auto mask = inputs[10].toBoolList();
      const int64_t passes = (mask.get(0) ? 1 : 0) + (mask.get(1) ? 1 : 0);
      const at::Tensor input = inputs[1].toTensor();
      const int64_t weight_numel = inputs[2].toTensor().numel();
      // That side is the output (grad_output) of a convolution, the input of a transposed one.
      const at::Tensor side = transposed ? input : inputs[0].toTensor();
      counted_macs += passes * side.size(0) * spatial(side.sizes()) * weight_numel;
      ++counted_backward;
    } else if (mm || addmm) {
      // mm(a, b), addmm(bias, a, b): (M x K) times (K x N) is M K N multiply-adds.
      const size_t first = addmm ? 1 : 0;
      if (inputs.size() >= first + 2) {
        const at::Tensor a = inputs[first].toTensor(), b = inputs[first + 1].toTensor();
        if (a.dim() == 2 && b.dim() == 2) {
          counted_macs += a.size(0) * a.size(1) * b.size(1);
          ++counted_matmul;
        }
      }
    }
  } catch (const std::exception&) {
    // An unexpected schema: leave that call uncounted rather than fail the benchmark.
  }
  return nullptr;
}

double median_of(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void check(const BenchOptions& options) {
  if (options.size < 1) throw Error::option("size", "must be at least 1");
  if (options.batch < 1) throw Error::option("batch", "must be at least 1");
  if (options.steps < 1) throw Error::option("steps", "must be at least 1");
  if (options.warmup < 0) throw Error::option("warmup", "must be at least 0");
}

std::shared_ptr<Generator> build_generator(const BenchOptions& options) {
  check(options);
  at::manual_seed(static_cast<int64_t>(options.seed));
  auto generator = make_generator(options.generator);
  if (options.size % generator->size_multiple() != 0)
    throw Error::option("size", std::to_string(options.size) + " cannot be used with " +
                                    generator->options().net + ": must be a multiple of " +
                                    std::to_string(generator->size_multiple()));
  init_weights(*generator);
  place(*generator, options.compute);
  return generator;
}

// On a GPU the work is queued: a run's time is the time until the device has done it.
void wait_for_device(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

// Times `run` warmup + steps times; counts the FLOPs of the first run (a warm-up one when there
// is one, so the counting hook never touches a timed run).
BenchResult time_runs(const BenchOptions& options, const std::function<void()>& run) {
  BenchResult result;
  if (options.warmup == 0) {
    result.flops = count_convolution_flops(run).flops;
  }
  for (int64_t i = 0; i < options.warmup; ++i) {
    adapt_threads();
    if (i == 0)
      result.flops = count_convolution_flops(run).flops;
    else
      run();
  }
  for (int64_t i = 0; i < options.steps; ++i) {
    adapt_threads();
    wait_for_device(options.compute.device);
    const auto start = Clock::now();
    run();
    wait_for_device(options.compute.device);
    result.seconds.push_back(seconds_since(start));
  }
  result.median_s = median_of(result.seconds);
  result.min_s = *std::min_element(result.seconds.begin(), result.seconds.end());
  result.gflops_per_s = result.median_s > 0 ? result.flops / result.median_s / 1e9 : 0;
  return result;
}

}  // namespace

ConvolutionWork count_convolution_flops(const std::function<void()>& work) {
  std::lock_guard<std::mutex> lock(count_mutex);
  counted_macs = 0;
  counted_forward = 0;
  counted_backward = 0;
  counted_matmul = 0;
  const at::CallbackHandle handle = at::addGlobalCallback(at::RecordFunctionCallback(&on_operator)
                                                              .needsInputs(true)
                                                              .scopes({at::RecordScope::FUNCTION}));
  counting = true;
  try {
    work();
  } catch (...) {
    counting = false;
    at::removeCallback(handle);
    throw;
  }
  counting = false;
  at::removeCallback(handle);
  ConvolutionWork out;
  out.flops = 2.0 * static_cast<double>(counted_macs.load());
  out.forward_calls = counted_forward.load();
  out.backward_calls = counted_backward.load();
  out.matmul_calls = counted_matmul.load();
  return out;
}

double measure_matmul_peak(Precision precision, double seconds, int64_t size) {
  check_precision_supported(precision);  // oneDNN 2.6 has no bfloat16 matmul without it
  at::NoGradGuard no_grad;
  const auto dtype = precision == Precision::kBFloat16 ? at::kBFloat16 : at::kFloat;
  const at::Tensor a = at::rand({size, size}).to(dtype), b = at::rand({size, size}).to(dtype);
  at::Tensor c = at::empty({size, size}, a.options());
  at::mm_out(c, a, b);  // warm-up: first-call set-up (oneDNN primitive creation, thread pool)
  const double flops = 2.0 * static_cast<double>(size) * size * size;
  double best = 0;
  const auto start = Clock::now();
  int runs = 0;
  while (runs < 3 || seconds_since(start) < seconds) {
    const auto t = Clock::now();
    at::mm_out(c, a, b);
    best = std::max(best, flops / seconds_since(t) / 1e9);
    ++runs;
  }
  return best;
}

double peak_rss_mb() {
  struct rusage usage;
  std::memset(&usage, 0, sizeof(usage));
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

BenchResult bench_train(const BenchOptions& options) {
  auto generator = build_generator(options);
  DiscriminatorOptions d_options = options.discriminator;
  d_options.input_nc = options.generator.input_nc + options.generator.output_nc;
  auto discriminator = make_discriminator(d_options);
  init_weights(*discriminator);
  place(*discriminator, options.compute);
  discriminator->output_shape(options.size, options.size);  // throws if too small
  Pix2PixStep model(generator, discriminator, {}, {}, {});
  const c10::Device device = options.compute.device;
  const at::Tensor x =
      (at::rand({options.batch, options.generator.input_nc, options.size, options.size}) * 2 - 1)
          .to(device);
  const at::Tensor y =
      (at::rand({options.batch, options.generator.output_nc, options.size, options.size}) * 2 - 1)
          .to(device);
  StepStats stats;
  BenchResult result = time_runs(options, [&] { stats = model.step(x, y); });
  result.loss_g = stats.g_gan + 100.0 * stats.g_l1;
  result.loss_d = 0.5 * (stats.d_fake + stats.d_real);
  return result;
}

BenchResult bench_infer(const BenchOptions& options) {
  auto generator = build_generator(options);
  generator->eval();
  const at::Tensor x =
      (at::rand({options.batch, options.generator.input_nc, options.size, options.size}) * 2 - 1)
          .to(options.compute.device);
  at::NoGradGuard no_grad;
  return time_runs(options, [&] { generator->forward(x); });
}

}  // namespace pix2pix
