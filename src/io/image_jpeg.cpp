// JPEG decoding with libjpeg-turbo, configured as Pillow configures it (libjpeg's defaults:
// JDCT_ISLOW, fancy upsampling), so the pixels equal Pillow's. libjpeg's default error handler
// prints and calls exit(); ours formats the message and longjmps back into the small function
// that made the libjpeg call (it holds no C++ objects), and the caller throws pix2pix::Error.
#include <cstdio>  // jpeglib.h needs FILE and size_t declared first
// clang-format off
#include <jpeglib.h>
#include <jerror.h>
// clang-format on

#include <csetjmp>
#include <string>

#include "io/image_codecs.h"
#include "pix2pix/error.h"

namespace pix2pix::detail {
namespace {

struct JpegErrorManager {
  jpeg_error_mgr manager;  // first member: libjpeg hands us a pointer to it
  std::jmp_buf jump;
  bool truncated = false;
  char message[JMSG_LENGTH_MAX] = {};
};

[[noreturn]] void on_jpeg_error(j_common_ptr cinfo) {
  auto* errors = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, errors->message);
  std::longjmp(errors->jump, 1);
}

// Warnings (level -1) and trace messages (level >= 0). libjpeg only warns at a premature end of
// the file and goes on with grey pixels; like Pillow, we reject such a file. Other warnings
// (extraneous bytes, corrupt-but-decodable data) are tolerated silently, as Pillow does.
void on_jpeg_message(j_common_ptr cinfo, int level) {
  if (level >= 0) return;
  if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
    auto* errors = reinterpret_cast<JpegErrorManager*>(cinfo->err);
    errors->truncated = true;
    (*cinfo->err->format_message)(cinfo, errors->message);
    std::longjmp(errors->jump, 1);
  }
  cinfo->err->num_warnings++;
}

void on_jpeg_output(j_common_ptr) {}

// The protected steps: each returns false when libjpeg jumped out with an error.
bool create_decoder(jpeg_decompress_struct* cinfo, JpegErrorManager* errors) {
  cinfo->err = jpeg_std_error(&errors->manager);
  errors->manager.error_exit = on_jpeg_error;
  errors->manager.emit_message = on_jpeg_message;
  errors->manager.output_message = on_jpeg_output;
  if (setjmp(errors->jump)) return false;
  jpeg_create_decompress(cinfo);
  return true;
}

bool read_header(jpeg_decompress_struct* cinfo, JpegErrorManager* errors, std::FILE* file) {
  if (setjmp(errors->jump)) return false;
  jpeg_stdio_src(cinfo, file);
  jpeg_read_header(cinfo, TRUE);
  return true;
}

bool read_pixels(jpeg_decompress_struct* cinfo, JpegErrorManager* errors, uint8_t* pixels,
                 size_t row_bytes) {
  if (setjmp(errors->jump)) return false;
  jpeg_start_decompress(cinfo);
  while (cinfo->output_scanline < cinfo->output_height) {
    JSAMPROW row = pixels + size_t(cinfo->output_scanline) * row_bytes;
    jpeg_read_scanlines(cinfo, &row, 1);
  }
  jpeg_finish_decompress(cinfo);
  return true;
}

// Owns a libjpeg decompressor for one file and has read its header.
class JpegReader {
 public:
  JpegReader(const std::string& path, std::FILE* file) : path_(path) {
    created_ = create_decoder(&cinfo_, &errors_);
    check(created_);
    if (!read_header(&cinfo_, &errors_, file)) {
      const Error error = failure();
      jpeg_destroy_decompress(&cinfo_);  // the destructor does not run when a constructor throws
      throw error;
    }
  }
  ~JpegReader() {
    if (created_) jpeg_destroy_decompress(&cinfo_);
  }
  JpegReader(const JpegReader&) = delete;
  JpegReader& operator=(const JpegReader&) = delete;

  // Throws the error libjpeg reported when a protected step failed.
  void check(bool ok) const {
    if (!ok) throw failure();
  }

  // The error libjpeg reported.
  Error failure() const {
    if (errors_.truncated) return Error(path_, "truncated JPEG data");
    return Error(path_, std::string("corrupt JPEG data: ") + errors_.message);
  }

  ImageInfo info() const {
    ImageInfo info;
    info.format = ImageFormat::kJpeg;
    info.width = int(cinfo_.image_width);
    info.height = int(cinfo_.image_height);
    info.bit_depth = cinfo_.data_precision;
    info.type = SampleType::kUint8;
    info.channels = cinfo_.num_components == 1 ? 1 : 3;  // CMYK is returned as RGB
    switch (cinfo_.jpeg_color_space) {
      case JCS_GRAYSCALE:
        info.color = "gray";
        break;
      case JCS_CMYK:
      case JCS_YCCK:
        info.color = "cmyk";
        break;
      default:
        info.color = cinfo_.num_components == 3 ? "rgb" : "unknown";
        break;
    }
    return info;
  }

  Image decode(int64_t max_pixels) {
    const int components = cinfo_.num_components;
    if (components != 1 && components != 3 && components != 4) {
      throw Error(path_, "unsupported JPEG with " + std::to_string(components) + " components");
    }
    // Pillow's modes L, RGB and CMYK (its decoder asks libjpeg for exactly these).
    cinfo_.out_color_space = components == 1 ? JCS_GRAYSCALE : components == 3 ? JCS_RGB : JCS_CMYK;
    check_dimensions(path_, cinfo_.image_width, cinfo_.image_height, components, SampleType::kUint8,
                     max_pixels);
    Image image(int(cinfo_.image_width), int(cinfo_.image_height), components);
    check(read_pixels(&cinfo_, &errors_, image.data.data(), image.row_bytes()));
    if (components != 4) return image;
    // Pillow reads every 4-component JPEG as inverted (Adobe) CMYK ("CMYK;I"), then converts.
    for (uint8_t& value : image.data) value = uint8_t(255 - value);
    return cmyk_to_rgb(image);
  }

 private:
  std::string path_;
  jpeg_decompress_struct cinfo_ = {};
  JpegErrorManager errors_;
  bool created_ = false;
};

}  // namespace

Image decode_jpeg(const std::string& path, std::FILE* file, int64_t max_pixels) {
  JpegReader reader(path, file);
  return reader.decode(max_pixels);
}

ImageInfo jpeg_info(const std::string& path, std::FILE* file) {
  return JpegReader(path, file).info();
}

}  // namespace pix2pix::detail
