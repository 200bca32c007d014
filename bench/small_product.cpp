// The bfloat16 matrix products of unet_256's matrix-product layers (batch 1, 256x256), each on
// oneDNN's matmul (at::mm) and on the small-dimension kernels (detail::small_product),
// interleaved; prints the medians and their ratio per product, with the weight in cache (warm)
// and after 96 MiB of other writes (cold, as in the training step, where Adam has swept every
// weight since). The measurement behind kSmallProductMaxDim (16) and
// ComputeOptions::small_products. Usage: small_product [reps=21]. A benchmark, never a test.
#include "models/small_product.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::vector<char> other_data(96 << 20);
void evict_caches() {
  for (size_t i = 0; i < other_data.size(); i += 64) other_data[i] += 1;
}

at::Tensor random_bf16(int64_t rows, int64_t cols) {
  return (at::rand({rows, cols}) * 2 - 1).to(at::kBFloat16);
}

struct Product {
  std::string name;
  at::Tensor a, b;
};

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::stoi(argv[1]) : 21;
  at::set_num_threads(static_cast<int>(std::thread::hardware_concurrency()));  // as `bench`
  if (!pix2pix::detail::small_product_supported()) {
    fmt::print("this CPU has no AVX-512 BF16: the small-dimension kernels do not run here\n");
    return 0;
  }
  at::manual_seed(0);
  // Per map of L pixels (1x1 .. 8x8): the down layer 512 -> 512 (weight 512 x 8192 as O x C*K)
  // and the up layer (C_in x C_out*K: 512 x 8192 on the 1x1 map, 1024 x 8192 above), forward,
  // input gradient and weight gradient, with the operands' layouts of the training step.
  std::vector<Product> products;
  for (int64_t l : {1, 4, 16, 64}) {
    const std::string side = std::to_string(l == 1 ? 1 : l == 4 ? 2 : l == 16 ? 4 : 8);
    const at::Tensor w = random_bf16(512, 8192), cols = random_bf16(8192, l);
    const at::Tensor g = random_bf16(512, l);
    products.push_back({"down " + side + "x" + side + " forward", w, cols});
    products.push_back({"down " + side + "x" + side + " input grad", w.t(), g});
    products.push_back({"down " + side + "x" + side + " weight grad", g, cols.t()});
    const int64_t in = l == 1 ? 512 : 1024;
    const at::Tensor up = random_bf16(in, 8192), x = random_bf16(in, l);
    const at::Tensor rows_grad = random_bf16(8192, l);
    products.push_back({"up " + side + "x" + side + " forward", x.t(), up});
    products.push_back({"up " + side + "x" + side + " input grad", rows_grad.t(), up.t()});
    products.push_back({"up " + side + "x" + side + " weight grad", x, rows_grad.t()});
  }
  fmt::print("bf16 products, median of {} (ms), {} threads\n", reps, at::get_num_threads());
  fmt::print("{:<26} {:>20} {:>8} {:>8} {:>6} {:>8} {:>8} {:>6}\n", "product", "shapes", "mm warm",
             "ours", "ratio", "mm cold", "ours", "ratio");
  double total[2][2] = {};  // [warm, cold][mm, ours], products with a dimension <= 16
  for (const Product& p : products) {
    const std::string shapes =
        fmt::format("{}x{} {}x{}", p.a.size(0), p.a.size(1), p.b.size(0), p.b.size(1));
    double ms[2][2];
    for (int cold = 0; cold < 2; ++cold) {
      std::vector<double> times[2];
      for (int i = 0; i < reps + 2; ++i)
        for (int ours = 0; ours < 2; ++ours) {
          if (cold) evict_caches();
          const auto start = Clock::now();
          // Up to 64 (the 8x8 map's products too, above kSmallProductMaxDim): why those stay on
          // at::mm.
          const at::Tensor c =
              ours ? pix2pix::detail::small_product(p.a, p.b, 64) : at::mm(p.a, p.b);
          const double t = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
          if (i >= 2) times[ours].push_back(c.defined() ? t : -1);  // -1: left to at::mm
        }
      for (int ours = 0; ours < 2; ++ours) ms[cold][ours] = median(times[ours]);
    }
    if (ms[0][1] < 0) {  // the kernels decline this product even at 64
      fmt::print("{:<26} {:>20} {:>8.3f} {:>8} {:>6} {:>8.3f} {:>8} {:>6}  (stays on mm)\n", p.name,
                 shapes, ms[0][0], "-", "-", ms[1][0], "-", "-");
      continue;
    }
    const bool taken = pix2pix::detail::small_product(p.a, p.b).defined();
    for (int cold = 0; cold < 2; ++cold)
      for (int ours = 0; ours < 2; ++ours)
        if (taken) total[cold][ours] += ms[cold][ours];
    fmt::print("{:<26} {:>20} {:>8.3f} {:>8.3f} {:>6.2f} {:>8.3f} {:>8.3f} {:>6.2f}{}\n", p.name,
               shapes, ms[0][0], ms[0][1], ms[0][1] / ms[0][0], ms[1][0], ms[1][1],
               ms[1][1] / ms[1][0], taken ? "" : "  (stays on mm)");
  }
  fmt::print("{:<26} {:>20} {:>8.3f} {:>8.3f} {:>6.2f} {:>8.3f} {:>8.3f} {:>6.2f}\n",
             "sum of those taken", "", total[0][0], total[0][1], total[0][1] / total[0][0],
             total[1][0], total[1][1], total[1][1] / total[1][0]);
}
