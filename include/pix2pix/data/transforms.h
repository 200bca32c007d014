// Conversions between images and network tensors, and the data-augmentation transforms, as the
// reference (data/base_dataset.py: get_params / get_transform) does them.
//
// A transform is: resize (by preprocess mode) -> crop -> horizontal flip -> to [-1, 1] CHW float.
// Its random choices live in TransformParams, drawn once per (input, target) pair from a 64-bit
// seed and applied identically to both images. Resizing works on the integer image and quantises
// back to integer levels, as Pillow does, so values equal the reference's Resize + ToTensor +
// Normalize up to the resize differences measured in transforms.cpp. To add a preprocess mode:
// extend Preprocess, its names in transforms.cpp, resized_size() and has_crop().
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "pix2pix/io/image_io.h"
#include "pix2pix/names.h"

namespace pix2pix {

/// H x W x C image (8-bit, 16-bit or float in [0, 1]) -> C x H x W float32 tensor in [-1, 1]:
/// (x / max - 0.5) / 0.5, computed in float32 in that order as torchvision does.
at::Tensor image_to_tensor(const Image& image);

/// C x H x W (or 1 x C x H x W) tensor in [-1, 1] -> 8-bit H x W x C image:
/// uint8(clamp((x + 1) / 2 * 255)), truncating as the reference's tensor2im (numpy astype).
Image tensor_to_image(const at::Tensor& tensor);

/// How images are resized and cropped before training (the reference's --preprocess).
enum class Preprocess {
  kResizeAndCrop,      ///< resize to load_size x load_size, then random crop (the default)
  kCrop,               ///< random crop of the image as it is
  kScaleWidth,         ///< width to load_size, height max(load_size * h / w, crop_height)
  kScaleWidthAndCrop,  ///< kScaleWidth, then random crop
  /// No resize, no crop. The reference rounds sizes to a multiple of 4 here (__make_power_2);
  /// we keep the size and let the generator's divisibility check reject sizes it cannot take.
  kNone,
};
/// The preprocess modes' names (names.h).
template <>
const std::vector<std::string>& names<Preprocess>();

/// "resize_and_crop" | "crop" | "scale_width" | "scale_width_and_crop" | "none"; throws
/// pix2pix::Error::option("preprocess", ...) otherwise.
Preprocess parse_preprocess(const std::string& name);
/// The name parse_preprocess accepts.
std::string to_string(Preprocess preprocess);
/// True for the modes that crop (resize_and_crop, crop, scale_width_and_crop).
bool has_crop(Preprocess preprocess);

/// Resampling filter for resizing.
enum class ResizeFilter {
  kBicubic,   ///< Pillow's BICUBIC (antialiased, a = -0.5), the reference's default
  kBilinear,  ///< Pillow's BILINEAR (antialiased triangle filter)
  kNearest,   ///< Pillow's NEAREST (exact), as the TensorFlow 2 tutorial resizes
};
/// The filters' names (names.h).
template <>
const std::vector<std::string>& names<ResizeFilter>();

/// "bicubic" | "bilinear" | "nearest"; throws pix2pix::Error::option("resize_filter", ...)
/// otherwise.
ResizeFilter parse_resize_filter(const std::string& name);
/// The name parse_resize_filter accepts.
std::string to_string(ResizeFilter filter);

/// A crop size, rows x columns.
struct CropSize {
  int height = 256;  ///< rows
  int width = 256;   ///< columns
};

/// "256" (square) or "256x512" (height x width, as tensors are laid out: H then W); both
/// positive. Throws pix2pix::Error::option("crop_size", ...) otherwise.
CropSize parse_crop_size(const std::string& text);
/// "256" for square crops, else "HxW".
std::string to_string(const CropSize& size);

/// How training images are augmented. Defaults are the reference's.
struct TransformOptions {
  Preprocess preprocess = Preprocess::kResizeAndCrop;  ///< resize / crop mode
  int load_size = 286;    ///< resize target: the side (resize_*) or the width (scale_width*)
  int crop_height = 256;  ///< crop rows (the reference's crop_size; also scale_width's min height)
  int crop_width = 256;   ///< crop columns
  bool flip = true;       ///< random horizontal flip with probability 0.5 (reference: !no_flip)
  ResizeFilter filter = ResizeFilter::kBicubic;  ///< resampling filter
};

/// Throws pix2pix::Error naming the flag when `options` cannot work for any image: non-positive
/// sizes, or a load_size smaller than the crop for resize_and_crop / scale_width_and_crop.
void validate(const TransformOptions& options);

/// A width x height pair.
struct ImageSize {
  int width = 0;   ///< columns
  int height = 0;  ///< rows
};

/// The size after the resize step for a width x height image (no crop).
ImageSize resized_size(const TransformOptions& options, int width, int height);
/// The size apply_transform returns for a width x height image.
ImageSize transformed_size(const TransformOptions& options, int width, int height);
/// Throws pix2pix::Error("<name>: the image is WxH ..., smaller than the crop ...") when a width x
/// height image, once resized, cannot hold the crop (modes that crop); apply_transform throws the
/// same error.
void check_fits(const TransformOptions& options, int width, int height, const std::string& name);

/// The random choices for one (input, target) pair.
struct TransformParams {
  int crop_x = 0;     ///< left column of the crop in the resized image (0 without crop)
  int crop_y = 0;     ///< top row of the crop in the resized image (0 without crop)
  bool flip = false;  ///< mirror left-right after cropping
};

/// Draws crop position and flip for a width x height image from `seed`: crop_x uniform in
/// [0, max(0, resized width - crop_width)], crop_y likewise, flip with probability 0.5 when
/// options.flip (as the reference's get_params, but from a private generator, never torch's).
/// The same seed, options and size always give the same params.
TransformParams draw_transform_params(const TransformOptions& options, int width, int height,
                                      uint64_t seed);

/// A small, portable, seedable generator (SplitMix64): the same numbers on every platform and
/// standard library. Used for the loader's shuffles and transform params.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  /// The next 64 random bits.
  uint64_t next();
  /// Uniform integer in [0, bound) (bound >= 1; bias below 2^-32 for bound < 2^32).
  uint64_t below(uint64_t bound);

 private:
  uint64_t state_;
};

/// Combines a seed with two values into a new, well-mixed seed (for per-epoch / per-sample
/// streams that do not depend on the order in which they are drawn).
uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b = 0);

/// Resizes to width x height with `filter`, returning an image of the same type and channels.
/// Bicubic and bilinear use ATen's antialiased kernels, horizontal pass then vertical pass, each
/// rounded and clamped back to integer levels like Pillow's 8-bit resampler (float images are
/// not quantised); nearest picks Pillow's source pixels exactly. Same size: a copy.
Image resize_image(const Image& image, int width, int height, ResizeFilter filter);

/// The width x height region whose top-left corner is (x, y); throws pix2pix::Error (subject
/// `name`) when it does not lie inside the image.
Image crop_image(const Image& image, int x, int y, int width, int height,
                 const std::string& name = "image");

/// Mirrors the image left-right.
Image flip_image(const Image& image);

/// Resize, crop and flip as `options` and `params` say, returning the image before conversion
/// to a tensor. Throws pix2pix::Error("<name>: ...") naming the size when the image is smaller
/// than the crop.
Image transform_image(const Image& image, const TransformOptions& options,
                      const TransformParams& params, const std::string& name = "image");

/// transform_image, then image_to_tensor: a C x H x W float32 tensor in [-1, 1]. Apply it with the
/// same params to the input and the target of a pair.
at::Tensor apply_transform(const Image& image, const TransformOptions& options,
                           const TransformParams& params, const std::string& name = "image");

}  // namespace pix2pix
