#include "models/small_product.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "pix2pix/cpu.h"

// The kernels are compiled for AVX-512 BF16 whatever the build's flags (x86-64 only); they run
// only where small_product_supported() says the CPU has the instructions.
#if defined(__x86_64__)
#include <immintrin.h>
#define PIX2PIX_BF16_KERNEL __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#endif

namespace pix2pix::detail {

namespace {

using Bits = uint16_t;  // a bfloat16's bits

// The most columns the dot-product form takes: measured (bench/small_product), it beats at::mm
// at 1 and 4 columns but not at 16 (0.99-1.21x).
constexpr int64_t kDotsMaxColumns = 8;

#if defined(PIX2PIX_BF16_KERNEL)
const Bits* bits_of(const at::Tensor& t) {
  return reinterpret_cast<const Bits*>(t.data_ptr<at::BFloat16>());
}
Bits* bits_of(at::Tensor& t) { return reinterpret_cast<Bits*>(t.data_ptr<at::BFloat16>()); }

// Masks of the first n lanes (none for n <= 0).
__mmask32 first32(int64_t n) {
  return n >= 32 ? 0xffffffffu : n <= 0 ? 0u : static_cast<__mmask32>((1u << n) - 1u);
}
__mmask16 first16(int64_t n) {
  return n >= 16 ? 0xffff : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1u);
}

// Calls visit(std::integral_constant<int, R>()) with R = rows (1 to 4): the kernels' row-block
// templates for a block's row count.
template <typename Visit>
void with_rows(int64_t rows, Visit visit) {
  switch (rows) {
    case 4:
      return visit(std::integral_constant<int, 4>());
    case 3:
      return visit(std::integral_constant<int, 3>());
    case 2:
      return visit(std::integral_constant<int, 2>());
    default:
      return visit(std::integral_constant<int, 1>());
  }
}

// A small matrix's rows as pairs of neighbouring elements (one 32-bit word per pair, the second
// element zero past an odd length): what vdpbf16ps multiplies with a broadcast.
at::Tensor row_pairs(const at::Tensor& m) {
  const int64_t cols = m.size(1);
  if (cols % 2 == 0 && m.is_contiguous() &&
      reinterpret_cast<uintptr_t>(m.data_ptr()) % alignof(uint32_t) == 0)
    return m;  // already pairs, read as 32-bit words
  at::Tensor pairs = at::zeros({m.size(0), cols + cols % 2}, m.options());
  pairs.narrow(1, 0, cols).copy_(m);
  return pairs;
}
const uint32_t* words(const at::Tensor& pairs) {
  return reinterpret_cast<const uint32_t*>(pairs.data_ptr<at::BFloat16>());
}

// ---- Rows times a matrix: C[L x N] = X[L x K] W[K x N], L small, W read by rows.
//
// Two rows of W interleaved element by element (vpunpck{l,h}wd) give, per 128-bit lane, the
// pairs of columns 0-3 and 4-7 of that lane's eight: vdpbf16ps with X's pair broadcast adds
// both rows' products to 16 float32 sums. Threads split the columns; each streams its columns
// of kRowPairs pairs of rows at a time (sequential reads of every row, no strided walk down W's
// columns), keeping the running sums of up to 4 rows of X x 64 columns in registers and, between
// groups of rows, in a float32 buffer in the lanes' order. The last group puts the lanes back in
// column order and rounds to bfloat16.
constexpr int64_t kRowPairs = 8;  // measured: 4 and 16 are slower

alignas(64) const uint16_t kColumnOrder[32] = {0,  1,  2,  3,  16, 17, 18, 19, 4,  5,  6,
                                               7,  20, 21, 22, 23, 8,  9,  10, 11, 24, 25,
                                               26, 27, 12, 13, 14, 15, 28, 29, 30, 31};

template <int R>
PIX2PIX_BF16_KERNEL void rows_times_pass(const uint32_t* x, int64_t x_words, int64_t pair_begin,
                                         int64_t pair_end, const Bits* w, int64_t ldw, int64_t k,
                                         float* sums, int64_t ld_sums, int64_t columns, bool first,
                                         bool last, Bits* c, int64_t ldc) {
  for (int64_t n = 0; n < columns; n += 64) {
    const int64_t width = std::min<int64_t>(64, columns - n);
    const __mmask32 mask_a = first32(width), mask_b = first32(width - 32);
    __m512 acc[R][4];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j)
        acc[r][j] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(sums + r * ld_sums + n + j * 16);
    for (int64_t p = pair_begin; p < pair_end; ++p) {
      const Bits* row = w + 2 * p * ldw + n;
      const bool second = 2 * p + 1 < k;
      const __m512i a0 = _mm512_maskz_loadu_epi16(mask_a, row);
      const __m512i b0 = _mm512_maskz_loadu_epi16(mask_b, row + 32);
      const __m512i a1 =
          second ? _mm512_maskz_loadu_epi16(mask_a, row + ldw) : _mm512_setzero_si512();
      const __m512i b1 =
          second ? _mm512_maskz_loadu_epi16(mask_b, row + ldw + 32) : _mm512_setzero_si512();
      const __m512bh w_pairs[4] = {
          (__m512bh)_mm512_unpacklo_epi16(a0, a1), (__m512bh)_mm512_unpackhi_epi16(a0, a1),
          (__m512bh)_mm512_unpacklo_epi16(b0, b1), (__m512bh)_mm512_unpackhi_epi16(b0, b1)};
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512bh xr = (__m512bh)_mm512_set1_epi32(static_cast<int>(x[r * x_words + p]));
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], w_pairs[j], xr);
      }
    }
    if (last) {
      const __m512i order = _mm512_load_si512(kColumnOrder);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512i lo =
            _mm512_permutexvar_epi16(order, (__m512i)_mm512_cvtne2ps_pbh(acc[r][1], acc[r][0]));
        _mm512_mask_storeu_epi16(c + r * ldc + n, mask_a, lo);
        const __m512i hi =
            _mm512_permutexvar_epi16(order, (__m512i)_mm512_cvtne2ps_pbh(acc[r][3], acc[r][2]));
        _mm512_mask_storeu_epi16(c + r * ldc + n + 32, mask_b, hi);
      }
    } else {
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) _mm512_storeu_ps(sums + r * ld_sums + n + j * 16, acc[r][j]);
    }
  }
}

// x: [L x K] any layout; w: K rows of N bfloat16s, ldw apart. Returns [L x N] by rows.
at::Tensor rows_times(const at::Tensor& x, const Bits* w, int64_t ldw, int64_t n) {
  const int64_t l = x.size(0), k = x.size(1);
  const at::Tensor pairs = row_pairs(x);
  const uint32_t* xp = words(pairs);
  const int64_t x_words = pairs.size(1) / 2;
  at::Tensor c = at::empty({l, n}, x.options());
  Bits* cp = bits_of(c);
  at::parallel_for(0, (n + 63) / 64, 1, [&](int64_t begin, int64_t end) {
    const int64_t n0 = begin * 64, columns = std::min(n, end * 64) - n0;
    const int64_t ld_sums = (columns + 63) / 64 * 64;
    std::vector<float> sums(x_words > kRowPairs ? l * ld_sums : 0);
    for (int64_t p0 = 0; p0 < x_words; p0 += kRowPairs) {
      const int64_t p1 = std::min(x_words, p0 + kRowPairs);
      const bool first = p0 == 0, last = p1 == x_words;
      for (int64_t r = 0; r < l; r += 4) {
        const uint32_t* xr = xp + r * x_words;
        float* s = sums.empty() ? nullptr : sums.data() + r * ld_sums;
        Bits* cr = cp + r * n + n0;
        with_rows(std::min<int64_t>(4, l - r), [&](auto rows) {
          rows_times_pass<decltype(rows)::value>(xr, x_words, p0, p1, w + n0, ldw, k, s, ld_sums,
                                                 columns, first, last, cr, n);
        });
      }
    }
  });
  return c;
}

// ---- A matrix times a few columns: C[M x L] = W[M x K] Y[K x L], L small, W read by rows.
//
// Dot products along K, 32 elements at a time, of RM rows of W with RL columns of Y (copied to
// rows of a zero-padded buffer); each thread takes whole rows of W.

// The sum of a vector's 16 lanes (pairwise). Not _mm512_reduce_add_ps: GCC 12 warns of an
// uninitialised variable inside it.
PIX2PIX_BF16_KERNEL float lane_sum(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  for (int width = 8; width > 0; width /= 2)
    for (int i = 0; i < width; ++i) lanes[i] += lanes[i + width];
  return lanes[0];
}

template <int RM, int RL>
PIX2PIX_BF16_KERNEL void dots_block(const Bits* w, int64_t ldw, int64_t k, const Bits* yt,
                                    int64_t ldy, float* out, int64_t ldo) {
  __m512 acc[RM][RL];
#pragma GCC unroll 16
  for (int i = 0; i < RM; ++i)
#pragma GCC unroll 16
    for (int j = 0; j < RL; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t e = 0; e < k; e += 32) {
    const __mmask32 mask = first32(k - e);
    __m512bh wv[RM];
#pragma GCC unroll 16
    for (int i = 0; i < RM; ++i) wv[i] = (__m512bh)_mm512_maskz_loadu_epi16(mask, w + i * ldw + e);
#pragma GCC unroll 16
    for (int j = 0; j < RL; ++j) {
      const __m512bh y = (__m512bh)_mm512_loadu_si512(yt + j * ldy + e);
#pragma GCC unroll 16
      for (int i = 0; i < RM; ++i) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], wv[i], y);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < RM; ++i)
#pragma GCC unroll 16
    for (int j = 0; j < RL; ++j) out[i * ldo + j] = lane_sum(acc[i][j]);
}

template <int RM>
void dots_rows(const Bits* w, int64_t ldw, int64_t k, const Bits* yt, int64_t ldy, int64_t l,
               float* out) {
  int64_t j = 0;
  for (; j + 4 <= l; j += 4) dots_block<RM, 4>(w, ldw, k, yt + j * ldy, ldy, out + j, l);
  for (; j < l; ++j) dots_block<RM, 1>(w, ldw, k, yt + j * ldy, ldy, out + j, l);
}

// w: M rows of K bfloat16s, ldw apart; y: [K x L] any layout. Returns [M x L] by rows.
at::Tensor dots(const Bits* w, int64_t ldw, int64_t m, const at::Tensor& y) {
  const int64_t k = y.size(0), l = y.size(1);
  // Rows of Y^T, zero past K (the kernel reads whole 32-element blocks) and one block longer
  // than a multiple of 32: rows a power-of-two apart would share cache sets.
  const int64_t ldy = (k + 31) / 32 * 32 + 32;
  at::Tensor yt = at::zeros({l, ldy}, y.options());
  yt.narrow(1, 0, k).copy_(y.t());
  const Bits* ytp = bits_of(yt);
  at::Tensor c = at::empty({m, l}, y.options());
  Bits* cp = bits_of(c);
  constexpr int64_t kRows = 4;
  at::parallel_for(0, (m + kRows - 1) / kRows, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> out(kRows * l);
    for (int64_t block = begin; block < end; ++block) {
      const int64_t row = block * kRows, rows = std::min(kRows, m - row);
      if (rows == kRows) {
        dots_rows<kRows>(w + row * ldw, ldw, k, ytp, ldy, l, out.data());
      } else {
        for (int64_t i = 0; i < rows; ++i)
          dots_rows<1>(w + (row + i) * ldw, ldw, k, ytp, ldy, l, out.data() + i * l);
      }
      for (int64_t i = 0; i < rows * l; ++i)
        cp[row * l + i] = c10::BFloat16(out[i]).x;  // nearest even
    }
  });
  return c;
}

// ---- A sum of a few outer products: C[M x N] = G[M x L] H[L x N], L small, C large.
//
// H's rows are interleaved in pairs once (16 columns of a pair of rows per vector); each output
// row block of RM rows x 64 columns sums all pairs in registers and is written once, rounded to
// bfloat16. Each thread takes whole rows of C.
template <int RM>
PIX2PIX_BF16_KERNEL void outer_block(const uint32_t* g, int64_t g_words, const Bits* hp,
                                     int64_t ldh, Bits* c, int64_t ldc, int64_t width) {
  __m512 acc[RM][4];
#pragma GCC unroll 16
  for (int r = 0; r < RM; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm512_setzero_ps();
  for (int64_t p = 0; p < g_words; ++p) {
    __m512bh hv[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) hv[j] = (__m512bh)_mm512_loadu_si512(hp + p * ldh + j * 32);
#pragma GCC unroll 16
    for (int r = 0; r < RM; ++r) {
      const __m512bh gr = (__m512bh)_mm512_set1_epi32(static_cast<int>(g[r * g_words + p]));
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], hv[j], gr);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < RM; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j)
      _mm256_mask_storeu_epi16(c + r * ldc + j * 16, first16(width - j * 16),
                               (__m256i)_mm512_cvtneps_pbh(acc[r][j]));
}

// g: [M x L], h: [L x N], any layouts. Returns [M x N] by rows.
at::Tensor outer_sums(const at::Tensor& g, const at::Tensor& h) {
  const int64_t m = g.size(0), l = g.size(1), n = h.size(1);
  const at::Tensor g_pairs = row_pairs(g);
  const uint32_t* gp = words(g_pairs);
  const int64_t g_words = g_pairs.size(1) / 2;
  // hp[p, col, e] = h[2p + e, col], zero past L's last row and past N (whole 64-column blocks).
  // A pair of rows is 2 * columns + 64 elements long, not a power of two (cache sets).
  const int64_t columns = (n + 63) / 64 * 64;
  at::Tensor hp = at::zeros({g_words, columns + 32, 2}, h.options());
  hp.narrow(1, 0, n).select(2, 0).copy_(h.slice(0, 0, l, 2));
  if (l > 1) hp.narrow(1, 0, n).select(2, 1).narrow(0, 0, l / 2).copy_(h.slice(0, 1, l, 2));
  const Bits* hpp = bits_of(hp);
  const int64_t ldh = (columns + 32) * 2;
  at::Tensor c = at::empty({m, n}, h.options());
  Bits* cp = bits_of(c);
  constexpr int64_t kRows = 4;
  at::parallel_for(0, (m + kRows - 1) / kRows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      const int64_t row = block * kRows, rows = std::min(kRows, m - row);
      for (int64_t col = 0; col < n; col += 64) {
        const int64_t width = std::min<int64_t>(64, n - col);
        const uint32_t* gr = gp + row * g_words;
        Bits* cr = cp + row * n + col;
        with_rows(rows, [&](auto r) {
          outer_block<decltype(r)::value>(gr, g_words, hpp + col * 2, ldh, cr, n, width);
        });
      }
    }
  });
  return c;
}
#endif  // PIX2PIX_BF16_KERNEL

// A matrix whose rows are contiguous (any distance apart), or whose columns are.
bool by_rows(const at::Tensor& m) {
  return m.stride(1) == 1 && (m.size(0) == 1 || m.stride(0) >= m.size(1));
}
bool by_columns(const at::Tensor& m) {
  return m.stride(0) == 1 && (m.size(1) == 1 || m.stride(1) >= m.size(0));
}

// small_product(a, b) where it applies, else at::mm(a, b).
at::Tensor small_product_or_mm(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor c = small_product(a, b);
  return c.defined() ? c : at::mm(a, b);
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// at::mm's derivative (grad_a = g b^T, grad_b = a^T g) with every product on small_product_or_mm().
struct ProductFunction : torch::autograd::Function<ProductFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b) {
    ctx->save_for_backward({a, b});
    return small_product_or_mm(a, b);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& g = grad_outputs[0];
    at::Tensor grad_a, grad_b;
    if (g.defined() && ctx->needs_input_grad(0)) grad_a = small_product_or_mm(g, saved[1].t());
    if (g.defined() && ctx->needs_input_grad(1)) grad_b = small_product_or_mm(saved[0].t(), g);
    return {grad_a, grad_b};
  }
};

}  // namespace

bool small_product_supported() {
#if defined(PIX2PIX_BF16_KERNEL)
  static const bool supported = cpu_features().avx512_bf16_kernels() && !portable_kernels_forced();
  return supported;
#else
  return false;
#endif
}

at::Tensor small_product(const at::Tensor& a, const at::Tensor& b, int64_t max_dim) {
  if (!small_product_supported() || a.dim() != 2 || b.dim() != 2 ||
      a.scalar_type() != at::kBFloat16 || b.scalar_type() != at::kBFloat16 || !a.is_cpu() ||
      !b.is_cpu() || a.size(1) != b.size(0))
    return {};
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  if (m == 0 || k == 0 || n == 0) return {};
  // Which form: the big operand is read by rows in each.
  enum class Form { kNone, kRowsTimes, kRowsTimesTransposed, kDots, kDotsTransposed, kOuter };
  Form form = Form::kNone;
  const int64_t max_dots = std::min(max_dim, kDotsMaxColumns);
  if (m <= max_dim && by_rows(b))
    form = Form::kRowsTimes;  // C = a b
  else if (m <= max_dots && by_columns(b))
    form = Form::kDotsTransposed;  // C^T = b^T a^T, b^T by rows
  else if (n <= max_dots && by_rows(a))
    form = Form::kDots;  // C = a b
  else if (n <= max_dim && by_columns(a))
    form = Form::kRowsTimesTransposed;  // C^T = b^T a^T, a^T by rows
  else if (k <= max_dim)
    form = Form::kOuter;
  if (form == Form::kNone) return {};
#if defined(PIX2PIX_BF16_KERNEL)
  RECORD_FUNCTION("pix2pix::small_product", std::vector<c10::IValue>({a, b}));
  switch (form) {
    case Form::kRowsTimes:
      return rows_times(a, bits_of(b), b.stride(0), n);
    case Form::kRowsTimesTransposed:
      return rows_times(b.t(), bits_of(a), a.stride(1), m).t();
    case Form::kDots:
      return dots(bits_of(a), a.stride(0), m, b);
    case Form::kDotsTransposed:
      return dots(bits_of(b), b.stride(1), n, a.t()).t();
    default:
      return outer_sums(a, b);
  }
#else
  return {};
#endif
}

at::Tensor product(const at::Tensor& a, const at::Tensor& b, bool use_small_product) {
  return use_small_product ? ProductFunction::apply(a, b) : at::mm(a, b);
}

}  // namespace pix2pix::detail
