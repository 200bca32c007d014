// Running a fully convolutional network on images of any size: mirror padding of sides that are
// not multiples of what the network needs, and overlapping tiles blended with a smooth window
// for images too large to run whole. Nothing here knows about generators: the network is a
// function from N x C x h x w to N x C' x h x w. translator.h puts it to use.
//
// Blending, per axis (the 2-D weight is the product of the row and column weights): where two
// neighbouring tiles overlap by o pixels, the outer quarter of the overlap on each side belongs to
// the tile that reaches further past it (the other tile's output there sits next to its own edge,
// where the network saw zero padding instead of image), and the middle half cross-fades with a
// raised cosine, 0.5 - 0.5 cos(pi t), whose two halves sum to 1. Every output pixel is therefore
// taken only from tile pixels at least o/4 from an inner tile edge: with o/4 at least the
// network's receptive-field radius, the tiled result equals the whole-image result.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace pix2pix {

/// Pads an N x C x H x W tensor by mirroring about the edge samples (torch's "reflect": the edge
/// itself is not repeated, so 1 2 3 | 2 1). Unlike torch's reflection_pad2d, a pad may be as
/// large as or larger than the side: the mirroring then repeats (the padded signal is periodic
/// with period 2 (n - 1): 1 2 3 | 2 1 2 3 2 ...); a side of one sample is replicated. For pads
/// smaller than the side the result equals torch's reflection_pad2d exactly.
at::Tensor reflect_pad(const at::Tensor& input, int64_t top, int64_t bottom, int64_t left,
                       int64_t right);

/// How one axis of an image is cut into tiles.
struct TileAxis {
  int64_t length = 0;           ///< the axis's length (padded to the network's multiple)
  int64_t tile = 0;             ///< tile length along the axis (min(requested tile, length))
  std::vector<int64_t> starts;  ///< first sample of each tile, ascending; the last ends at length
};

/// Cuts an axis of `length` samples into tiles of `tile` samples that overlap by at least
/// `overlap`, starting at multiples of `multiple` (so a strided network sees the same sampling
/// grid in every tile as in the whole image) and spread evenly; the first starts at 0 and the
/// last ends at `length`. `length` and `tile` must be multiples of `multiple`; a tile at least as
/// long as the axis gives one tile. Throws pix2pix::Error (naming --tile/--overlap) when tile is
/// not a positive multiple of `multiple` or overlap is outside 0..tile - multiple.
TileAxis plan_tile_axis(int64_t length, int64_t tile, int64_t overlap, int64_t multiple);

/// The blending weight (float, `axis.tile` samples) of tile `index` along an axis: 1 inside,
/// 0 on the outer quarter of each overlap with a neighbour, a raised-cosine ramp between (see the
/// file comment). Edges at the image border keep weight 1. Weights of neighbours sum to 1.
at::Tensor tile_weight(const TileAxis& axis, size_t index);

/// A network applied to one batch: N x C x h x w -> N x C' x h x w.
using TileFunction = std::function<at::Tensor(const at::Tensor&)>;

/// Runs `network` on overlapping tiles of `input` (N x C x H x W; H and W multiples of
/// `multiple`) and blends the tiles' outputs into one N x C' x H x W tensor. Only one tile's
/// activations exist at a time; the image-sized buffers are the input, the output accumulator
/// and per-axis weight sums. `on_tile(done, total)` is called after each tile when set.
at::Tensor run_tiled(const at::Tensor& input, const TileFunction& network, int64_t tile,
                     int64_t overlap, int64_t multiple,
                     const std::function<void(int64_t, int64_t)>& on_tile = nullptr);

}  // namespace pix2pix
