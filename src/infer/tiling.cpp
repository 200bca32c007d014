#include "pix2pix/infer/tiling.h"

#include <ATen/ATen.h>

#include <cmath>
#include <string>

#include "pix2pix/error.h"

namespace pix2pix {

namespace {

// Source index of every sample of an axis of n samples padded by `before` and `after`, mirrored
// about the edge samples with period 2 (n - 1).
at::Tensor mirror_indices(int64_t n, int64_t before, int64_t after) {
  at::Tensor index = at::empty({before + n + after}, at::kLong);
  auto* out = index.data_ptr<int64_t>();
  const int64_t period = 2 * (n - 1);
  for (int64_t i = 0; i < before + n + after; ++i) {
    if (n == 1) {
      out[i] = 0;
      continue;
    }
    int64_t j = (i - before) % period;
    if (j < 0) j += period;
    out[i] = j < n ? j : period - j;
  }
  return index;
}

// Raised-cosine ramp at distance d (pixel centre) from a tile edge that overlaps its neighbour by
// o samples: 0 up to o/4, 1 from 3o/4, 0.5 - 0.5 cos between. ramp(d) + ramp(o - d) = 1.
double ramp(double d, int64_t o) {
  if (o <= 0) return 1.0;
  const double a = 0.25 * static_cast<double>(o);
  const double b = 0.75 * static_cast<double>(o);
  if (d <= a) return 0.0;
  if (d >= b) return 1.0;
  return 0.5 - 0.5 * std::cos(M_PI * (d - a) / (b - a));
}

}  // namespace

at::Tensor reflect_pad(const at::Tensor& input, int64_t top, int64_t bottom, int64_t left,
                       int64_t right) {
  TORCH_CHECK(input.dim() == 4, "reflect_pad: expected N x C x H x W, got ", input.sizes());
  TORCH_CHECK(top >= 0 && bottom >= 0 && left >= 0 && right >= 0, "reflect_pad: negative pad");
  at::Tensor result = input;
  if (top > 0 || bottom > 0)
    result = result.index_select(2, mirror_indices(input.size(2), top, bottom));
  if (left > 0 || right > 0)
    result = result.index_select(3, mirror_indices(input.size(3), left, right));
  return result;
}

TileAxis plan_tile_axis(int64_t length, int64_t tile, int64_t overlap, int64_t multiple) {
  TORCH_CHECK(multiple >= 1 && length >= multiple && length % multiple == 0,
              "plan_tile_axis: length ", length, " is not a positive multiple of ", multiple);
  if (tile < multiple || tile % multiple != 0)
    throw Error::option("tile", std::to_string(tile) + " is not a positive multiple of " +
                                    std::to_string(multiple) +
                                    ", the size multiple the network needs");
  if (overlap < 0 || overlap > tile - multiple)
    throw Error::option(
        "overlap", std::to_string(overlap) + " is outside 0.." + std::to_string(tile - multiple) +
                       " (tile " + std::to_string(tile) + " minus the network's size multiple " +
                       std::to_string(multiple) + ")");
  TileAxis axis;
  axis.length = length;
  if (tile >= length) {
    axis.tile = length;
    axis.starts = {0};
    return axis;
  }
  axis.tile = tile;
  // In units of `multiple`: `units` to travel, at most `max_step` per step.
  const int64_t units = (length - tile) / multiple;
  const int64_t max_step = (tile - overlap) / multiple;
  const int64_t steps = (units + max_step - 1) / max_step;
  for (int64_t k = 0; k <= steps; ++k)
    axis.starts.push_back(multiple * ((2 * k * units + steps) / (2 * steps)));
  return axis;
}

at::Tensor tile_weight(const TileAxis& axis, size_t index) {
  TORCH_CHECK(index < axis.starts.size(), "tile_weight: no tile ", index);
  const int64_t n = axis.tile;
  const int64_t left_overlap =
      index > 0 ? axis.starts[index - 1] + n - axis.starts[index] : int64_t{0};
  const int64_t right_overlap =
      index + 1 < axis.starts.size() ? axis.starts[index] + n - axis.starts[index + 1] : 0;
  at::Tensor weight = at::empty({n}, at::kFloat);
  auto* w = weight.data_ptr<float>();
  for (int64_t x = 0; x < n; ++x) {
    const double centre = static_cast<double>(x) + 0.5;
    w[x] = static_cast<float>(ramp(centre, left_overlap) *
                              ramp(static_cast<double>(n) - centre, right_overlap));
  }
  return weight;
}

at::Tensor run_tiled(const at::Tensor& input, const TileFunction& network, int64_t tile,
                     int64_t overlap, int64_t multiple,
                     const std::function<void(int64_t, int64_t)>& on_tile) {
  TORCH_CHECK(input.dim() == 4, "run_tiled: expected N x C x H x W, got ", input.sizes());
  const TileAxis rows = plan_tile_axis(input.size(2), tile, overlap, multiple);
  const TileAxis columns = plan_tile_axis(input.size(3), tile, overlap, multiple);
  const int64_t total = static_cast<int64_t>(rows.starts.size() * columns.starts.size());

  std::vector<at::Tensor> row_weights, column_weights;
  at::Tensor row_sum = at::zeros({input.size(2)}, at::kFloat);
  at::Tensor column_sum = at::zeros({input.size(3)}, at::kFloat);
  for (size_t i = 0; i < rows.starts.size(); ++i) {
    row_weights.push_back(tile_weight(rows, i));
    row_sum.narrow(0, rows.starts[i], rows.tile).add_(row_weights.back());
  }
  for (size_t j = 0; j < columns.starts.size(); ++j) {
    column_weights.push_back(tile_weight(columns, j));
    column_sum.narrow(0, columns.starts[j], columns.tile).add_(column_weights.back());
  }

  at::Tensor output;  // allocated once the first tile tells the output channels
  int64_t done = 0;
  for (size_t i = 0; i < rows.starts.size(); ++i) {
    for (size_t j = 0; j < columns.starts.size(); ++j) {
      const at::Tensor piece = input.narrow(2, rows.starts[i], rows.tile)
                                   .narrow(3, columns.starts[j], columns.tile)
                                   .contiguous();
      const at::Tensor result = network(piece);
      TORCH_CHECK(result.dim() == 4 && result.size(0) == input.size(0) &&
                      result.size(2) == rows.tile && result.size(3) == columns.tile,
                  "run_tiled: the network mapped a tile of ", piece.sizes(), " to ", result.sizes(),
                  "; it must keep the batch and spatial size");
      if (!output.defined())
        output = at::zeros({input.size(0), result.size(1), input.size(2), input.size(3)},
                           result.options().dtype(at::kFloat));
      const at::Tensor weight = row_weights[i].view({-1, 1}) * column_weights[j].view({1, -1});
      output.narrow(2, rows.starts[i], rows.tile)
          .narrow(3, columns.starts[j], columns.tile)
          .add_(result.to(at::kFloat) * weight);
      if (on_tile) on_tile(++done, total);
    }
  }
  return output.div_(row_sum.view({-1, 1}) * column_sum.view({1, -1}));
}

}  // namespace pix2pix
