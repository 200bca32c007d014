// TIFF decoding with libtiff: strips or tiles, contiguous or planar samples, 1/2/4/8/16-bit
// integers and 32-bit floats, read as stored (TIFFReadRGBA would reduce everything to 8 bits, so
// it serves only 8-bit YCbCr, which it does not reduce). Errors and warnings go to per-file
// handlers (libtiff >= 4.5), never to stderr. Supported colour models: gray (min-is-black or
// min-is-white), RGB, palette, CMYK and YCbCr; to add one, extend `read_layout` and `decode`.
#include <sys/mman.h>
#include <tiffio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "io/image_codecs.h"
#include "pix2pix/error.h"

namespace pix2pix::detail {
namespace {

// The first error libtiff reported for this file (later ones are usually consequences).
struct TiffErrors {
  bool has_error = false;
  char message[512] = {};
};

int on_tiff_error(TIFF*, void* user_data, const char*, const char* format, va_list args) {
  auto* errors = static_cast<TiffErrors*>(user_data);
  if (!errors->has_error) {
    std::vsnprintf(errors->message, sizeof(errors->message), format, args);
    errors->has_error = true;
  }
  return 1;  // handled: libtiff must not call its global (stderr) handler
}

// Warnings (unknown tags, odd but readable values) do not affect pixels: stay quiet.
int on_tiff_warning(TIFF*, void*, const char*, const char*, va_list) { return 1; }

// How the samples of the first page are stored and what read_image makes of them.
struct TiffLayout {
  enum class Model { kGray, kRgb, kPalette, kCmyk, kYcbcrViaRgba };
  uint32_t width = 0;
  uint32_t height = 0;
  uint16_t samples = 1;  // samples per pixel in the file
  uint16_t bits = 1;     // bits per sample in the file
  bool planar = false;   // PLANARCONFIG_SEPARATE: one plane per sample
  bool tiled = false;
  bool min_is_white = false;
  Model model = Model::kGray;
  SampleType type = SampleType::kUint8;  // of the unpacked samples and of the result
  int channels = 1;                      // of the result
  std::string color;
};

// Reads `count` pixels of `buffer_samples` samples each, packed at `bits` bits, starting at pixel
// `first` of `row`, into channels channel0.. of image row y from column x0.
void unpack_row(const uint8_t* row, int bits, int buffer_samples, uint32_t first, uint32_t count,
                Image* image, uint32_t y, uint32_t x0, int channel0) {
  const size_t sample_bytes = size_t(image->bytes_per_sample());
  uint8_t* out =
      &image->data[((size_t(y) * image->width + x0) * image->channels + channel0) * sample_bytes];
  if (bits >= 8 && buffer_samples == image->channels) {
    std::memcpy(out, row + size_t(first) * buffer_samples * sample_bytes,
                size_t(count) * buffer_samples * sample_bytes);
    return;
  }
  const size_t pixel_step = size_t(image->channels) * sample_bytes;
  if (bits >= 8) {
    const uint8_t* in = row + size_t(first) * buffer_samples * sample_bytes;
    const size_t in_bytes = size_t(buffer_samples) * sample_bytes;
    for (uint32_t i = 0; i < count; ++i, in += in_bytes, out += pixel_step) {
      std::memcpy(out, in, in_bytes);
    }
    return;
  }
  const unsigned mask = (1u << bits) - 1;
  for (uint32_t i = 0; i < count; ++i, out += pixel_step) {
    for (int c = 0; c < buffer_samples; ++c) {
      const size_t bit = (size_t(first + i) * buffer_samples + c) * bits;
      out[c] = uint8_t((row[bit / 8] >> (8 - bits - bit % 8)) & mask);  // MSB first
    }
  }
}

struct TiffCloser {
  void operator()(TIFF* tiff) const { TIFFClose(tiff); }
};

class TiffReader {
 public:
  // Reads the file at `path`, or, when `fd` >= 0, the open file `fd` (which it then owns and
  // closes), `path` naming it in messages.
  explicit TiffReader(const std::string& path, int fd = -1) : path_(path) {
    TIFFOpenOptions* options = TIFFOpenOptionsAlloc();
    if (options == nullptr) {
      if (fd >= 0) close(fd);
      throw Error(path, "out of memory", ErrorKind::kRuntime);
    }
    TIFFOpenOptionsSetErrorHandlerExtR(options, on_tiff_error, &errors_);
    TIFFOpenOptionsSetWarningHandlerExtR(options, on_tiff_warning, nullptr);
    tiff_.reset(fd >= 0 ? TIFFFdOpenExt(fd, path.c_str(), "r", options)
                        : TIFFOpenExt(path.c_str(), "r", options));
    TIFFOpenOptionsFree(options);
    if (tiff_ == nullptr && fd >= 0) close(fd);  // TIFFFdOpen closes it only once open
    if (tiff_ == nullptr) fail("truncated or corrupt TIFF data");
    layout_ = read_layout();
  }
  TiffReader(const TiffReader&) = delete;
  TiffReader& operator=(const TiffReader&) = delete;

  ImageInfo info() const {
    // Without this, a width of 2^32 - 144 came back as -144 (found by fuzz/fuzz_image_decode).
    check_dimensions(path_, layout_.width, layout_.height, layout_.channels, layout_.type,
                     /*max_pixels=*/0);
    ImageInfo info;
    info.format = ImageFormat::kTiff;
    info.width = int(layout_.width);
    info.height = int(layout_.height);
    info.channels = layout_.channels;
    info.bit_depth = layout_.bits;
    info.type = layout_.type;
    info.color = layout_.color;
    return info;
  }

  Image decode(int64_t max_pixels) {
    const TiffLayout& layout = layout_;
    check_dimensions(path_, layout.width, layout.height,
                     std::max<int>(layout.samples, layout.channels), layout.type, max_pixels);
    if (layout.model == TiffLayout::Model::kYcbcrViaRgba) return decode_via_rgba();
    Image raw(int(layout.width), int(layout.height), layout.samples, layout.type);
    if (layout.tiled) {
      read_tiles(&raw);
    } else {
      read_strips(&raw);
    }
    if (layout.bits < 8 && layout.model != TiffLayout::Model::kPalette) {
      // 1-bit -> 0/255, 2-bit -> x85, 4-bit -> x17, as Pillow's unpackers.
      const unsigned scale = 255 / ((1u << layout.bits) - 1);
      for (uint8_t& value : raw.data) value = uint8_t(value * scale);
    }
    if (layout.min_is_white) invert_first_channel(&raw);
    switch (layout.model) {
      case TiffLayout::Model::kPalette:
        return apply_palette(raw);
      case TiffLayout::Model::kCmyk:
        return cmyk_to_rgb(raw);
      default:
        return raw;
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    if (errors_.has_error) throw Error(path_, what + " (" + errors_.message + ")");
    throw Error(path_, what);
  }

  [[noreturn]] void unsupported(const std::string& what) const {
    throw Error(path_, "unsupported TIFF: " + what);
  }

  TiffLayout read_layout() {
    TiffLayout layout;
    if (!TIFFGetField(tiff_.get(), TIFFTAG_IMAGEWIDTH, &layout.width) ||
        !TIFFGetField(tiff_.get(), TIFFTAG_IMAGELENGTH, &layout.height)) {
      fail("corrupt TIFF: no image size");
    }
    uint16_t sample_format = SAMPLEFORMAT_UINT, planar = PLANARCONFIG_CONTIG, photometric = 0;
    uint16_t compression = COMPRESSION_NONE;
    TIFFGetFieldDefaulted(tiff_.get(), TIFFTAG_SAMPLESPERPIXEL, &layout.samples);
    TIFFGetFieldDefaulted(tiff_.get(), TIFFTAG_BITSPERSAMPLE, &layout.bits);
    TIFFGetFieldDefaulted(tiff_.get(), TIFFTAG_SAMPLEFORMAT, &sample_format);
    TIFFGetFieldDefaulted(tiff_.get(), TIFFTAG_PLANARCONFIG, &planar);
    TIFFGetFieldDefaulted(tiff_.get(), TIFFTAG_COMPRESSION, &compression);
    if (!TIFFGetField(tiff_.get(), TIFFTAG_PHOTOMETRIC, &photometric)) {
      photometric = layout.samples >= 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK;
    }
    layout.planar = planar == PLANARCONFIG_SEPARATE && layout.samples > 1;
    layout.tiled = TIFFIsTiled(tiff_.get()) != 0;
    const std::string bits = std::to_string(layout.bits) + "-bit";
    if (layout.samples < 1) fail("corrupt TIFF: no samples per pixel");

    if (sample_format == SAMPLEFORMAT_IEEEFP) {
      if (layout.bits != 32) unsupported(bits + " floating-point samples (only 32-bit)");
      layout.type = SampleType::kFloat32;
    } else if (sample_format == SAMPLEFORMAT_UINT || sample_format == SAMPLEFORMAT_VOID) {
      if (layout.bits == 16) {
        layout.type = SampleType::kUint16;
      } else if (layout.bits == 1 || layout.bits == 2 || layout.bits == 4 || layout.bits == 8) {
        layout.type = SampleType::kUint8;
      } else {
        unsupported(bits + " integer samples (1, 2, 4, 8 or 16 bits)");
      }
    } else {
      unsupported("signed or complex samples (sample format " + std::to_string(sample_format) +
                  ")");
    }
    const bool integer = layout.type != SampleType::kFloat32;
    layout.channels = layout.samples;
    switch (photometric) {
      case PHOTOMETRIC_MINISWHITE:
      case PHOTOMETRIC_MINISBLACK:
        layout.model = TiffLayout::Model::kGray;
        layout.min_is_white = photometric == PHOTOMETRIC_MINISWHITE;
        if (layout.min_is_white && !integer) unsupported("min-is-white float samples");
        layout.color = layout.samples == 1   ? "gray"
                       : layout.samples == 2 ? "gray+alpha"
                                             : std::to_string(layout.samples) + " samples";
        break;
      case PHOTOMETRIC_RGB:
        if (layout.samples < 3) fail("corrupt TIFF: RGB with fewer than 3 samples");
        layout.model = TiffLayout::Model::kRgb;
        layout.color = layout.samples == 3   ? "rgb"
                       : layout.samples == 4 ? "rgba"
                                             : std::to_string(layout.samples) + " samples";
        break;
      case PHOTOMETRIC_PALETTE:
        if (layout.samples != 1 || !integer || layout.bits > 8) {
          unsupported("palette with " + std::to_string(layout.samples) + " " + bits + " samples");
        }
        layout.model = TiffLayout::Model::kPalette;
        layout.channels = 3;
        layout.color = "palette";
        break;
      case PHOTOMETRIC_SEPARATED: {
        uint16_t ink_set = INKSET_CMYK;
        TIFFGetFieldDefaulted(tiff_.get(), TIFFTAG_INKSET, &ink_set);
        if (ink_set != INKSET_CMYK || layout.samples < 4 || !integer || layout.bits < 8) {
          unsupported("separated (ink) image other than 8/16-bit CMYK");
        }
        layout.model = TiffLayout::Model::kCmyk;
        layout.channels = 3;
        layout.color = "cmyk";
        break;
      }
      case PHOTOMETRIC_YCBCR:
        layout.color = "ycbcr";
        layout.channels = 3;
        if (compression == COMPRESSION_JPEG && layout.samples == 3 && layout.bits == 8) {
          // libjpeg converts to RGB for us, with full-resolution chroma.
          TIFFSetField(tiff_.get(), TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
          layout.model = TiffLayout::Model::kRgb;
        } else if (layout.bits == 8 && integer) {
          layout.model = TiffLayout::Model::kYcbcrViaRgba;
        } else {
          unsupported(bits + " YCbCr");
        }
        break;
      default:
        unsupported("photometric interpretation " + std::to_string(photometric));
    }
    return layout;
  }

  // Bytes of one row of `pixels` pixels in a strip or tile buffer.
  size_t row_bytes(uint32_t pixels) const {
    const int buffer_samples = layout_.planar ? 1 : layout_.samples;
    return (size_t(pixels) * size_t(buffer_samples) * layout_.bits + 7) / 8;
  }

  void read_strips(Image* raw) {
    const TiffLayout& layout = layout_;
    uint32_t rows_per_strip = layout.height;
    TIFFGetFieldDefaulted(tiff_.get(), TIFFTAG_ROWSPERSTRIP, &rows_per_strip);
    if (rows_per_strip == 0 || rows_per_strip > layout.height) rows_per_strip = layout.height;
    const size_t bytes_per_row = row_bytes(layout.width);
    std::vector<uint8_t> buffer(bytes_per_row * rows_per_strip);
    const int planes = layout.planar ? layout.samples : 1;
    const int buffer_samples = layout.planar ? 1 : layout.samples;
    for (int plane = 0; plane < planes; ++plane) {
      for (uint32_t row0 = 0; row0 < layout.height; row0 += rows_per_strip) {
        const uint32_t rows = std::min(rows_per_strip, layout.height - row0);
        const tmsize_t wanted = tmsize_t(bytes_per_row * rows);
        const uint32_t strip = TIFFComputeStrip(tiff_.get(), row0, uint16_t(plane));
        if (TIFFReadEncodedStrip(tiff_.get(), strip, buffer.data(), wanted) != wanted) {
          fail("truncated or corrupt TIFF data in strip " + std::to_string(strip));
        }
        for (uint32_t r = 0; r < rows; ++r) {
          unpack_row(&buffer[r * bytes_per_row], layout.bits, buffer_samples, 0, layout.width, raw,
                     row0 + r, 0, plane);
        }
      }
    }
  }

  void read_tiles(Image* raw) {
    const TiffLayout& layout = layout_;
    uint32_t tile_width = 0, tile_height = 0;
    if (!TIFFGetField(tiff_.get(), TIFFTAG_TILEWIDTH, &tile_width) ||
        !TIFFGetField(tiff_.get(), TIFFTAG_TILELENGTH, &tile_height) || tile_width == 0 ||
        tile_height == 0) {
      fail("corrupt TIFF: no tile size");
    }
    const size_t bytes_per_row = row_bytes(tile_width);
    const tmsize_t tile_bytes = tmsize_t(bytes_per_row * tile_height);
    std::vector<uint8_t> buffer(static_cast<size_t>(tile_bytes));
    const int planes = layout.planar ? layout.samples : 1;
    const int buffer_samples = layout.planar ? 1 : layout.samples;
    for (int plane = 0; plane < planes; ++plane) {
      for (uint32_t y0 = 0; y0 < layout.height; y0 += tile_height) {
        for (uint32_t x0 = 0; x0 < layout.width; x0 += tile_width) {
          const uint32_t tile = TIFFComputeTile(tiff_.get(), x0, y0, 0, uint16_t(plane));
          if (TIFFReadEncodedTile(tiff_.get(), tile, buffer.data(), tile_bytes) != tile_bytes) {
            fail("truncated or corrupt TIFF data in tile " + std::to_string(tile));
          }
          const uint32_t rows = std::min(tile_height, layout.height - y0);
          const uint32_t columns = std::min(tile_width, layout.width - x0);
          for (uint32_t r = 0; r < rows; ++r) {
            unpack_row(&buffer[r * bytes_per_row], layout.bits, buffer_samples, 0, columns, raw,
                       y0 + r, x0, plane);
          }
        }
      }
    }
  }

  Image decode_via_rgba() {
    const TiffLayout& layout = layout_;
    std::vector<uint32_t> raster(size_t(layout.width) * layout.height);
    if (!TIFFReadRGBAImageOriented(tiff_.get(), layout.width, layout.height, raster.data(),
                                   ORIENTATION_TOPLEFT, 0)) {
      fail("truncated or corrupt TIFF data");
    }
    Image image(int(layout.width), int(layout.height), 3);
    uint8_t* out = image.data.data();
    for (uint32_t pixel : raster) {
      *out++ = uint8_t(TIFFGetR(pixel));
      *out++ = uint8_t(TIFFGetG(pixel));
      *out++ = uint8_t(TIFFGetB(pixel));
    }
    return image;
  }

  static void invert_first_channel(Image* image) {
    const size_t pixels = size_t(image->width) * image->height;
    if (image->type == SampleType::kUint8) {
      uint8_t* values = image->samples<uint8_t>();
      for (size_t i = 0; i < pixels; ++i) values[i * image->channels] ^= 0xff;
    } else {
      uint16_t* values = image->samples<uint16_t>();
      for (size_t i = 0; i < pixels; ++i) values[i * image->channels] ^= 0xffff;
    }
  }

  // Colour map entries are 16-bit; Pillow keeps their high bytes.
  Image apply_palette(const Image& indices) const {
    uint16_t *red = nullptr, *green = nullptr, *blue = nullptr;
    if (!TIFFGetField(tiff_.get(), TIFFTAG_COLORMAP, &red, &green, &blue)) {
      fail("corrupt TIFF: palette image without a colour map");
    }
    Image image(indices.width, indices.height, 3);
    const uint8_t* in = indices.data.data();
    uint8_t* out = image.data.data();
    for (size_t i = 0; i < indices.data.size(); ++i, out += 3) {
      out[0] = uint8_t(red[in[i]] >> 8);
      out[1] = uint8_t(green[in[i]] >> 8);
      out[2] = uint8_t(blue[in[i]] >> 8);
    }
    return image;
  }

  std::string path_;
  TiffErrors errors_;
  std::unique_ptr<TIFF, TiffCloser> tiff_;  // after errors_: closes before they go
  TiffLayout layout_;
};

}  // namespace

Image decode_tiff(const std::string& path, int64_t max_pixels) {
  return TiffReader(path).decode(max_pixels);
}

ImageInfo tiff_info(const std::string& path) { return TiffReader(path).info(); }

Image decode_tiff_bytes(const std::string& name, std::string_view bytes, int64_t max_pixels) {
  // libtiff seeks and maps its input: an anonymous in-memory file gives it exactly what a file
  // on disk would, so both paths decode through the same code.
  const int fd = memfd_create("pix2pix-tiff", MFD_CLOEXEC);
  if (fd < 0)
    throw Error(name, std::string("memfd_create: ") + std::strerror(errno), ErrorKind::kRuntime);
  for (size_t done = 0; done < bytes.size();) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = errno;
      close(fd);
      throw Error(name, std::string("cannot buffer the TIFF: ") + std::strerror(error),
                  ErrorKind::kRuntime);
    }
    done += size_t(n);
  }
  lseek(fd, 0, SEEK_SET);
  return TiffReader(name, fd).decode(max_pixels);
}

}  // namespace pix2pix::detail
