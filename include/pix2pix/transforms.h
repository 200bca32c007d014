// Conversions between images and network tensors, as the reference does them: samples scaled to
// [0, 1] (ToTensor) then to [-1, 1] (Normalize with mean 0.5, std 0.5); network outputs back to
// 8-bit samples as the reference's tensor2im writes them. The data-augmentation transforms
// (resize, crop, flip) will live here too.
#pragma once

#include <ATen/core/Tensor.h>

#include "pix2pix/image_io.h"

namespace pix2pix {

/// H x W x C image (8-bit, 16-bit or float in [0, 1]) -> C x H x W float32 tensor in [-1, 1]:
/// (x / max - 0.5) / 0.5, computed in float32 in that order as torchvision does.
at::Tensor image_to_tensor(const Image& image);

/// C x H x W (or 1 x C x H x W) tensor in [-1, 1] -> 8-bit H x W x C image:
/// uint8(clamp((x + 1) / 2 * 255)), truncating as the reference's tensor2im (numpy astype).
Image tensor_to_image(const at::Tensor& tensor);

}  // namespace pix2pix
