// What the per-image metrics share (private to eval/): the check that two images can be
// compared and their samples as a tensor.
#pragma once

#include <ATen/core/Tensor.h>

#include "pix2pix/io/image_io.h"

namespace pix2pix::detail {

/// H x W x C 8-bit samples -> C x H x W double.
at::Tensor to_chw_double(const Image& image);

/// Throws Error(what, ...) unless both are 8-bit, of the same size and channels, and not empty.
void require_comparable(const Image& real, const Image& fake, const char* what);

}  // namespace pix2pix::detail
