// bfloat16 matrix products with one small dimension on this library's AVX-512 BF16 kernels
// (ComputeOptions::small_products): every form equals the float32 product within one bfloat16
// rounding, for any sizes (tails of every block) and both layouts of each operand; non-finite
// values propagate; results do not depend on the number of threads; shapes and layouts the
// kernels do not take are left to at::mm; the differentiable product's gradients equal at::mm's.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "models/small_product.h"
#include "pix2pix/cpu.h"
#include "test_util.h"

namespace pix2pix {
namespace {

using detail::kSmallProductMaxDim;
using detail::small_product;

// A bfloat16 matrix of rows x cols with values in [-1, 1), laid out by rows or by columns (a
// transposed matrix), with a leading stride larger than its side when padded.
at::Tensor matrix(int64_t rows, int64_t cols, bool by_columns, bool padded = false) {
  const int64_t pad = padded ? 3 : 0;
  if (by_columns) {
    at::Tensor storage = (torch::rand({cols, rows + pad}) * 2 - 1).to(at::kBFloat16);
    return storage.narrow(1, 0, rows).t();
  }
  at::Tensor storage = (torch::rand({rows, cols + pad}) * 2 - 1).to(at::kBFloat16);
  return storage.narrow(1, 0, cols);
}

// Every element of c within one bfloat16 rounding of the float32 product (plus float32
// summation-order slack).
void expect_product(const at::Tensor& c, const at::Tensor& a, const at::Tensor& b) {
  ASSERT_TRUE(c.defined());
  ASSERT_EQ(c.scalar_type(), at::kBFloat16);
  ASSERT_EQ(c.sizes(), (std::vector<int64_t>{a.size(0), b.size(1)}));
  const at::Tensor reference = at::mm(a.to(at::kDouble), b.to(at::kDouble));
  const at::Tensor magnitude = at::mm(a.to(at::kDouble).abs(), b.to(at::kDouble).abs());
  const at::Tensor tolerance = reference.abs() * (1.0 / 256) + magnitude * 1e-6 + 1e-30;
  const at::Tensor excess = (c.to(at::kDouble) - reference).abs() - tolerance;
  EXPECT_LE(excess.max().item<double>(), 0.0)
      << "worst element off by " << (c.to(at::kDouble) - reference).abs().max().item<double>();
}

class SmallProduct : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!detail::small_product_supported())
      GTEST_SKIP() << "the kernels do not run here: " << cpu_features().describe()
                   << (portable_kernels_forced() ? " with PIX2PIX_KERNELS=portable"
                                                 : " has no AVX-512 BF16 (F, BW, VL)");
    torch::manual_seed(5);
  }
};

// A few rows times a matrix (the transposed convolution's forward): the small operand in either
// layout, the big one by rows, tails of the 64-column blocks, odd inner sizes, row counts that
// are not multiples of 4, and inner sizes beyond one group of rows.
TEST_F(SmallProduct, FewRowsTimesAMatrix) {
  for (int64_t m : {1, 2, 3, 4, 5, 16})
    for (int64_t k : {1, 7, 16, 33, 130})
      for (int64_t n : {1, 31, 64, 97, 200})
        for (bool a_by_columns : {false, true}) {
          SCOPED_TRACE(std::to_string(m) + "x" + std::to_string(k) + " times " + std::to_string(k) +
                       "x" + std::to_string(n) + (a_by_columns ? " (a by columns)" : ""));
          const at::Tensor a = matrix(m, k, a_by_columns), b = matrix(k, n, false, true);
          const at::Tensor c = small_product(a, b);
          expect_product(c, a, b);
          EXPECT_TRUE(c.is_contiguous());
        }
}

// A matrix times a few columns (the convolution's forward), and a few rows times a matrix laid
// out by columns (the transposed convolution's input gradient): dot products along rows, up to
// 8 columns (at::mm is as fast from 16).
TEST_F(SmallProduct, MatrixTimesFewColumns) {
  for (int64_t n : {1, 3, 4, 5, 8})
    for (int64_t k : {1, 31, 32, 100, 520})
      for (int64_t m : {1, 6, 17, 64}) {
        SCOPED_TRACE(std::to_string(m) + "x" + std::to_string(k) + " times " + std::to_string(k) +
                     "x" + std::to_string(n));
        const at::Tensor a = matrix(m, k, false, true), b = matrix(k, n, n % 2 == 1);
        const at::Tensor c = small_product(a, b);
        expect_product(c, a, b);
        if (m > kSmallProductMaxDim) EXPECT_TRUE(c.is_contiguous());  // else either form
        // The same product transposed: few rows times a matrix laid out by columns. The result
        // comes back laid out by columns (a transposed view), as at::mm's gradient does.
        const at::Tensor ct = small_product(b.t(), a.t());
        expect_product(ct, b.t(), a.t());
        if (n > 1 && m > kSmallProductMaxDim) EXPECT_EQ(ct.stride(0), 1);
      }
  // 16 columns of a large matrix whose rows run along the shared dimension: left to at::mm.
  const at::Tensor w = matrix(64, 100, false), y = matrix(100, kSmallProductMaxDim, false);
  EXPECT_FALSE(small_product(w, y).defined());
  EXPECT_FALSE(small_product(y.t(), w.t()).defined());
}

// A matrix laid out by columns times a few columns (the convolution's input gradient, W^T g).
TEST_F(SmallProduct, TransposedMatrixTimesFewColumns) {
  for (int64_t n : {1, 2, 16})
    for (int64_t k : {1, 9, 48})
      for (int64_t m : {5, 64, 131}) {
        SCOPED_TRACE(std::to_string(m) + "x" + std::to_string(k) + " times " + std::to_string(k) +
                     "x" + std::to_string(n));
        const at::Tensor a = matrix(m, k, true, true), b = matrix(k, n, false);
        expect_product(small_product(a, b), a, b);
      }
}

// A sum of a few outer products (every weight gradient): any layouts of both operands.
TEST_F(SmallProduct, SumOfFewOuterProducts) {
  for (int64_t k : {1, 2, 3, 4, 16})
    for (int64_t m : {17, 33, 70})
      for (int64_t n : {17, 63, 65, 130})
        for (bool by_columns : {false, true}) {
          SCOPED_TRACE(std::to_string(m) + "x" + std::to_string(k) + " times " + std::to_string(k) +
                       "x" + std::to_string(n));
          const at::Tensor a = matrix(m, k, by_columns), b = matrix(k, n, !by_columns);
          const at::Tensor c = small_product(a, b);
          expect_product(c, a, b);
          EXPECT_TRUE(c.is_contiguous());
        }
}

// A small operand that starts at an odd element (a view into a larger matrix) is read as
// pairs all the same.
TEST_F(SmallProduct, SmallOperandAtAnOddOffset) {
  const at::Tensor storage = matrix(3, 41, false);
  const at::Tensor x = storage.narrow(1, 1, 40);  // rows of 40 starting at element 1
  const at::Tensor w = matrix(40, 70, false);
  expect_product(small_product(x.narrow(0, 0, 1), w), x.narrow(0, 0, 1), w);  // odd address
  expect_product(small_product(x, w), x, w);
}

// The U-Net's products at 256x256, batch 1, as the training step makes them.
TEST_F(SmallProduct, UNetInnermostProducts) {
  const at::Tensor w = matrix(512, 8192, false), cols = matrix(8192, 4, false);
  expect_product(small_product(w, cols), w, cols);  // forward
  const at::Tensor g = matrix(512, 4, false);
  expect_product(small_product(w.t(), g), w.t(), g);        // input gradient
  expect_product(small_product(g, cols.t()), g, cols.t());  // weight gradient
  const at::Tensor up = matrix(1024, 8192, false), x = matrix(1024, 16, false);
  expect_product(small_product(x.t(), up), x.t(), up);  // transposed forward
}

// NaN and infinity in either operand reach the result as they do in a float32 product.
TEST_F(SmallProduct, NonFiniteValuesPropagate) {
  const double inf = std::numeric_limits<double>::infinity();
  for (double bad : {std::nan(""), inf}) {
    at::Tensor w = matrix(40, 100, false), x = matrix(3, 40, false);
    w.index_put_({7, 20}, bad);
    const at::Tensor rows = small_product(x, w);  // few rows times a matrix
    EXPECT_EQ(rows.select(1, 20).isfinite().any().item<bool>(), false);
    EXPECT_TRUE(rows.select(1, 21).isfinite().all().item<bool>());
    const at::Tensor y = matrix(100, 2, false);
    const at::Tensor dots = small_product(w, y);  // dot products along rows
    EXPECT_FALSE(dots.select(0, 7).isfinite().any().item<bool>());
    EXPECT_TRUE(dots.select(0, 8).isfinite().all().item<bool>());
    at::Tensor g = matrix(50, 2, false);
    g.index_put_({9, 1}, bad);
    const at::Tensor outer = small_product(g, matrix(2, 70, false));  // outer products
    EXPECT_FALSE(outer.select(0, 9).isfinite().any().item<bool>());
    EXPECT_TRUE(outer.select(0, 10).isfinite().all().item<bool>());
  }
}

// Each result element is summed by one thread in a fixed order: bit for bit the same on one
// thread as on several.
TEST_F(SmallProduct, SameBitsOnAnyNumberOfThreads) {
  const at::Tensor a = matrix(300, 260, false), x = matrix(3, 300, false);
  const at::Tensor y = matrix(260, 5, true), z = matrix(5, 300, false);
  const int threads = at::get_num_threads();
  const std::vector<at::Tensor> several = {small_product(x, a), small_product(a, y),
                                           small_product(a.t(), x.t()), small_product(y, z)};
  at::set_num_threads(1);
  const std::vector<at::Tensor> one = {small_product(x, a), small_product(a, y),
                                       small_product(a.t(), x.t()), small_product(y, z)};
  at::set_num_threads(threads);
  for (size_t i = 0; i < one.size(); ++i) EXPECT_TRUE(torch::equal(one[i], several[i])) << i;
}

// Left to at::mm (an undefined result): float32, every dimension above the limit, an operand in
// neither layout, empty matrices.
TEST(SmallProductScope, DeclinesWhatTheKernelsDoNotTake) {
  const int64_t big = kSmallProductMaxDim + 1;
  EXPECT_FALSE(small_product(torch::rand({4, 64}), torch::rand({64, 64})).defined());
  EXPECT_FALSE(small_product(matrix(big, big, false), matrix(big, big, false)).defined());
  const at::Tensor strided = (torch::rand({64, 128}) * 2 - 1).to(at::kBFloat16).slice(1, 0, 128, 2);
  EXPECT_FALSE(small_product(matrix(big, 64, false), strided).defined());  // b neither layout
  // Few rows, but b in neither layout and no other dimension small.
  EXPECT_FALSE(small_product(matrix(4, 64, false), strided).defined());
  EXPECT_FALSE(small_product(matrix(0, 64, false), matrix(64, 64, false)).defined());
}

// The differentiable product: forward and both gradients equal at::mm's within one bfloat16
// rounding; with the kernels off it is at::mm itself.
TEST(SmallProductScope, GradientsEqualMatrixProduct) {
  PIX2PIX_SKIP_WITHOUT_BF16();  // bfloat16 at::mm too needs the instructions (oneDNN 2.6)
  torch::manual_seed(6);
  for (bool small : {true, false}) {
    SCOPED_TRACE(small ? "small-dimension kernels" : "at::mm");
    const at::Tensor w = matrix(64, 200, false).detach().requires_grad_();
    const at::Tensor x = matrix(200, 4, false).detach().requires_grad_();
    const at::Tensor y = detail::product(w, x, small);
    EXPECT_EQ(test::made_by(y, "MmBackward0", 0), !small);
    const at::Tensor gy = matrix(64, 4, false);
    y.backward(gy);
    const at::Tensor w64 = w.detach().to(at::kDouble), x64 = x.detach().to(at::kDouble);
    const at::Tensor g64 = gy.to(at::kDouble);
    for (const auto& [got, want] :
         std::vector<std::pair<at::Tensor, at::Tensor>>{{y.detach(), at::mm(w64, x64)},
                                                        {w.grad(), at::mm(g64, x64.t())},
                                                        {x.grad(), at::mm(w64.t(), g64)}}) {
      ASSERT_TRUE(got.defined());
      EXPECT_EQ(got.sizes(), want.sizes());
      const double scale = want.abs().max().item<double>();
      EXPECT_LT((got.to(at::kDouble) - want).abs().max().item<double>(), scale / 128);
    }
  }
}

}  // namespace
}  // namespace pix2pix
