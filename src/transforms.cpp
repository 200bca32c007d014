#include "pix2pix/transforms.h"

#include <ATen/ATen.h>

#include <cstring>

#include "pix2pix/error.h"

namespace pix2pix {

at::Tensor image_to_tensor(const Image& image) {
  if (image.empty()) throw Error("image_to_tensor", "empty image");
  const std::vector<int64_t> shape = {image.height, image.width, image.channels};
  at::ScalarType type = at::kByte;
  switch (image.type) {
    case SampleType::kUint8:
      type = at::kByte;
      break;
    case SampleType::kUint16:
      // No uint16 tensor type in libtorch 1.13: go through int32, which holds every value.
      type = at::kInt;
      break;
    case SampleType::kFloat32:
      type = at::kFloat;
      break;
  }
  at::Tensor hwc;
  if (image.type == SampleType::kUint16) {
    hwc = at::empty(shape, at::kInt);
    const auto* src = image.samples<uint16_t>();
    auto* dst = hwc.data_ptr<int32_t>();
    for (size_t i = 0; i < image.sample_count(); ++i) dst[i] = src[i];
  } else {
    hwc = at::from_blob(const_cast<uint8_t*>(image.data.data()), shape, type).clone();
  }
  at::Tensor chw = hwc.permute({2, 0, 1}).to(at::kFloat).contiguous();
  if (image.type != SampleType::kFloat32) chw.div_(static_cast<float>(image.max_value()));
  return chw.sub_(0.5).div_(0.5);
}

Image tensor_to_image(const at::Tensor& tensor) {
  at::Tensor chw = tensor.detach().to(at::kCPU).to(at::kFloat);
  if (chw.dim() == 4 && chw.size(0) == 1) chw = chw[0];
  if (chw.dim() != 3) throw Error("tensor_to_image", "expected a C x H x W tensor");
  at::Tensor scaled = chw.add(1.0).div_(2.0).mul_(255.0).clamp_(0.0, 255.0);
  at::Tensor hwc = scaled.to(at::kByte).permute({1, 2, 0}).contiguous();  // truncates
  Image image(static_cast<int>(hwc.size(1)), static_cast<int>(hwc.size(0)),
              static_cast<int>(hwc.size(2)));
  std::memcpy(image.data.data(), hwc.data_ptr<uint8_t>(), image.data.size());
  return image;
}

}  // namespace pix2pix
