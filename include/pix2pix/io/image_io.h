// Decoding and encoding images: the `Image` container (HWC, 8/16-bit or float samples), reading
// PNG, JPEG and TIFF files into it, converting between channel counts the way Pillow does, and
// writing PNG files atomically. Plain C++ (no torch): transforms turn an Image into a tensor.
//
// The format of a file is detected from its first bytes, never from its extension. To add a
// format: write `src/detail/image_<format>.cpp` with the decode / info functions declared in
// `src/io/image_codecs.h`, add its signature to `open_image` in src/io/image_io.cpp and a case to
// its callers, add an `ImageFormat` value here, and find its Debian library in CMakeLists.txt.
//
// Decoded values match Pillow (the reference implementation's image library) exactly: JPEGs are
// decoded by libjpeg-turbo with Pillow's settings, channel conversions use Pillow's arithmetic.
// Every failure is a pix2pix::Error whose message starts with the file's path.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pix2pix {

/// How one sample (one channel of one pixel) is stored.
enum class SampleType {
  kUint8,    ///< 0..255
  kUint16,   ///< 0..65535, native byte order
  kFloat32,  ///< IEEE float, usually 0..1 (as stored in the file; not clamped)
};

/// Bytes one sample of `type` takes: 1, 2 or 4.
int bytes_per_sample(SampleType type);

/// "uint8", "uint16" or "float32".
const char* to_string(SampleType type);

/// An image in memory: height x width x channels, interleaved (HWC), rows top to bottom.
/// Channels follow Pillow's modes: 1 = L (gray), 2 = LA, 3 = RGB, 4 = RGBA; more than 4 only
/// when a TIFF stores extra samples.
struct Image {
  int width = 0;                         ///< pixels per row
  int height = 0;                        ///< rows
  int channels = 0;                      ///< samples per pixel
  SampleType type = SampleType::kUint8;  ///< how each sample is stored
  std::vector<uint8_t> data;             ///< height * width * channels samples, raw bytes

  /// An empty image (0 x 0).
  Image() = default;
  /// A zero-filled image of the given size; throws pix2pix::Error for non-positive sizes.
  Image(int width, int height, int channels, SampleType type = SampleType::kUint8);

  /// Bytes per sample of `type`: 1, 2 or 4.
  int bytes_per_sample() const { return pix2pix::bytes_per_sample(type); }
  /// Bytes per row: width * channels * bytes_per_sample().
  size_t row_bytes() const { return size_t(width) * size_t(channels) * size_t(bytes_per_sample()); }
  /// Samples in the image: height * width * channels.
  size_t sample_count() const { return size_t(height) * size_t(width) * size_t(channels); }
  /// True when the image has no pixels.
  bool empty() const { return width <= 0 || height <= 0 || channels <= 0; }
  /// The largest value of an opaque alpha / white sample: 255, 65535 or 1.0.
  double max_value() const;

  /// All samples as an array of T; T must match `type` (uint8_t, uint16_t or float).
  template <typename T>
  T* samples() {
    assert(sizeof(T) == size_t(bytes_per_sample()));
    return reinterpret_cast<T*>(data.data());
  }
  /// All samples as an array of T; T must match `type` (uint8_t, uint16_t or float).
  template <typename T>
  const T* samples() const {
    assert(sizeof(T) == size_t(bytes_per_sample()));
    return reinterpret_cast<const T*>(data.data());
  }
  /// The sample at row y, column x, channel c; T must match `type`.
  template <typename T>
  T& at(int y, int x, int c) {
    return samples<T>()[(size_t(y) * size_t(width) + size_t(x)) * size_t(channels) + size_t(c)];
  }
  /// The sample at row y, column x, channel c; T must match `type`.
  template <typename T>
  const T& at(int y, int x, int c) const {
    return samples<T>()[(size_t(y) * size_t(width) + size_t(x)) * size_t(channels) + size_t(c)];
  }
};

/// Same size, channels, type and bytes.
bool operator==(const Image& a, const Image& b);
/// Not operator==.
inline bool operator!=(const Image& a, const Image& b) { return !(a == b); }

/// How read_image decodes a file.
struct ReadOptions {
  /// Channels to return: 0 keeps the file's (see read_image); 1..4 converts with
  /// convert_channels (Pillow's L, LA, RGB, RGBA). Other counts only when the file has them.
  int channels = 0;
  /// Files whose header claims more pixels (width * height) are rejected before any pixel
  /// memory is allocated. A pixel of more than 4 samples (TIFF extra samples) counts as
  /// ceil(samples / 4) pixels, so that the limit bounds memory too. 0 or less: no limit.
  int64_t max_pixels = int64_t{1} << 28;
};

/// Image file formats read_image understands.
enum class ImageFormat {
  kPng,   ///< PNG, via libpng
  kJpeg,  ///< JPEG (JFIF, Exif, Adobe), via libjpeg-turbo
  kTiff,  ///< TIFF (classic and BigTIFF), via libtiff
};

/// "PNG", "JPEG" or "TIFF".
const char* to_string(ImageFormat format);

/// What a file holds, read from its header without decoding pixels.
struct ImageInfo {
  ImageFormat format = ImageFormat::kPng;  ///< detected from the file's first bytes
  int width = 0;                           ///< pixels per row
  int height = 0;                          ///< rows
  int channels = 0;                        ///< channels read_image returns with channels = 0
  int bit_depth = 0;                       ///< bits per sample in the file: 1, 2, 4, 8, 16, 32
  SampleType type = SampleType::kUint8;    ///< sample type read_image returns
  /// The file's colour model in words: "gray", "gray+alpha", "rgb", "rgba", "palette",
  /// "palette+alpha", "cmyk", "ycbcr", or "N samples".
  std::string color;
};

/// Decodes a PNG, JPEG or TIFF file (detected from its first bytes).
///
/// With options.channels = 0 the result has the file's channels, except: palettes expand to RGB,
/// a PNG tRNS chunk becomes an alpha channel (gray -> LA, RGB/palette -> RGBA), CMYK (JPEG and
/// TIFF) becomes RGB with Pillow's formula, and PNG/TIFF samples below 8 bits scale to 8 bits
/// (1-bit -> 0/255, 2-bit -> x85, 4-bit -> x17). 16-bit files stay 16-bit; float TIFFs stay
/// float. EXIF orientation is not applied (Pillow does not either); a TIFF's first page is read.
///
/// Throws pix2pix::Error (message "<path>: <reason>") for a missing, empty, truncated or corrupt
/// file, an unknown format, an unsupported variant, or more than options.max_pixels pixels.
Image read_image(const std::string& path, const ReadOptions& options = {});

/// The header of a PNG, JPEG or TIFF file, without decoding pixels (errors as read_image).
ImageInfo read_image_info(const std::string& path);

/// The format of an encoded image from its first bytes, as read_image detects it. Throws
/// pix2pix::Error("<name>: ...") for empty bytes or an unknown format (naming GIF, BMP, WebP).
ImageFormat detect_image_format(std::string_view bytes, const std::string& name);

/// Decodes a PNG, JPEG or TIFF held in memory (an upload, say) exactly as read_image decodes the
/// same bytes from a file: same result, same checks, same options.max_pixels. `name` stands for
/// the path in error messages ("<name>: <reason>"); the bytes are not copied.
Image decode_image(std::string_view bytes, const std::string& name,
                   const ReadOptions& options = {});

/// Converts between channel counts with Pillow's conventions: gray -> RGB replicates;
/// RGB -> gray is ITU-R 601-2 luma, for 8 bits exactly Pillow's
/// (R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16, for 16 bits (which Pillow lacks)
/// (R * 299 + G * 587 + B * 114 + 500) / 1000, for floats (R * 299 + G * 587 + B * 114) / 1000;
/// adding alpha makes it opaque (max_value()); removing alpha drops it (no compositing). Any
/// direction between 1..4 channels works; other counts only to themselves. Throws
/// pix2pix::Error("image: cannot convert ...") otherwise.
Image convert_channels(const Image& image, int channels);

/// How write_png encodes.
struct PngWriteOptions {
  /// zlib level 0 (none, fastest) .. 9 (smallest). 6 is zlib's and Pillow's default; on a
  /// 512x256 photo 3 writes ~2.5x faster for a ~7% larger file, 1 ~4x faster for ~11%.
  int compression_level = 6;
};

/// Writes an 8- or 16-bit image with 1..4 channels as PNG (gray, gray+alpha, RGB, RGBA).
/// Atomic: the file is written to a temporary file in the same folder and renamed over `path`,
/// so readers never see a partial file and a failure leaves nothing behind (no fsync: atomic for
/// readers, not across a power cut). Throws pix2pix::Error("<path>: <reason>"):
/// ErrorKind::kInput for an image PNG cannot hold or bad options, ErrorKind::kRuntime when the
/// folder is missing or not writable or the write fails.
void write_png(const std::string& path, const Image& image, const PngWriteOptions& options = {});

/// The PNG write_png would write for `image`, as bytes in memory (byte for byte the same file).
/// Throws pix2pix::Error("png: <reason>", ErrorKind::kInput) for an image PNG cannot hold or bad
/// options.
std::string encode_png(const Image& image, const PngWriteOptions& options = {});

}  // namespace pix2pix
