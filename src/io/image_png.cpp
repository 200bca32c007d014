// PNG decoding and encoding with libpng. libpng reports errors by longjmp: every libpng call
// runs inside a small function that does the setjmp and holds no C++ objects, so the jump never
// skips a destructor; the caller turns a failed call into a pix2pix::Error.
#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "io/image_codecs.h"
#include "pix2pix/error.h"

namespace pix2pix::detail {
namespace {

constexpr bool kLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

// Everything the libpng callbacks need; plain data only (see the file comment).
struct PngState {
  png_structp png = nullptr;
  png_infop info = nullptr;
  std::FILE* file = nullptr;
  bool truncated = false;
  int write_errno = 0;
  char message[256] = {};
  char warning[256] = {};  // the latest warning: png_check_IHDR explains "Invalid IHDR data" there
};

[[noreturn]] void on_png_error(png_structp png, png_const_charp message) {
  auto* state = static_cast<PngState*>(png_get_error_ptr(png));
  std::snprintf(state->message, sizeof(state->message), "%s", message);
  png_longjmp(png, 1);
}

// libpng's warnings (bad ancillary chunks, odd profiles) do not affect pixels: stay quiet, but
// keep the latest, which details some errors.
void on_png_warning(png_structp png, png_const_charp message) {
  auto* state = static_cast<PngState*>(png_get_error_ptr(png));
  std::snprintf(state->warning, sizeof(state->warning), "%s", message);
}

void on_png_read(png_structp png, png_bytep data, png_size_t length) {
  auto* state = static_cast<PngState*>(png_get_io_ptr(png));
  if (std::fread(data, 1, length, state->file) != length) {
    state->truncated = !std::ferror(state->file);
    png_error(png, state->truncated ? "truncated PNG data" : "read error");
  }
}

void on_png_write(png_structp png, png_bytep data, png_size_t length) {
  auto* state = static_cast<PngState*>(png_get_io_ptr(png));
  if (std::fwrite(data, 1, length, state->file) != length) {
    state->write_errno = errno;
    png_error(png, "write failed");
  }
}

void on_png_flush(png_structp) {}

// The protected steps: each returns false when libpng jumped out with an error.
bool read_header(PngState* state) {
  if (setjmp(png_jmpbuf(state->png))) return false;
  // Our own max_pixels check replaces libpng's 1,000,000-pixel-per-side default.
  png_set_user_limits(state->png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
  png_read_info(state->png, state->info);
  return true;
}

bool prepare_rows(PngState* state) {
  if (setjmp(png_jmpbuf(state->png))) return false;
  // Palette -> RGB, gray below 8 bits -> 8 bits (bit replication), tRNS -> alpha channel.
  png_set_expand(state->png);
  if (kLittleEndian && png_get_bit_depth(state->png, state->info) == 16) png_set_swap(state->png);
  png_set_interlace_handling(state->png);
  png_read_update_info(state->png, state->info);
  return true;
}

bool read_rows(PngState* state, png_bytepp rows) {
  if (setjmp(png_jmpbuf(state->png))) return false;
  png_read_image(state->png, rows);
  png_read_end(state->png, nullptr);
  return true;
}

bool write_rows(PngState* state, const Image* image, int compression_level, png_bytepp rows) {
  if (setjmp(png_jmpbuf(state->png))) return false;
  static const int kColorTypes[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                     PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
  png_set_write_fn(state->png, state, on_png_write, on_png_flush);
  png_set_IHDR(state->png, state->info, png_uint_32(image->width), png_uint_32(image->height),
               image->type == SampleType::kUint16 ? 16 : 8, kColorTypes[image->channels],
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_set_compression_level(state->png, compression_level);
  png_write_info(state->png, state->info);
  if (kLittleEndian && image->type == SampleType::kUint16) png_set_swap(state->png);
  png_write_image(state->png, rows);
  png_write_end(state->png, nullptr);
  return true;
}

// Owns a libpng read struct for one file.
class PngReader {
 public:
  PngReader(const std::string& path, std::FILE* file) : path_(path) {
    state_.file = file;
    state_.png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, &state_, on_png_error, on_png_warning);
    if (state_.png != nullptr) state_.info = png_create_info_struct(state_.png);
    if (state_.png == nullptr || state_.info == nullptr) {
      destroy();
      throw Error(path, "cannot start the PNG decoder (out of memory)", ErrorKind::kRuntime);
    }
    png_set_read_fn(state_.png, &state_, on_png_read);
    if (!read_header(&state_)) {
      const Error error = failure();
      destroy();  // the destructor does not run when a constructor throws
      throw error;
    }
  }
  ~PngReader() { destroy(); }
  PngReader(const PngReader&) = delete;
  PngReader& operator=(const PngReader&) = delete;

  PngState* state() { return &state_; }

  // Throws the error libpng reported when a protected step failed.
  void check(bool ok) const {
    if (!ok) throw failure();
  }

  // The error libpng reported.
  Error failure() const {
    if (state_.truncated) return Error(path_, "truncated PNG data");
    std::string message = std::string("corrupt PNG data: ") + state_.message;
    if (std::strstr(state_.message, "IHDR") && std::strstr(state_.warning, "IHDR")) {
      message += std::string(" (") + state_.warning + ")";
    }
    return Error(path_, message);
  }

  // What read_image returns by default, from the header.
  ImageInfo info() {
    ImageInfo info;
    info.format = ImageFormat::kPng;
    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0;
    png_get_IHDR(state_.png, state_.info, &width, &height, &bit_depth, &color_type, nullptr,
                 nullptr, nullptr);
    info.width = int(width);
    info.height = int(height);
    info.bit_depth = bit_depth;
    info.type = bit_depth == 16 ? SampleType::kUint16 : SampleType::kUint8;
    const bool transparency = png_get_valid(state_.png, state_.info, PNG_INFO_tRNS) != 0;
    switch (color_type) {
      case PNG_COLOR_TYPE_GRAY:
        info.channels = transparency ? 2 : 1;
        info.color = transparency ? "gray+alpha" : "gray";
        break;
      case PNG_COLOR_TYPE_GRAY_ALPHA:
        info.channels = 2;
        info.color = "gray+alpha";
        break;
      case PNG_COLOR_TYPE_RGB:
        info.channels = transparency ? 4 : 3;
        info.color = transparency ? "rgba" : "rgb";
        break;
      case PNG_COLOR_TYPE_RGB_ALPHA:
        info.channels = 4;
        info.color = "rgba";
        break;
      default:  // PNG_COLOR_TYPE_PALETTE
        info.channels = transparency ? 4 : 3;
        info.color = transparency ? "palette+alpha" : "palette";
        break;
    }
    return info;
  }

 private:
  void destroy() {
    if (state_.png != nullptr) {
      png_destroy_read_struct(&state_.png, state_.info ? &state_.info : nullptr, nullptr);
    }
    state_.png = nullptr;
    state_.info = nullptr;
  }

  std::string path_;
  PngState state_;
};

}  // namespace

Image decode_png(const std::string& path, std::FILE* file, int64_t max_pixels) {
  PngReader reader(path, file);
  const ImageInfo info = reader.info();
  check_dimensions(path, info.width, info.height, info.channels, info.type, max_pixels);
  reader.check(prepare_rows(reader.state()));
  const int channels = png_get_channels(reader.state()->png, reader.state()->info);
  if (channels != info.channels) {
    throw Error(path, "unexpected PNG layout: " + std::to_string(channels) + " channels");
  }
  Image image(info.width, info.height, info.channels, info.type);
  std::vector<png_bytep> rows(size_t(image.height));
  for (int y = 0; y < image.height; ++y) rows[size_t(y)] = &image.data[y * image.row_bytes()];
  reader.check(read_rows(reader.state(), rows.data()));
  return image;
}

ImageInfo png_info(const std::string& path, std::FILE* file) {
  PngReader reader(path, file);
  return reader.info();
}

void encode_png(const std::string& path, const Image& image, int compression_level,
                std::FILE* file) {
  PngState state;
  state.file = file;
  state.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &state, on_png_error, on_png_warning);
  if (state.png != nullptr) state.info = png_create_info_struct(state.png);
  if (state.png == nullptr || state.info == nullptr) {
    png_destroy_write_struct(state.png ? &state.png : nullptr, nullptr);
    throw Error(path, "cannot start the PNG encoder (out of memory)", ErrorKind::kRuntime);
  }
  std::vector<png_bytep> rows(size_t(image.height));
  for (int y = 0; y < image.height; ++y) {
    rows[size_t(y)] = const_cast<png_bytep>(&image.data[y * image.row_bytes()]);
  }
  const bool ok = write_rows(&state, &image, compression_level, rows.data());
  png_destroy_write_struct(&state.png, &state.info);
  if (!ok) {
    throw Error(path,
                state.write_errno != 0
                    ? std::string("cannot write: ") + std::strerror(state.write_errno)
                    : std::string("cannot encode PNG: ") + state.message,
                ErrorKind::kRuntime);
  }
}

}  // namespace pix2pix::detail
