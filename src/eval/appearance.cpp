// The appearance metrics of metrics.h: sharpness (Sobel gradients), checkerboard (spectral energy
// on the Nyquist lines) and colour error (16x16 block means).
#include <ATen/ATen.h>
#include <fmt/core.h>

#include <cmath>
#include <limits>

#include "eval/image_checks.h"
#include "pix2pix/error.h"
#include "pix2pix/eval/metrics.h"

namespace pix2pix {

namespace {

// C x 1 x H x W double: one plane per channel, for conv2d.
at::Tensor planes(const Image& image) { return detail::to_chw_double(image).unsqueeze(1); }

void require_same(const Image& real, const Image& fake, const char* what, int min_side) {
  detail::require_comparable(real, fake, what);
  if (real.width < min_side || real.height < min_side)
    throw Error(what, fmt::format("images of {}x{} are below {} pixels a side", real.width,
                                  real.height, min_side));
}

// Mean Sobel gradient magnitude over channels and the pixels with a full 3x3 neighbourhood.
double mean_gradient(const Image& image) {
  const at::Tensor kx =
      at::tensor({-1.0, 0.0, 1.0, -2.0, 0.0, 2.0, -1.0, 0.0, 1.0}, at::kDouble).view({1, 1, 3, 3});
  const at::Tensor x = planes(image);
  const at::Tensor gx = at::conv2d(x, kx), gy = at::conv2d(x, kx.transpose(2, 3));
  return (gx * gx + gy * gy).sqrt().mean().item<double>();
}

}  // namespace

double sharpness(const Image& real, const Image& fake) {
  require_same(real, fake, "sharpness", 3);
  const double target = mean_gradient(real), output = mean_gradient(fake);
  if (target == 0) return output == 0 ? 1.0 : std::numeric_limits<double>::quiet_NaN();
  return output / target;
}

double checkerboard_share(const Image& image) {
  if (image.type != SampleType::kUint8) throw Error("checkerboard", "expects an 8-bit image");
  // An even crop, so that the Nyquist frequency is a bin of its own.
  const int64_t h = image.height / 2 * 2, w = image.width / 2 * 2;
  if (h < 2 || w < 2) throw Error("checkerboard", "the image needs at least 2x2 pixels");
  at::Tensor x = planes(image).squeeze(1).narrow(1, 0, h).narrow(2, 0, w);
  x = x - x.mean({1, 2}, true);  // no DC: the share is of the image's variation
  const at::Tensor energy = at::fft_fft2(x).abs().pow(2);  // C x H x W
  const double total = energy.sum().item<double>();
  if (total == 0) return 0;
  const double row = energy.select(1, h / 2).sum().item<double>();     // vertical Nyquist
  const double column = energy.select(2, w / 2).sum().item<double>();  // horizontal Nyquist
  const double both = energy.select(1, h / 2).select(1, w / 2).sum().item<double>();
  return (row + column - both) / total;
}

double checkerboard(const Image& real, const Image& fake) {
  require_same(real, fake, "checkerboard", 2);
  return checkerboard_share(fake) - checkerboard_share(real);
}

double colour_error(const Image& real, const Image& fake) {
  require_same(real, fake, "colour_error", 1);
  // ceil_mode: the last row and column of blocks are partial, averaged over their own pixels.
  auto blocks = [](const Image& image) {
    return at::avg_pool2d(planes(image).squeeze(1).unsqueeze(0), kColourBlock, kColourBlock, 0,
                          true)
        .squeeze(0);  // C x H/16 x W/16
  };
  const at::Tensor difference = blocks(real) - blocks(fake);
  return difference.pow(2).sum(0).sqrt().mean().item<double>();
}

}  // namespace pix2pix
