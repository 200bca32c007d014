// Forward + backward time of each convolution of unet_256 (batch 1, 256x256), once on oneDNN's
// convolution and once as im2col and a matrix product, interleaved; prints the medians and their
// ratio per layer. bf16: the measurement behind matmul_max_side (16) and
// matmul_max_side_transposed (8). fp32: oneDNN (transposed layers as TransposedConv::kAuto runs
// them without its matrix-product form: the gradient form from 8 pixels, torch's below) against
// the matrix products of matmul_max_side_float32 and matmul_max_side_transposed.
// Usage: layer_speed [reps=15] [bf16|fp32]. A benchmark, never a test.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include "models/convolution.h"
#include "pix2pix/models/compute.h"
#include "pix2pix/threads.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Layer {
  bool transposed;
  int64_t in, out, side;  // channels in and out, input height = width
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  pix2pix::tune_allocator();  // as the CLI
  const int reps = argc > 1 ? std::stoi(argv[1]) : 15;
  const pix2pix::Precision precision = pix2pix::parse_precision(argc > 2 ? argv[2] : "bf16");
  at::set_num_threads(static_cast<int>(std::thread::hardware_concurrency()));  // as `bench`
  using namespace pix2pix;
  // unet_256: eight 4x4 stride-2 convolutions down, eight transposed ones up (skips concatenated).
  const std::vector<Layer> layers = {
      {false, 3, 64, 256},   {false, 64, 128, 128}, {false, 128, 256, 64}, {false, 256, 512, 32},
      {false, 512, 512, 16}, {false, 512, 512, 8},  {false, 512, 512, 4},  {false, 512, 512, 2},
      {true, 512, 512, 1},   {true, 1024, 512, 2},  {true, 1024, 512, 4},  {true, 1024, 512, 8},
      {true, 1024, 256, 16}, {true, 512, 128, 32},  {true, 256, 64, 64},   {true, 128, 3, 128}};
  ComputeOptions conv_form, matmul_form;
  conv_form.precision = matmul_form.precision = precision;
  conv_form.matmul_max_side = conv_form.matmul_max_side_transposed = 0;
  conv_form.matmul_max_side_float32 = 0;
  matmul_form.matmul_max_side = matmul_form.matmul_max_side_transposed = 1 << 20;
  matmul_form.matmul_max_side_float32 = 1 << 20;
  fmt::print("{} forward + backward per layer, median of {} (ms), {} threads\n",
             to_string(precision), reps, at::get_num_threads());
  fmt::print("{:<34} {:>10} {:>10} {:>8}\n", "layer (input side)", "oneDNN", "matmul", "ratio");
  at::manual_seed(0);
  for (const Layer& layer : layers) {
    std::function<at::Tensor(const at::Tensor&, const ComputeOptions&)> run;
    pix2pix::detail::Conv2d conv(nullptr);
    pix2pix::detail::ConvTranspose2d transposed(nullptr);
    if (layer.transposed) {
      transposed =
          pix2pix::detail::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(layer.in, layer.out, 4)
                                               .stride(2)
                                               .padding(1)
                                               .bias(false));
      run = [&](const at::Tensor& x, const ComputeOptions& c) {
        transposed->compute = c;
        return transposed->forward(x);
      };
    } else {
      conv = pix2pix::detail::Conv2d(
          torch::nn::Conv2dOptions(layer.in, layer.out, 4).stride(2).padding(1).bias(false));
      run = [&](const at::Tensor& x, const ComputeOptions& c) {
        conv->compute = c;
        return conv->forward(x);
      };
    }
    // The first layer's input is data (no input gradient), as in training.
    const at::Tensor x =
        at::randn({1, layer.in, layer.side, layer.side}).requires_grad_(layer.in != 3);
    std::vector<double> times[2];
    for (int rep = 0; rep < reps + 2; ++rep)
      for (int form = 0; form < 2; ++form) {
        const auto start = Clock::now();
        at::Tensor y = run(x, form == 0 ? conv_form : matmul_form);
        y.backward(at::ones_like(y));
        const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
        if (rep >= 2) times[form].push_back(seconds);  // two warm-up rounds
      }
    const double a = median(times[0]), b = median(times[1]);
    fmt::print("{:<34} {:>10.2f} {:>10.2f} {:>8.2f}\n",
               fmt::format("{} {}->{} ({})", layer.transposed ? "convT" : "conv", layer.in,
                           layer.out, layer.side),
               1e3 * a, 1e3 * b, b / a);
  }
  return 0;
}
