// Private interface between image_io.cpp (format detection, channel conversion, atomic writes)
// and the per-format codecs in src/detail/image_{png,jpeg,tiff}.cpp. A new format adds one
// decode / info pair here and one source file; nothing else needs to know the library it uses.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "pix2pix/io/image_io.h"

namespace pix2pix::detail {

/// Decodes a PNG from `file` (positioned at its start). `path` is for messages only.
Image decode_png(const std::string& path, std::FILE* file, int64_t max_pixels);
/// Reads a PNG's header from `file` (positioned at its start).
ImageInfo png_info(const std::string& path, std::FILE* file);
/// Encodes `image` (8/16-bit, 1..4 channels, already checked) as PNG into `file`; throws
/// Error(path, ..., kRuntime) when writing fails.
void encode_png(const std::string& path, const Image& image, int compression_level,
                std::FILE* file);

/// Decodes a JPEG from `file` (positioned at its start) exactly as Pillow does.
Image decode_jpeg(const std::string& path, std::FILE* file, int64_t max_pixels);
/// Reads a JPEG's header from `file` (positioned at its start).
ImageInfo jpeg_info(const std::string& path, std::FILE* file);

/// Decodes the first page of the TIFF at `path`.
Image decode_tiff(const std::string& path, int64_t max_pixels);
/// Reads the first page's tags of the TIFF at `path`.
ImageInfo tiff_info(const std::string& path);
/// Decodes the first page of a TIFF held in `bytes`; `name` is for messages only.
Image decode_tiff_bytes(const std::string& name, std::string_view bytes, int64_t max_pixels);

/// Throws Error(path, ...) unless 0 < width, 0 < height and width * height <= max_pixels (when
/// max_pixels > 0), and the image's bytes fit in memory arithmetic. Call before allocating.
void check_dimensions(const std::string& path, int64_t width, int64_t height, int channels,
                      SampleType type, int64_t max_pixels);

/// CMYK (4 channels, 8 or 16 bits, not inverted) to RGB with Pillow's cmyk2rgb:
/// nk = max - K; R = nk - C * nk / max (rounded as Pillow's MULDIV255). Extra channels beyond
/// the fourth are dropped.
Image cmyk_to_rgb(const Image& cmyk);

/// Same as pix2pix::convert_channels, with `subject` (a path) starting error messages.
Image convert_channels(const Image& image, int channels, const std::string& subject);

}  // namespace pix2pix::detail
