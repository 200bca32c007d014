// The Image container, format detection, channel conversion (Pillow's arithmetic) and atomic
// PNG writing. The codecs themselves live in src/detail/image_{png,jpeg,tiff}.cpp.
#include "pix2pix/io/image_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>

#include "io/atomic_file.h"
#include "io/image_codecs.h"
#include "pix2pix/error.h"

namespace pix2pix {
namespace {

struct FileCloser {
  void operator()(std::FILE* file) const { std::fclose(file); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

// The format named by an image's first bytes (`magic`, up to 12), as detect_image_format.
ImageFormat sniff_format(const unsigned char* magic, size_t n, const std::string& name) {
  if (n == 0) throw Error(name, "empty file (0 bytes)");
  static const unsigned char kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n >= 8 && std::memcmp(magic, kPng, 8) == 0) return ImageFormat::kPng;
  if (n >= 3 && magic[0] == 0xff && magic[1] == 0xd8 && magic[2] == 0xff) return ImageFormat::kJpeg;
  if (n >= 4 && ((magic[0] == 'I' && magic[1] == 'I' && magic[3] == 0 &&
                  (magic[2] == 42 || magic[2] == 43)) ||
                 (magic[0] == 'M' && magic[1] == 'M' && magic[2] == 0 &&
                  (magic[3] == 42 || magic[3] == 43)))) {
    return ImageFormat::kTiff;
  }
  // Name a few formats people drop into data folders by mistake.
  std::string hint;
  if (n >= 6 && std::memcmp(magic, "GIF8", 4) == 0) hint = " (it is a GIF)";
  if (n >= 2 && magic[0] == 'B' && magic[1] == 'M') hint = " (it looks like a BMP)";
  if (n >= 12 && std::memcmp(magic, "RIFF", 4) == 0 && std::memcmp(magic + 8, "WEBP", 4) == 0) {
    hint = " (it is a WebP)";
  }
  throw Error(name, "not a PNG/JPEG/TIFF image" + hint);
}

// Opens `path` for reading, sniffs its format from the first bytes and rewinds.
FilePtr open_image(const std::string& path, ImageFormat* format) {
  FilePtr file(std::fopen(path.c_str(), "rb"));
  if (!file) throw Error(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat status;
  if (fstat(fileno(file.get()), &status) == 0 && S_ISDIR(status.st_mode)) {
    throw Error(path, "is a folder, not an image file");
  }
  unsigned char magic[12] = {};
  const size_t n = std::fread(magic, 1, sizeof(magic), file.get());
  if (n == 0 && std::ferror(file.get())) {
    throw Error(path, std::string("cannot read: ") + std::strerror(errno));
  }
  *format = sniff_format(magic, n, path);
  std::rewind(file.get());
  return file;
}

// The checks write_png and encode_png make before encoding; `subject` starts the messages.
void check_png_writable(const std::string& subject, const Image& image,
                        const PngWriteOptions& options) {
  if (options.compression_level < 0 || options.compression_level > 9) {
    throw Error(subject, "PNG compression level " + std::to_string(options.compression_level) +
                             " is not in 0..9");
  }
  if (image.type == SampleType::kFloat32) {
    throw Error(subject, "cannot write a float32 image as PNG (PNG holds 8- or 16-bit samples)");
  }
  if (image.empty() || image.channels > 4) {
    throw Error(subject, "cannot write a " + std::to_string(image.width) + "x" +
                             std::to_string(image.height) + "x" + std::to_string(image.channels) +
                             " image as PNG (needs 1..4 channels and a positive size)");
  }
  if (image.data.size() != image.sample_count() * size_t(image.bytes_per_sample())) {
    throw Error(subject, "image data holds " + std::to_string(image.data.size()) +
                             " bytes, its size says " +
                             std::to_string(image.sample_count() * image.bytes_per_sample()));
  }
}

template <typename T>
T luma(T r, T g, T b);
// Pillow's L24 macro (Convert.c): ITU-R 601-2 in 16-bit fixed point, rounded.
template <>
uint8_t luma(uint8_t r, uint8_t g, uint8_t b) {
  return uint8_t((uint32_t(r) * 19595 + uint32_t(g) * 38470 + uint32_t(b) * 7471 + 0x8000) >> 16);
}
// Pillow has no 16-bit RGB; L24's weights are 2^-16 off, which shows at 16 bits, so round the
// exact ITU-R 601-2 sum instead.
template <>
uint16_t luma(uint16_t r, uint16_t g, uint16_t b) {
  return uint16_t((uint32_t(r) * 299 + uint32_t(g) * 587 + uint32_t(b) * 114 + 500) / 1000);
}
// Pillow's rgb2f: L(rgb) / 1000, in double so that gray -> RGB -> gray is exact.
template <>
float luma(float r, float g, float b) {
  return float((double(r) * 299 + double(g) * 587 + double(b) * 114) / 1000);
}

template <typename T>
T opaque();
template <>
uint8_t opaque() {
  return 255;
}
template <>
uint16_t opaque() {
  return 65535;
}
template <>
float opaque() {
  return 1.0f;
}

template <typename T>
void convert_pixels(const Image& in, Image* out) {
  const int in_channels = in.channels;
  const int out_channels = out->channels;
  const bool in_color = in_channels >= 3;
  const bool in_alpha = in_channels == 2 || in_channels == 4;
  const bool out_color = out_channels >= 3;
  const bool out_alpha = out_channels == 2 || out_channels == 4;
  const size_t pixels = size_t(in.width) * size_t(in.height);
  const T* src = in.samples<T>();
  T* dst = out->samples<T>();
  for (size_t i = 0; i < pixels; ++i, src += in_channels, dst += out_channels) {
    if (out_color) {
      if (in_color) {
        dst[0] = src[0];
        dst[1] = src[1];
        dst[2] = src[2];
      } else {
        dst[0] = dst[1] = dst[2] = src[0];
      }
    } else {
      dst[0] = in_color ? luma<T>(src[0], src[1], src[2]) : src[0];
    }
    if (out_alpha) dst[out_channels - 1] = in_alpha ? src[in_channels - 1] : opaque<T>();
  }
}

}  // namespace

int bytes_per_sample(SampleType type) {
  switch (type) {
    case SampleType::kUint8:
      return 1;
    case SampleType::kUint16:
      return 2;
    case SampleType::kFloat32:
      return 4;
  }
  return 1;
}

const char* to_string(SampleType type) {
  switch (type) {
    case SampleType::kUint8:
      return "uint8";
    case SampleType::kUint16:
      return "uint16";
    case SampleType::kFloat32:
      return "float32";
  }
  return "?";
}

const char* to_string(ImageFormat format) {
  switch (format) {
    case ImageFormat::kPng:
      return "PNG";
    case ImageFormat::kJpeg:
      return "JPEG";
    case ImageFormat::kTiff:
      return "TIFF";
  }
  return "?";
}

Image::Image(int width_, int height_, int channels_, SampleType type_)
    : width(width_), height(height_), channels(channels_), type(type_) {
  if (width <= 0 || height <= 0 || channels <= 0) {
    throw Error("Image", "invalid size " + std::to_string(width) + "x" + std::to_string(height) +
                             "x" + std::to_string(channels));
  }
  data.assign(sample_count() * size_t(bytes_per_sample()), 0);
}

double Image::max_value() const {
  switch (type) {
    case SampleType::kUint8:
      return 255.0;
    case SampleType::kUint16:
      return 65535.0;
    case SampleType::kFloat32:
      return 1.0;
  }
  return 1.0;
}

bool operator==(const Image& a, const Image& b) {
  return a.width == b.width && a.height == b.height && a.channels == b.channels &&
         a.type == b.type && a.data == b.data;
}

namespace detail {

void check_dimensions(const std::string& path, int64_t width, int64_t height, int channels,
                      SampleType type, int64_t max_pixels) {
  if (width <= 0 || height <= 0) {
    throw Error(path, "invalid image size " + std::to_string(width) + "x" + std::to_string(height) +
                          " in the header");
  }
  if (width > INT32_MAX || height > INT32_MAX) {
    throw Error(path, "image size " + std::to_string(width) + "x" + std::to_string(height) +
                          " in the header is too large");
  }
  const int64_t pixels = width * height;  // < 2^62: no overflow
  if (max_pixels > 0 && pixels > max_pixels) {
    throw Error(path, "image is " + std::to_string(width) + "x" + std::to_string(height) + " = " +
                          std::to_string(pixels) + " pixels, more than the limit of " +
                          std::to_string(max_pixels) + " (ReadOptions::max_pixels)");
  }
  // A TIFF header can claim up to 65535 samples per pixel: without this, a 150-byte file made
  // read_image allocate and clear gigabytes (found by fuzz/fuzz_image_decode).
  const int64_t weight = (int64_t{channels} + 3) / 4;
  if (max_pixels > 0 && weight > 1 && pixels > max_pixels / weight) {
    throw Error(path, "image is " + std::to_string(width) + "x" + std::to_string(height) +
                          " with " + std::to_string(channels) + " samples per pixel, counting as " +
                          std::to_string(pixels * weight) + " pixels, more than the limit of " +
                          std::to_string(max_pixels) + " (ReadOptions::max_pixels)");
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(uint64_t(pixels), uint64_t(channels) * bytes_per_sample(type),
                             &bytes) ||
      bytes > uint64_t(PTRDIFF_MAX)) {
    throw Error(path, "image of " + std::to_string(pixels) + " pixels is too large to hold");
  }
}

Image cmyk_to_rgb(const Image& cmyk) {
  Image rgb(cmyk.width, cmyk.height, 3, cmyk.type);
  const size_t pixels = size_t(cmyk.width) * size_t(cmyk.height);
  const int step = cmyk.channels;
  if (cmyk.type == SampleType::kUint8) {
    const uint8_t* src = cmyk.samples<uint8_t>();
    uint8_t* dst = rgb.samples<uint8_t>();
    for (size_t i = 0; i < pixels; ++i, src += step, dst += 3) {
      const int nk = 255 - src[3];
      for (int c = 0; c < 3; ++c) {
        const int t = src[c] * nk + 128;  // Pillow's MULDIV255
        const int value = nk - (((t >> 8) + t) >> 8);
        dst[c] = uint8_t(value < 0 ? 0 : value > 255 ? 255 : value);
      }
    }
  } else if (cmyk.type == SampleType::kUint16) {
    const uint16_t* src = cmyk.samples<uint16_t>();
    uint16_t* dst = rgb.samples<uint16_t>();
    for (size_t i = 0; i < pixels; ++i, src += step, dst += 3) {
      const uint32_t nk = 65535u - src[3];
      for (int c = 0; c < 3; ++c) dst[c] = uint16_t(nk - (src[c] * nk + 32767u) / 65535u);
    }
  } else {
    const float* src = cmyk.samples<float>();
    float* dst = rgb.samples<float>();
    for (size_t i = 0; i < pixels; ++i, src += step, dst += 3) {
      const float nk = 1.0f - src[3];
      for (int c = 0; c < 3; ++c) dst[c] = nk - src[c] * nk;
    }
  }
  return rgb;
}

Image convert_channels(const Image& image, int channels, const std::string& subject) {
  if (channels == image.channels) return image;
  if (image.channels < 1 || image.channels > 4 || channels < 1 || channels > 4) {
    throw Error(subject, "cannot convert " + std::to_string(image.channels) + " channels to " +
                             std::to_string(channels) +
                             " (conversions work between 1 (L), 2 (LA), 3 (RGB) and 4 (RGBA))");
  }
  Image out(image.width, image.height, channels, image.type);
  switch (image.type) {
    case SampleType::kUint8:
      convert_pixels<uint8_t>(image, &out);
      break;
    case SampleType::kUint16:
      convert_pixels<uint16_t>(image, &out);
      break;
    case SampleType::kFloat32:
      convert_pixels<float>(image, &out);
      break;
  }
  return out;
}

}  // namespace detail

Image convert_channels(const Image& image, int channels) {
  return detail::convert_channels(image, channels, "image");
}

Image read_image(const std::string& path, const ReadOptions& options) {
  if (options.channels < 0) {
    throw Error(path, "invalid ReadOptions::channels " + std::to_string(options.channels));
  }
  ImageFormat format;
  FilePtr file = open_image(path, &format);
  Image image;
  switch (format) {
    case ImageFormat::kPng:
      image = detail::decode_png(path, file.get(), options.max_pixels);
      break;
    case ImageFormat::kJpeg:
      image = detail::decode_jpeg(path, file.get(), options.max_pixels);
      break;
    case ImageFormat::kTiff:
      file.reset();
      image = detail::decode_tiff(path, options.max_pixels);
      break;
  }
  if (options.channels == 0 || options.channels == image.channels) return image;
  return detail::convert_channels(image, options.channels, path);
}

ImageInfo read_image_info(const std::string& path) {
  ImageFormat format;
  FilePtr file = open_image(path, &format);
  switch (format) {
    case ImageFormat::kPng:
      return detail::png_info(path, file.get());
    case ImageFormat::kJpeg:
      return detail::jpeg_info(path, file.get());
    case ImageFormat::kTiff:
      file.reset();
      return detail::tiff_info(path);
  }
  throw Error(path, "unknown image format");
}

void write_png(const std::string& path, const Image& image, const PngWriteOptions& options) {
  check_png_writable(path, image, options);
  detail::AtomicFile file(path);
  detail::encode_png(path, image, options.compression_level, file.stream());
  file.commit();
}

ImageFormat detect_image_format(std::string_view bytes, const std::string& name) {
  return sniff_format(reinterpret_cast<const unsigned char*>(bytes.data()),
                      std::min<size_t>(bytes.size(), 12), name);
}

Image decode_image(std::string_view bytes, const std::string& name, const ReadOptions& options) {
  if (options.channels < 0) {
    throw Error(name, "invalid ReadOptions::channels " + std::to_string(options.channels));
  }
  Image image;
  const ImageFormat format = detect_image_format(bytes, name);
  if (format == ImageFormat::kTiff) {
    image = detail::decode_tiff_bytes(name, bytes, options.max_pixels);
  } else {
    // The PNG and JPEG codecs read a FILE*: a read-only stream over the caller's bytes.
    FilePtr file(fmemopen(const_cast<char*>(bytes.data()), bytes.size(), "rb"));
    if (!file) {
      throw Error(name, std::string("fmemopen: ") + std::strerror(errno), ErrorKind::kRuntime);
    }
    image = format == ImageFormat::kPng ? detail::decode_png(name, file.get(), options.max_pixels)
                                        : detail::decode_jpeg(name, file.get(), options.max_pixels);
  }
  if (options.channels == 0 || options.channels == image.channels) return image;
  return detail::convert_channels(image, options.channels, name);
}

std::string encode_png(const Image& image, const PngWriteOptions& options) {
  check_png_writable("png", image, options);
  char* buffer = nullptr;
  size_t size = 0;
  FilePtr file(open_memstream(&buffer, &size));
  if (!file)
    throw Error("png", std::string("open_memstream: ") + std::strerror(errno), ErrorKind::kRuntime);
  // The stream owns `buffer` until closed; freed on every path below.
  std::unique_ptr<char, decltype(&std::free)> owned(nullptr, &std::free);
  try {
    detail::encode_png("png", image, options.compression_level, file.get());
  } catch (...) {
    file.reset();
    owned.reset(buffer);
    throw;
  }
  const bool flushed = std::fclose(file.release()) == 0;  // buffer and size final only now
  owned.reset(buffer);
  if (!flushed || buffer == nullptr) throw Error("png", "out of memory", ErrorKind::kRuntime);
  return std::string(buffer, size);
}

}  // namespace pix2pix
