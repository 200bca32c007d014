// Tests for image_io: decoded pixels against Pillow (the reference implementation's image
// library), PNG round trips, TIFF variants written by Pillow and by libtiff, channel conversion,
// and every error a user can cause naming the file. Pillow runs in /usr/bin/python3; tests that
// need it are skipped when it lacks PIL or numpy.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <png.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <tiffio.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "pix2pix/error.h"
#include "pix2pix/io/image_io.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;
using test::run_python;
using test::shell_quote;
using test::temp_dir;

using test::have_python_pil;

#define REQUIRE_PIL()                                                              \
  do {                                                                             \
    if (!have_python_pil()) GTEST_SKIP() << "/usr/bin/python3 lacks PIL or numpy"; \
  } while (0)

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// Runs `body` under /usr/bin/python3 in folder `dir`, with numpy as np, PIL.Image as Image and
// `dump(name, array)` (writes name.pix for load_dump) defined.
void run_pillow(const std::string& dir, const std::string& body) {
  const std::string script = dir + "/pillow_script.py";
  write_text(script, R"(import glob, os, sys, zlib
import numpy as np
from PIL import Image
os.chdir(sys.argv[1])
def dump(name, array):
    array = np.ascontiguousarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.ndim == 2:
        array = array[:, :, None]
    array = array.astype(array.dtype.newbyteorder('='))
    with open(name + '.pix', 'wb') as f:
        f.write(('%d %d %d %s\n' % (array.shape + (array.dtype.name,))).encode())
        f.write(array.tobytes())
)" + body);
  const auto result = run_python(shell_quote(script) + " " + shell_quote(dir));
  ASSERT_EQ(result.exit_code, 0) << result.output;
}

// Reads what `dump` wrote: "height width channels dtype\n" and native-endian samples.
Image load_dump(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string header;
  std::getline(in, header);
  std::istringstream fields(header);
  int height = 0, width = 0, channels = 0;
  std::string dtype;
  fields >> height >> width >> channels >> dtype;
  static const std::map<std::string, SampleType> kTypes = {{"uint8", SampleType::kUint8},
                                                           {"uint16", SampleType::kUint16},
                                                           {"float32", SampleType::kFloat32}};
  if (kTypes.count(dtype) == 0) throw std::runtime_error(path + ": unexpected dtype " + dtype);
  Image image(width, height, channels, kTypes.at(dtype));
  in.read(reinterpret_cast<char*>(image.data.data()), std::streamsize(image.data.size()));
  if (!in) throw std::runtime_error(path + ": short dump");
  return image;
}

double sample(const Image& image, size_t i) {
  switch (image.type) {
    case SampleType::kUint8:
      return image.samples<uint8_t>()[i];
    case SampleType::kUint16:
      return image.samples<uint16_t>()[i];
    case SampleType::kFloat32:
      return image.samples<float>()[i];
  }
  return 0;
}

// Largest absolute difference between two images of the same shape and type; infinity otherwise.
double max_difference(const Image& a, const Image& b) {
  if (a.width != b.width || a.height != b.height || a.channels != b.channels || a.type != b.type) {
    return std::numeric_limits<double>::infinity();
  }
  double worst = 0;
  for (size_t i = 0; i < a.sample_count(); ++i) {
    worst = std::max(worst, std::abs(sample(a, i) - sample(b, i)));
  }
  return worst;
}

std::string shape(const Image& image) {
  return std::to_string(image.height) + "x" + std::to_string(image.width) + "x" +
         std::to_string(image.channels) + " " + to_string(image.type);
}

// Expects `call` to throw a pix2pix::Error of `kind` whose message starts with `path` and
// contains `fragment`.
void expect_error(const std::function<void()>& call, const std::string& path,
                  const std::string& fragment, ErrorKind kind = ErrorKind::kInput) {
  try {
    call();
    ADD_FAILURE() << "no error for " << path;
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << message;
    EXPECT_NE(message.find(fragment), std::string::npos) << message;
    EXPECT_EQ(error.kind(), kind) << message;
  }
}

// What `call` printed on stderr (the libraries must print nothing); uses dir/stderr.txt.
std::string capture_stderr(const std::string& dir, const std::function<void()>& call) {
  const std::string path = dir + "/stderr.txt";
  std::fflush(stderr);
  const int saved = dup(2);
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  dup2(fd, 2);
  close(fd);
  try {
    call();
  } catch (...) {
  }
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  const auto bytes = read_bytes(path);
  return std::string(bytes.begin(), bytes.end());
}

// The test images.
std::string facades_jpeg() { return test::shared_dir() + "/data/facades/train/1.jpg"; }

class ImageIoTest : public ::testing::Test {
 protected:
  // Random samples over the whole range of the type (floats in [0, 1)).
  Image random_image(int width, int height, int channels, SampleType type) {
    Image image(width, height, channels, type);
    for (size_t i = 0; i < image.sample_count(); ++i) {
      switch (type) {
        case SampleType::kUint8:
          image.samples<uint8_t>()[i] = uint8_t(rng_() & 0xff);
          break;
        case SampleType::kUint16:
          image.samples<uint16_t>()[i] = uint16_t(rng_() & 0xffff);
          break;
        case SampleType::kFloat32:
          image.samples<float>()[i] = float(rng_() % 1000000) / 1e6f;
          break;
      }
    }
    return image;
  }

  std::mt19937 rng_{20240517};
};

// Writes `image` with libtiff: tiles of `tile` pixels (0: strips of 5 rows), contiguous or
// planar samples, the given photometric interpretation and compression.
void write_tiff(const std::string& path, const Image& image, int bits, uint16_t photometric,
                int tile, bool planar, uint16_t compression = COMPRESSION_NONE) {
  TIFF* tiff = TIFFOpen(path.c_str(), "w");
  ASSERT_NE(tiff, nullptr);
  const int spp = image.channels;
  TIFFSetField(tiff, TIFFTAG_IMAGEWIDTH, uint32_t(image.width));
  TIFFSetField(tiff, TIFFTAG_IMAGELENGTH, uint32_t(image.height));
  TIFFSetField(tiff, TIFFTAG_SAMPLESPERPIXEL, uint16_t(spp));
  TIFFSetField(tiff, TIFFTAG_BITSPERSAMPLE, uint16_t(bits));
  TIFFSetField(tiff, TIFFTAG_SAMPLEFORMAT,
               image.type == SampleType::kFloat32 ? SAMPLEFORMAT_IEEEFP : SAMPLEFORMAT_UINT);
  TIFFSetField(tiff, TIFFTAG_PHOTOMETRIC, photometric);
  TIFFSetField(tiff, TIFFTAG_PLANARCONFIG, planar ? PLANARCONFIG_SEPARATE : PLANARCONFIG_CONTIG);
  TIFFSetField(tiff, TIFFTAG_COMPRESSION, compression);
  if (photometric == PHOTOMETRIC_YCBCR && compression == COMPRESSION_JPEG) {
    TIFFSetField(tiff, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);  // we hand libtiff RGB
  } else if (photometric == PHOTOMETRIC_YCBCR) {
    TIFFSetField(tiff, TIFFTAG_YCBCRSUBSAMPLING, 1, 1);
  }
  if ((photometric == PHOTOMETRIC_RGB && spp == 4) ||
      (photometric == PHOTOMETRIC_MINISBLACK && spp == 2)) {
    const uint16_t extra[1] = {EXTRASAMPLE_UNASSALPHA};
    TIFFSetField(tiff, TIFFTAG_EXTRASAMPLES, 1, extra);
  }
  const int planes = planar ? spp : 1;
  const int plane_spp = planar ? 1 : spp;
  const size_t bytes = size_t(image.bytes_per_sample());
  // Packs samples of `plane` for pixels [x0, x0 + count) of row y at `bits` bits, MSB first.
  auto pack = [&](int y, int x0, int count, int plane, uint8_t* out) {
    size_t bit = 0;
    for (int x = x0; x < x0 + count; ++x) {
      for (int c = 0; c < plane_spp; ++c) {
        const int channel = planar ? plane : c;
        const uint8_t* in = &image.data[((size_t(y) * image.width + x) * spp + channel) * bytes];
        if (bits >= 8) {
          std::memcpy(out + bit / 8, in, bytes);
        } else {
          out[bit / 8] |= uint8_t(in[0] << (8 - bits - bit % 8));
        }
        bit += size_t(bits);
      }
    }
  };
  if (tile > 0) {
    TIFFSetField(tiff, TIFFTAG_TILEWIDTH, uint32_t(tile));
    TIFFSetField(tiff, TIFFTAG_TILELENGTH, uint32_t(tile));
    const size_t row_bytes = (size_t(tile) * plane_spp * bits + 7) / 8;
    std::vector<uint8_t> buffer(row_bytes * tile);
    for (int plane = 0; plane < planes; ++plane) {
      for (int y0 = 0; y0 < image.height; y0 += tile) {
        for (int x0 = 0; x0 < image.width; x0 += tile) {
          std::fill(buffer.begin(), buffer.end(), 0);
          for (int r = 0; r < tile && y0 + r < image.height; ++r) {
            pack(y0 + r, x0, std::min(tile, image.width - x0), plane, &buffer[r * row_bytes]);
          }
          ASSERT_GE(
              TIFFWriteTile(tiff, buffer.data(), uint32_t(x0), uint32_t(y0), 0, uint16_t(plane)),
              0);
        }
      }
    }
  } else {
    TIFFSetField(tiff, TIFFTAG_ROWSPERSTRIP, 5u);
    const size_t row_bytes = (size_t(image.width) * plane_spp * bits + 7) / 8;
    std::vector<uint8_t> buffer(row_bytes);
    for (int plane = 0; plane < planes; ++plane) {
      for (int y = 0; y < image.height; ++y) {
        std::fill(buffer.begin(), buffer.end(), 0);
        pack(y, 0, image.width, plane, buffer.data());
        ASSERT_EQ(TIFFWriteScanline(tiff, buffer.data(), uint32_t(y), uint16_t(plane)), 1);
      }
    }
  }
  TIFFClose(tiff);
}

// Writes a PNG with libpng directly, for layouts write_png does not produce: `rows` holds the
// packed big-endian samples of each row; `transparent` (if not null) is the tRNS colour.
void write_png_with_libpng(const std::string& path, int width, int height, int bit_depth,
                           int color_type, bool interlaced, std::vector<std::vector<uint8_t>> rows,
                           const png_color_16* transparent = nullptr) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_init_io(png, file);
  png_set_IHDR(png, info, png_uint_32(width), png_uint_32(height), bit_depth, color_type,
               interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (transparent != nullptr) {
    png_set_tRNS(png, info, nullptr, 0, const_cast<png_color_16*>(transparent));
  }
  png_write_info(png, info);
  std::vector<png_bytep> pointers;
  for (auto& row : rows) pointers.push_back(row.data());
  png_write_image(png, pointers.data());  // interlacing is done by libpng
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  std::fclose(file);
}

// ---------------------------------------------------------------------------------------------
// JPEG against Pillow

// Every training image of both data sets decodes to exactly Pillow's pixels, in RGB and after
// convert('L'): crc32 of all of them, and the full arrays of a few to report the difference.
TEST_F(ImageIoTest, JpegDecodeEqualsPillowOnDatasets) {
  REQUIRE_PIL();
  const std::string dir = temp_dir();
  const std::string shared = test::shared_dir();
  run_pillow(dir, R"(
files = sorted(glob.glob(')" +
                      shared + R"(/data/facades/train/*.jpg'))
files += sorted(glob.glob(')" +
                      shared + R"(/data/edges2shoes/train/*.jpg'))
with open('list.txt', 'w') as out:
    for i, path in enumerate(files):
        with Image.open(path) as im:
            rgb = np.asarray(im.convert('RGB'))
            gray = np.asarray(im.convert('L'))
        out.write('%s %d %d\n' % (path, zlib.crc32(rgb.tobytes()), zlib.crc32(gray.tobytes())))
        if i % 50 == 0:
            dump('rgb_%d' % i, rgb)
            dump('gray_%d' % i, gray)
)");
  std::ifstream list(dir + "/list.txt");
  std::string path;
  unsigned long rgb_crc = 0, gray_crc = 0;
  int files = 0, dumped = 0;
  while (list >> path >> rgb_crc >> gray_crc) {
    const Image rgb = read_image(path);
    const Image gray = read_image(path, {1});
    ASSERT_EQ(rgb.channels, 3) << path;
    ASSERT_EQ(gray.channels, 1) << path;
    EXPECT_EQ(crc32(0, rgb.data.data(), uInt(rgb.data.size())), rgb_crc) << path << " RGB";
    EXPECT_EQ(crc32(0, gray.data.data(), uInt(gray.data.size())), gray_crc) << path << " L";
    const std::string rgb_dump = dir + "/rgb_" + std::to_string(files) + ".pix";
    if (fs::exists(rgb_dump)) {
      EXPECT_EQ(max_difference(rgb, load_dump(rgb_dump)), 0.0) << path;
      EXPECT_EQ(max_difference(gray, load_dump(dir + "/gray_" + std::to_string(files) + ".pix")),
                0.0)
          << path;
      ++dumped;
    }
    ++files;
  }
  EXPECT_GE(files, 400);  // 400 facades + 100 edges2shoes training images
  EXPECT_GE(dumped, 8);
}

// Pillow-encoded variants: grayscale, progressive, 4:4:4 and 4:2:2 chroma, odd sizes (edge
// upsampling), and Adobe CMYK converted to RGB the way Pillow's convert('RGB') does.
TEST_F(ImageIoTest, JpegVariantsEqualPillow) {
  REQUIRE_PIL();
  const std::string dir = temp_dir();
  run_pillow(dir, R"(
src = Image.open(')" + facades_jpeg() +
                      R"(').convert('RGB').crop((3, 5, 3 + 97, 5 + 61))
src.convert('L').save('gray.jpg', quality=90)
src.save('progressive.jpg', quality=85, progressive=True)
src.save('s444.jpg', quality=95, subsampling=0)
src.save('s422.jpg', quality=75, subsampling=1)
src.convert('CMYK').save('cmyk.jpg', quality=90)
for name in ['gray', 'progressive', 's444', 's422', 'cmyk']:
    with Image.open(name + '.jpg') as im:
        dump(name, np.asarray(im.convert('L' if name == 'gray' else 'RGB')))
        dump(name + '_L', np.asarray(im.convert('L')))
        dump(name + '_RGBA', np.asarray(im.convert('RGBA')))
)");
  for (const std::string name : {"gray", "progressive", "s444", "s422", "cmyk"}) {
    const std::string path = dir + "/" + name + ".jpg";
    const Image image = read_image(path);
    const Image expected = load_dump(dir + "/" + name + ".pix");
    EXPECT_EQ(max_difference(image, expected), 0.0) << name << " " << shape(image);
    EXPECT_EQ(max_difference(read_image(path, {1}), load_dump(dir + "/" + name + "_L.pix")), 0.0)
        << name;
    EXPECT_EQ(max_difference(read_image(path, {4}), load_dump(dir + "/" + name + "_RGBA.pix")), 0.0)
        << name;
    const ImageInfo info = read_image_info(path);
    EXPECT_EQ(info.format, ImageFormat::kJpeg);
    EXPECT_EQ(info.width, 97);
    EXPECT_EQ(info.height, 61);
    EXPECT_EQ(info.channels, name == "gray" ? 1 : 3);
    EXPECT_EQ(info.color, name == "gray" ? "gray" : name == "cmyk" ? "cmyk" : "rgb");
  }
}

// ---------------------------------------------------------------------------------------------
// PNG

TEST_F(ImageIoTest, PngRoundTripIsExact) {
  const std::string dir = temp_dir();
  for (SampleType type : {SampleType::kUint8, SampleType::kUint16}) {
    for (int channels = 1; channels <= 4; ++channels) {
      const Image image = random_image(37, 23, channels, type);
      const std::string path = dir + "/c" + std::to_string(channels) + to_string(type) + ".png";
      write_png(path, image);
      const Image back = read_image(path);
      EXPECT_TRUE(back == image) << shape(image) << " max difference "
                                 << max_difference(back, image);
      const ImageInfo info = read_image_info(path);
      EXPECT_EQ(info.format, ImageFormat::kPng);
      EXPECT_EQ(info.width, 37);
      EXPECT_EQ(info.height, 23);
      EXPECT_EQ(info.channels, channels);
      EXPECT_EQ(info.bit_depth, type == SampleType::kUint8 ? 8 : 16);
      EXPECT_EQ(info.type, type);
    }
  }
  // Overwriting replaces the file and leaves no temporary files behind.
  const Image other = random_image(5, 4, 3, SampleType::kUint8);
  write_png(dir + "/c3uint8.png", other);
  EXPECT_TRUE(read_image(dir + "/c3uint8.png") == other);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 8);
}

// Pillow reads what we write (so the byte order of 16-bit samples is the file's, not ours).
TEST_F(ImageIoTest, PillowReadsOurPngs) {
  REQUIRE_PIL();
  const std::string dir = temp_dir();
  const Image rgba = random_image(37, 23, 4, SampleType::kUint8);
  const Image gray16 = random_image(37, 23, 1, SampleType::kUint16);
  const Image rgb16 = random_image(37, 23, 3, SampleType::kUint16);
  write_png(dir + "/rgba.png", rgba);
  write_png(dir + "/gray16.png", gray16);
  write_png(dir + "/rgb16.png", rgb16);
  run_pillow(dir, R"(
dump('rgba', np.asarray(Image.open('rgba.png')))
dump('gray16', np.asarray(Image.open('gray16.png')).astype(np.uint16))  # mode I
with open('rgb16.png', 'rb') as f:
    assert f.read(32)[24:26] == bytes([16, 2])  # IHDR: 16-bit RGB
dump('rgb16', np.asarray(Image.open('rgb16.png')))  # Pillow keeps the high bytes
)");
  EXPECT_EQ(max_difference(load_dump(dir + "/rgba.pix"), rgba), 0.0);
  EXPECT_EQ(max_difference(load_dump(dir + "/gray16.pix"), gray16), 0.0);
  Image high_bytes(rgb16.width, rgb16.height, 3);
  for (size_t i = 0; i < rgb16.sample_count(); ++i) {
    high_bytes.data[i] = uint8_t(rgb16.samples<uint16_t>()[i] >> 8);
  }
  EXPECT_EQ(max_difference(load_dump(dir + "/rgb16.pix"), high_bytes), 0.0);
}

// PNGs Pillow writes (every colour type, palettes with and without tRNS, 1- and 4-bit, 16-bit
// gray) read as the values Pillow reports, by default and converted to L / RGB / RGBA.
TEST_F(ImageIoTest, PngWrittenByPillowMatchesPillow) {
  REQUIRE_PIL();
  const std::string dir = temp_dir();
  run_pillow(dir, R"(
rng = np.random.default_rng(7)
rgba = rng.integers(0, 256, (23, 37, 4), dtype=np.uint8)
Image.fromarray(rgba[:, :, 0]).save('L.png')
Image.fromarray(rgba[:, :, :2], 'LA').save('LA.png')
Image.fromarray(rgba[:, :, :3]).save('RGB.png')
Image.fromarray(rgba).save('RGBA.png')
photo = Image.open(')" +
                      facades_jpeg() + R"(').convert('RGB').crop((0, 0, 37, 23))
photo.quantize(200).save('P.png')
photo.quantize(16).save('P4.png', bits=4)
trns = photo.quantize(64)
trns.save('Ptrns.png', transparency=bytes(range(0, 256, 4)))
Image.fromarray(rgba[:, :, 0]).convert('1').save('1.png')
gray16 = rng.integers(0, 65536, (23, 37), dtype=np.uint16)
Image.fromarray(gray16).save('I16.png')   # mode I;16
Image.fromarray(rgba[:, :, 0] // 64 * 64).save('Ltrns.png', transparency=128)
default_mode = {'L': 'L', 'LA': 'LA', 'RGB': 'RGB', 'RGBA': 'RGBA', 'P': 'RGB', 'P4': 'RGB',
                'Ptrns': 'RGBA', '1': 'L'}
for name, mode in default_mode.items():
    with Image.open(name + '.png') as im:
        dump(name, np.asarray(im.convert(mode)))
        for to in ['L', 'LA', 'RGB', 'RGBA']:
            dump(name + '_' + to, np.asarray(im.convert(to) if name != 'Ptrns'
                                             else im.convert('RGBA').convert(to)))
with Image.open('I16.png') as im:
    assert im.mode in ('I', 'I;16'), im.mode
    dump('I16', np.asarray(im).astype(np.uint16))
a = np.asarray(Image.open('Ltrns.png'))
dump('Ltrns', np.dstack([a, np.where(a == 128, 0, 255).astype(np.uint8)]))
)");
  for (const std::string name :
       {"L", "LA", "RGB", "RGBA", "P", "P4", "Ptrns", "1", "I16", "Ltrns"}) {
    const std::string path = dir + "/" + name + ".png";
    const Image image = read_image(path);
    const Image expected = load_dump(dir + "/" + name + ".pix");
    EXPECT_EQ(max_difference(image, expected), 0.0)
        << name << ": " << shape(image) << " vs " << shape(expected);
    EXPECT_EQ(read_image_info(path).channels, expected.channels) << name;
    if (name == "I16" || name == "Ltrns") continue;
    int to_channels = 1;
    for (const std::string to : {"L", "LA", "RGB", "RGBA"}) {
      EXPECT_EQ(max_difference(read_image(path, {to_channels}),
                               load_dump(dir + "/" + name + "_" + to + ".pix")),
                0.0)
          << name << " -> " << to;
      ++to_channels;
    }
  }
  EXPECT_EQ(read_image_info(dir + "/P4.png").bit_depth, 4);
  EXPECT_EQ(read_image_info(dir + "/P4.png").color, "palette");
  EXPECT_EQ(read_image_info(dir + "/Ptrns.png").color, "palette+alpha");
  EXPECT_EQ(read_image_info(dir + "/I16.png").type, SampleType::kUint16);
}

// Layouts neither write_png nor Pillow writes: Adam7 interlacing, 2-bit gray, 16-bit RGB with
// a tRNS colour (becomes a 16-bit alpha channel).
TEST_F(ImageIoTest, PngLayoutsWrittenByLibpngReadExactly) {
  const std::string dir = temp_dir();
  const int width = 37, height = 23;
  {  // interlaced 16-bit RGBA
    const Image image = random_image(width, height, 4, SampleType::kUint16);
    std::vector<std::vector<uint8_t>> rows(height, std::vector<uint8_t>(width * 8));
    for (int y = 0; y < height; ++y) {
      for (int i = 0; i < width * 4; ++i) {
        const uint16_t value = image.samples<uint16_t>()[y * width * 4 + i];
        rows[y][2 * i] = uint8_t(value >> 8);
        rows[y][2 * i + 1] = uint8_t(value & 0xff);
      }
    }
    write_png_with_libpng(dir + "/interlaced16.png", width, height, 16, PNG_COLOR_TYPE_RGB_ALPHA,
                          true, rows);
    EXPECT_TRUE(read_image(dir + "/interlaced16.png") == image);
  }
  {  // interlaced 8-bit gray and 2-bit gray (0..3 -> 0, 85, 170, 255)
    const Image image = random_image(width, height, 1, SampleType::kUint8);
    std::vector<std::vector<uint8_t>> rows(height), packed(height);
    Image expected_2bit(width, height, 1);
    for (int y = 0; y < height; ++y) {
      rows[y].assign(&image.data[y * width], &image.data[(y + 1) * width]);
      packed[y].assign((width * 2 + 7) / 8, 0);
      for (int x = 0; x < width; ++x) {
        const int value = image.at<uint8_t>(y, x, 0) >> 6;
        packed[y][x / 4] |= uint8_t(value << (6 - 2 * (x % 4)));
        expected_2bit.at<uint8_t>(y, x, 0) = uint8_t(value * 85);
      }
    }
    write_png_with_libpng(dir + "/interlaced8.png", width, height, 8, PNG_COLOR_TYPE_GRAY, true,
                          rows);
    EXPECT_TRUE(read_image(dir + "/interlaced8.png") == image);
    write_png_with_libpng(dir + "/gray2.png", width, height, 2, PNG_COLOR_TYPE_GRAY, false, packed);
    EXPECT_TRUE(read_image(dir + "/gray2.png") == expected_2bit);
    EXPECT_EQ(read_image_info(dir + "/gray2.png").bit_depth, 2);
  }
  {  // 16-bit RGB whose tRNS colour is the first pixel's
    Image image = random_image(width, height, 3, SampleType::kUint16);
    for (int c = 0; c < 3; ++c) image.at<uint16_t>(5, 7, c) = image.at<uint16_t>(0, 0, c);
    png_color_16 transparent = {};
    transparent.red = image.at<uint16_t>(0, 0, 0);
    transparent.green = image.at<uint16_t>(0, 0, 1);
    transparent.blue = image.at<uint16_t>(0, 0, 2);
    std::vector<std::vector<uint8_t>> rows(height, std::vector<uint8_t>(width * 6));
    Image expected = convert_channels(image, 4);
    for (int y = 0; y < height; ++y) {
      for (int x = 0; x < width; ++x) {
        bool same = true;
        for (int c = 0; c < 3; ++c) {
          const uint16_t value = image.at<uint16_t>(y, x, c);
          rows[y][(x * 3 + c) * 2] = uint8_t(value >> 8);
          rows[y][(x * 3 + c) * 2 + 1] = uint8_t(value & 0xff);
          same = same && value == image.at<uint16_t>(0, 0, c);
        }
        if (same) expected.at<uint16_t>(y, x, 3) = 0;
      }
    }
    ASSERT_EQ(expected.at<uint16_t>(5, 7, 3), 0);
    write_png_with_libpng(dir + "/trns16.png", width, height, 16, PNG_COLOR_TYPE_RGB, false, rows,
                          &transparent);
    EXPECT_TRUE(read_image(dir + "/trns16.png") == expected);
    EXPECT_EQ(read_image_info(dir + "/trns16.png").color, "rgba");
  }
}

TEST_F(ImageIoTest, PngCompressionLevels) {
  const std::string dir = temp_dir();
  const Image photo = read_image(facades_jpeg());
  for (int level : {0, 1, 9}) {
    const std::string path = dir + "/level" + std::to_string(level) + ".png";
    write_png(path, photo, {level});
    EXPECT_TRUE(read_image(path) == photo) << level;
  }
  EXPECT_GT(fs::file_size(dir + "/level0.png"), photo.data.size());  // stored, not compressed
  EXPECT_LT(fs::file_size(dir + "/level9.png"), fs::file_size(dir + "/level1.png"));
  expect_error([&] { write_png(dir + "/x.png", photo, {10}); }, dir + "/x.png", "0..9");
}

// ---------------------------------------------------------------------------------------------
// TIFF

TEST_F(ImageIoTest, TiffWrittenByPillowMatchesPillow) {
  REQUIRE_PIL();
  const std::string dir = temp_dir();
  run_pillow(dir, R"(
rng = np.random.default_rng(11)
rgba = rng.integers(0, 256, (23, 37, 4), dtype=np.uint8)
photo = Image.open(')" +
                      facades_jpeg() + R"(').convert('RGB').crop((0, 0, 37, 23))
images = {
    'L': Image.fromarray(rgba[:, :, 0]),
    'LA': Image.fromarray(rgba[:, :, :2], 'LA'),
    'RGB': Image.fromarray(rgba[:, :, :3]),
    'RGBA': Image.fromarray(rgba),
    'I16': Image.fromarray(rng.integers(0, 65536, (23, 37), dtype=np.uint16)),
    'F': Image.fromarray(rng.random((23, 37), dtype=np.float32) * 3 - 1),
    'P': photo.quantize(100),
    'CMYK': Image.fromarray(rgba, 'CMYK'),
    '1': Image.fromarray(rgba[:, :, 0]).convert('1'),
}
for name, im in images.items():
    im.save(name + '.tif')
images['RGB'].save('RGB_lzw.tif', compression='tiff_lzw')
images['RGBA'].save('RGBA_deflate.tif', compression='tiff_adobe_deflate')
images['I16'].save('I16_lzw.tif', compression='tiff_lzw')
images['1'].save('1_g4.tif', compression='group4')
photo.save('RGB_jpeg.tif', compression='jpeg')
for name in list(images) + ['RGB_lzw', 'RGBA_deflate', 'I16_lzw', '1_g4', 'RGB_jpeg']:
    with Image.open(name + '.tif') as im:
        if im.mode in ('P', 'CMYK'):
            im = im.convert('RGB')
        elif im.mode == '1':
            im = im.convert('L')
        dump(name, np.asarray(im))
)");
  for (const std::string name : {"L", "LA", "RGB", "RGBA", "I16", "F", "P", "CMYK", "1", "RGB_lzw",
                                 "RGBA_deflate", "I16_lzw", "1_g4", "RGB_jpeg"}) {
    const std::string path = dir + "/" + name + ".tif";
    Image image;
    try {
      image = read_image(path);
    } catch (const Error& error) {
      ADD_FAILURE() << error.what();
      continue;
    }
    const Image expected = load_dump(dir + "/" + name + ".pix");
    EXPECT_EQ(max_difference(image, expected), 0.0)
        << name << ": " << shape(image) << " vs " << shape(expected);
    const ImageInfo info = read_image_info(path);
    EXPECT_EQ(info.format, ImageFormat::kTiff);
    EXPECT_EQ(info.channels, expected.channels) << name;
    EXPECT_EQ(info.type, expected.type) << name;
  }
  EXPECT_EQ(read_image_info(dir + "/F.tif").bit_depth, 32);
  EXPECT_EQ(read_image_info(dir + "/1.tif").bit_depth, 1);
  EXPECT_EQ(read_image_info(dir + "/CMYK.tif").color, "cmyk");
}

// Layouts Pillow does not write: tiles (with partial edge tiles), planar samples, 16-bit RGB,
// float RGB, 4-bit gray, min-is-white, deflate with a horizontal predictor.
TEST_F(ImageIoTest, TiffLayoutsWrittenByLibtiffReadExactly) {
  const std::string dir = temp_dir();
  struct Case {
    std::string name;
    int channels;
    SampleType type;
    int bits;
    uint16_t photometric;
    int tile;
    bool planar;
    uint16_t compression;
  };
  const std::vector<Case> cases = {
      {"tiled_rgb16", 3, SampleType::kUint16, 16, PHOTOMETRIC_RGB, 16, false, COMPRESSION_NONE},
      {"tiled_gray_float", 1, SampleType::kFloat32, 32, PHOTOMETRIC_MINISBLACK, 16, false,
       COMPRESSION_ADOBE_DEFLATE},
      {"tiled_planar_rgba8", 4, SampleType::kUint8, 8, PHOTOMETRIC_RGB, 32, true, COMPRESSION_LZW},
      {"strips_planar_rgb16", 3, SampleType::kUint16, 16, PHOTOMETRIC_RGB, 0, true,
       COMPRESSION_ADOBE_DEFLATE},
      {"strips_rgb_float", 3, SampleType::kFloat32, 32, PHOTOMETRIC_RGB, 0, false,
       COMPRESSION_NONE},
      {"strips_gray_alpha16", 2, SampleType::kUint16, 16, PHOTOMETRIC_MINISBLACK, 0, false,
       COMPRESSION_PACKBITS},
      {"strips_gray4", 1, SampleType::kUint8, 4, PHOTOMETRIC_MINISBLACK, 0, false,
       COMPRESSION_NONE},
      {"tiled_gray2", 1, SampleType::kUint8, 2, PHOTOMETRIC_MINISBLACK, 16, false,
       COMPRESSION_NONE},
      {"strips_miniswhite8", 1, SampleType::kUint8, 8, PHOTOMETRIC_MINISWHITE, 0, false,
       COMPRESSION_NONE},
  };
  for (const Case& c : cases) {
    Image image = random_image(37, 23, c.channels, c.type);
    if (c.bits < 8) {
      for (uint8_t& value : image.data) value = uint8_t(value >> (8 - c.bits));
    }
    const std::string path = dir + "/" + c.name + ".tif";
    write_tiff(path, image, c.bits, c.photometric, c.tile, c.planar, c.compression);
    Image expected = image;
    if (c.bits < 8) {
      for (uint8_t& value : expected.data) value = uint8_t(value * (255 / ((1 << c.bits) - 1)));
    }
    if (c.photometric == PHOTOMETRIC_MINISWHITE) {
      for (uint8_t& value : expected.data) value = uint8_t(255 - value);
    }
    try {
      const Image back = read_image(path);
      EXPECT_TRUE(back == expected)
          << c.name << ": " << shape(back) << " max difference " << max_difference(back, expected);
    } catch (const Error& error) {
      ADD_FAILURE() << error.what();
    }
    EXPECT_EQ(read_image_info(path).bit_depth, c.bits) << c.name;
  }
}

// YCbCr: JPEG-compressed (libjpeg converts, as Pillow's libtiff does) and uncompressed (via
// libtiff's RGBA reader); both close to the RGB they were made from and equal to what libtiff's
// own RGBA reader gives.
TEST_F(ImageIoTest, TiffYcbcrReadsAsRgb) {
  const std::string dir = temp_dir();
  const Image rgb = read_image(facades_jpeg());
  write_tiff(dir + "/jpeg.tif", rgb, 8, PHOTOMETRIC_YCBCR, 64, false, COMPRESSION_JPEG);
  Image ycbcr(rgb.width, rgb.height, 3);
  for (size_t i = 0; i < rgb.data.size(); i += 3) {
    const double r = rgb.data[i], g = rgb.data[i + 1], b = rgb.data[i + 2];
    const double y = 0.299 * r + 0.587 * g + 0.114 * b;
    ycbcr.data[i] = uint8_t(std::lround(y));
    ycbcr.data[i + 1] = uint8_t(std::clamp(std::lround((b - y) / 1.772 + 128), 0L, 255L));
    ycbcr.data[i + 2] = uint8_t(std::clamp(std::lround((r - y) / 1.402 + 128), 0L, 255L));
  }
  write_tiff(dir + "/raw.tif", ycbcr, 8, PHOTOMETRIC_YCBCR, 0, false);
  for (const std::string name : {"jpeg", "raw"}) {
    const std::string path = dir + "/" + name + ".tif";
    const Image image = read_image(path);
    ASSERT_EQ(shape(image), shape(rgb)) << name;
    double total = 0;
    for (size_t i = 0; i < rgb.data.size(); ++i) total += std::abs(image.data[i] - rgb.data[i]);
    const double mean = total / double(rgb.data.size());
    if (name == "raw") {
      EXPECT_LE(max_difference(image, rgb), 2.0) << name;
    } else {
      EXPECT_LT(mean, 4.0) << name;  // JPEG quality 75, 2x2 chroma subsampling
    }
    EXPECT_EQ(read_image_info(path).color, "ycbcr");
    // Same as libtiff's own RGBA reader.
    TIFF* tiff = TIFFOpen(path.c_str(), "r");
    ASSERT_NE(tiff, nullptr);
    std::vector<uint32_t> raster(size_t(rgb.width) * rgb.height);
    ASSERT_TRUE(TIFFReadRGBAImageOriented(tiff, uint32_t(rgb.width), uint32_t(rgb.height),
                                          raster.data(), ORIENTATION_TOPLEFT, 0));
    TIFFClose(tiff);
    Image expected(rgb.width, rgb.height, 3);
    for (size_t i = 0; i < raster.size(); ++i) {
      expected.data[3 * i] = uint8_t(TIFFGetR(raster[i]));
      expected.data[3 * i + 1] = uint8_t(TIFFGetG(raster[i]));
      expected.data[3 * i + 2] = uint8_t(TIFFGetB(raster[i]));
    }
    EXPECT_EQ(max_difference(image, expected), 0.0) << name;
  }
}

// The codecs keep no global state: decoding (and failing) in several threads at once gives
// the same results as one after another.
TEST_F(ImageIoTest, ConcurrentDecodesAgree) {
  const std::string dir = temp_dir();
  const Image photo = read_image(facades_jpeg());
  write_png(dir + "/photo.png", photo);
  write_tiff(dir + "/photo.tif", photo, 8, PHOTOMETRIC_RGB, 32, false, COMPRESSION_LZW);
  write_bytes(dir + "/bad.tif", {'I', 'I', 42, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0});
  const std::vector<std::string> files = {facades_jpeg(), dir + "/photo.png", dir + "/photo.tif",
                                          dir + "/bad.tif"};
  std::vector<std::string> outcomes(16);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < outcomes.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int repeat = 0; repeat < 5; ++repeat) {
        try {
          const Image image = read_image(files[t % files.size()], {t % 2 == 0 ? 1 : 3});
          outcomes[t] = image == convert_channels(photo, image.channels) ? "same" : "different";
        } catch (const Error& error) {
          outcomes[t] = error.what();
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (size_t t = 0; t < outcomes.size(); ++t) {
    if (t % files.size() == 3) {
      EXPECT_NE(outcomes[t].find("bad.tif: truncated or corrupt TIFF data"), std::string::npos)
          << outcomes[t];
    } else {
      EXPECT_EQ(outcomes[t], "same") << files[t % files.size()];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Channel conversion

TEST_F(ImageIoTest, ChannelConversionFollowsPillow) {
  // 8-bit luma is Pillow's L24 fixed point: spot values checked against Pillow 9.4.
  Image rgb(4, 1, 3);
  const uint8_t values[12] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 127, 128, 129};
  std::memcpy(rgb.data.data(), values, 12);
  const Image gray = convert_channels(rgb, 1);
  EXPECT_EQ(gray.data, (std::vector<uint8_t>{76, 150, 29, 128}));

  for (SampleType type : {SampleType::kUint8, SampleType::kUint16, SampleType::kFloat32}) {
    const Image rgba = random_image(7, 5, 4, type);
    const Image dropped = convert_channels(rgba, 3);  // drops alpha, no compositing
    const Image la = convert_channels(rgba, 2);
    const Image l = convert_channels(rgba, 1);
    const Image back = convert_channels(dropped, 4);
    for (int y = 0; y < 5; ++y) {
      for (int x = 0; x < 7; ++x) {
        for (int c = 0; c < 3; ++c) {
          EXPECT_EQ(sample(dropped, (y * 7 + x) * 3 + c), sample(rgba, (y * 7 + x) * 4 + c));
        }
        EXPECT_EQ(sample(back, (y * 7 + x) * 4 + 3), rgba.max_value());  // opaque
        EXPECT_EQ(sample(la, (y * 7 + x) * 2 + 1), sample(rgba, (y * 7 + x) * 4 + 3));
        EXPECT_EQ(sample(la, (y * 7 + x) * 2), sample(l, y * 7 + x));
        const double luma = 0.299 * sample(rgba, (y * 7 + x) * 4) +
                            0.587 * sample(rgba, (y * 7 + x) * 4 + 1) +
                            0.114 * sample(rgba, (y * 7 + x) * 4 + 2);
        if (type == SampleType::kUint8) {  // Pillow's fixed point: within 0.5 + 2^-9
          EXPECT_NEAR(sample(l, y * 7 + x), luma, 0.51);
        } else {  // rounded (16-bit) or exact (float)
          EXPECT_NEAR(sample(l, y * 7 + x), luma, type == SampleType::kFloat32 ? 1e-5 : 0.5);
        }
      }
    }
    // Gray -> RGB replicates, and back is the identity.
    const Image g = random_image(7, 5, 1, type);
    EXPECT_TRUE(convert_channels(convert_channels(g, 3), 1) == g) << to_string(type);
    EXPECT_TRUE(convert_channels(convert_channels(g, 2), 1) == g) << to_string(type);
  }
  expect_error([&] { convert_channels(rgb, 5); }, "image", "cannot convert 3 channels to 5");
}

// ---------------------------------------------------------------------------------------------
// Errors

TEST_F(ImageIoTest, RejectsEmptyMissingAndNonImageFiles) {
  const std::string dir = temp_dir();
  write_text(dir + "/empty.png", "");
  expect_error([&] { read_image(dir + "/empty.png"); }, dir + "/empty.png", "empty file");
  write_text(dir + "/x.png", "this is not an image, just text\n");
  expect_error([&] { read_image(dir + "/x.png"); }, dir + "/x.png", "not a PNG/JPEG/TIFF image");
  expect_error([&] { read_image_info(dir + "/x.png"); }, dir + "/x.png",
               "not a PNG/JPEG/TIFF image");
  write_text(dir + "/x.jpg", "GIF89a......");
  expect_error([&] { read_image(dir + "/x.jpg"); }, dir + "/x.jpg", "not a PNG/JPEG/TIFF image");
  expect_error([&] { read_image(dir + "/missing.jpg"); }, dir + "/missing.jpg", "cannot open");
  expect_error([&] { read_image(dir); }, dir, "is a folder");
  // A JPEG named .png is still a JPEG: the format comes from the bytes.
  fs::copy_file(facades_jpeg(), dir + "/actually_jpeg.png");
  EXPECT_EQ(read_image_info(dir + "/actually_jpeg.png").format, ImageFormat::kJpeg);
  EXPECT_EQ(read_image(dir + "/actually_jpeg.png").width, 512);
}

TEST_F(ImageIoTest, RejectsTruncatedFilesQuietly) {
  const std::string dir = temp_dir();
  const Image photo = read_image(facades_jpeg());
  write_png(dir + "/full.png", photo);
  write_tiff(dir + "/full.tif", photo, 8, PHOTOMETRIC_RGB, 0, false, COMPRESSION_LZW);
  for (const std::string& source : {facades_jpeg(), dir + "/full.png", dir + "/full.tif"}) {
    const auto bytes = read_bytes(source);
    ASSERT_GT(bytes.size(), 1000u);
    const std::string extension = fs::path(source).extension().string();
    const std::string half = dir + "/half" + extension;
    write_bytes(half, std::vector<uint8_t>(bytes.begin(), bytes.begin() + bytes.size() / 2));
    const std::string expected = extension == ".jpg"   ? "truncated JPEG data"
                                 : extension == ".png" ? "truncated PNG data"
                                                       : "truncated or corrupt TIFF data";
    expect_error([&] { read_image(half); }, half, expected);
    // The libraries report through us only: nothing on stderr (and no exit()).
    EXPECT_EQ(capture_stderr(dir, [&] { read_image(half); }), "") << half;
  }
  // A JPEG missing only its final EOI marker is truncated too (Pillow refuses it as well).
  const auto jpeg = read_bytes(facades_jpeg());
  write_bytes(dir + "/no_eoi.jpg", std::vector<uint8_t>(jpeg.begin(), jpeg.end() - 2));
  expect_error([&] { read_image(dir + "/no_eoi.jpg"); }, dir + "/no_eoi.jpg",
               "truncated JPEG data");
  // Cut inside the header, and a header that makes no sense.
  write_bytes(dir + "/head.jpg", std::vector<uint8_t>(jpeg.begin(), jpeg.begin() + 100));
  expect_error([&] { read_image(dir + "/head.jpg"); }, dir + "/head.jpg", "truncated JPEG data");
  // SOF0 of a 16x16 image with no components.
  write_bytes(dir + "/bad.jpg",
              {0xff, 0xd8, 0xff, 0xc0, 0x00, 0x08, 0x08, 0x00, 0x10, 0x00, 0x10, 0x00, 0xff, 0xd9});
  expect_error([&] { read_image(dir + "/bad.jpg"); }, dir + "/bad.jpg", "corrupt JPEG data");
  EXPECT_EQ(capture_stderr(dir, [&] { read_image(dir + "/bad.jpg"); }), "");
  // Corrupt, not truncated: a PNG whose pixel data fails its CRC.
  auto png = read_bytes(dir + "/full.png");
  png[png.size() / 2] ^= 0x5a;
  write_bytes(dir + "/corrupt.png", png);
  expect_error([&] { read_image(dir + "/corrupt.png"); }, dir + "/corrupt.png", "corrupt PNG");
}

// Rewrites a PNG's IHDR size and its CRC.
void patch_png_size(std::vector<uint8_t>* png, uint32_t width, uint32_t height) {
  for (int i = 0; i < 4; ++i) {
    (*png)[16 + i] = uint8_t(width >> (24 - 8 * i));
    (*png)[20 + i] = uint8_t(height >> (24 - 8 * i));
  }
  const uint32_t crc = uint32_t(crc32(0, png->data() + 12, 17));  // "IHDR" + 13 data bytes
  for (int i = 0; i < 4; ++i) (*png)[29 + i] = uint8_t(crc >> (24 - 8 * i));
}

TEST_F(ImageIoTest, RejectsHugeAndZeroSizesBeforeAllocating) {
  const std::string dir = temp_dir();
  write_png(dir + "/small.png", random_image(8, 8, 3, SampleType::kUint8));
  auto png = read_bytes(dir + "/small.png");
  ASSERT_EQ(std::string(png.begin() + 12, png.begin() + 16), "IHDR");
  patch_png_size(&png, 100000, 100000);
  const std::string huge = dir + "/huge.png";
  write_bytes(huge, png);
  // The header is valid: info reads it without decoding.
  const ImageInfo info = read_image_info(huge);
  EXPECT_EQ(info.width, 100000);
  EXPECT_EQ(info.height, 100000);
  const auto start = std::chrono::steady_clock::now();
  expect_error([&] { read_image(huge); }, huge,
               "100000x100000 = 10000000000 pixels, more than the limit of 268435456");
  ReadOptions small_limit;
  small_limit.max_pixels = 63;
  expect_error([&] { read_image(dir + "/small.png", small_limit); }, dir + "/small.png",
               "more than the limit of 63");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 0.5);  // allocating 30 GB (or trying to) would not be this quick

  // The same for a JPEG whose SOF0 claims 60000x60000.
  auto jpeg = read_bytes(facades_jpeg());
  size_t sof = 2;
  while (sof + 9 < jpeg.size() && !(jpeg[sof] == 0xff && jpeg[sof + 1] == 0xc0)) ++sof;
  ASSERT_LT(sof + 9, jpeg.size());
  jpeg[sof + 5] = jpeg[sof + 7] = 60000 >> 8;
  jpeg[sof + 6] = jpeg[sof + 8] = 60000 & 0xff;
  write_bytes(dir + "/huge.jpg", jpeg);
  expect_error([&] { read_image(dir + "/huge.jpg"); }, dir + "/huge.jpg", "more than the limit");

  // Zero width: libpng rejects it, and we say so with the path.
  patch_png_size(&png, 0, 8);
  write_bytes(dir + "/zero.png", png);
  expect_error([&] { read_image(dir + "/zero.png"); }, dir + "/zero.png", "width is zero");
}

// A classic little-endian TIFF of one 8-bit strip with only the tags libtiff needs; the header
// may claim far more pixel data than the file holds.
std::vector<uint8_t> tiff_header(uint32_t width, uint32_t height, uint16_t samples) {
  struct Entry {
    uint16_t tag, type;  // type 3: SHORT, 4: LONG
    uint32_t value;
  };
  const Entry entries[] = {{256, 4, width},   {257, 4, height}, {258, 3, 8},
                           {259, 3, 1},       {262, 3, 1},      {273, 4, 0 /* data offset */},
                           {277, 3, samples}, {278, 4, height}, {279, 4, 1}};
  const uint32_t count = sizeof(entries) / sizeof(entries[0]);
  const uint32_t data_offset = 8 + 2 + count * 12 + 4;
  std::vector<uint8_t> bytes = {'I', 'I', 42, 0, 8, 0, 0, 0, uint8_t(count), 0};
  auto put = [&](uint32_t value, int n) {
    for (int i = 0; i < n; ++i) bytes.push_back(uint8_t(value >> (8 * i)));
  };
  for (const Entry& entry : entries) {
    put(entry.tag, 2);
    put(entry.type, 2);
    put(1, 4);
    put(entry.tag == 273 ? data_offset : entry.value, 4);  // SHORT values sit in the low bytes
  }
  put(0, 4);           // no next directory
  bytes.push_back(0);  // the one byte of pixel data
  return bytes;
}

// Found by fuzz/fuzz_image_decode: a TIFF may claim up to 65535 samples per pixel, and a
// 150-byte file made read_image allocate and clear 1.2 GB. Such pixels count as
// ceil(samples / 4) pixels against ReadOptions::max_pixels.
TEST_F(ImageIoTest, RejectsTiffWithHugeSamplesPerPixelBeforeAllocating) {
  const std::string path = temp_dir() + "/samples.tif";
  write_bytes(path, tiff_header(4, 51714, 5888));
  const ImageInfo info = read_image_info(path);
  EXPECT_EQ(info.width, 4);
  EXPECT_EQ(info.height, 51714);
  EXPECT_EQ(info.channels, 5888);
  const auto start = std::chrono::steady_clock::now();
  expect_error([&] { read_image(path); }, path,
               "image is 4x51714 with 5888 samples per pixel, counting as 304492032 pixels, more "
               "than the limit of 268435456 (ReadOptions::max_pixels)");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 0.5);  // allocating and clearing 1.2 GB would not be this quick
  // Within the limit, the same kind of header reaches the pixel data and finds it truncated.
  write_bytes(path, tiff_header(4, 4, 5));
  ReadOptions options;
  options.max_pixels = 32;  // 16 pixels of 5 samples count as 32
  expect_error([&] { read_image(path, options); }, path, "truncated or corrupt TIFF data");
  options.max_pixels = 31;
  expect_error([&] { read_image(path, options); }, path,
               "image is 4x4 with 5 samples per pixel, counting as 32 pixels, more than the limit "
               "of 31");
}

// Found by fuzz/fuzz_image_decode: read_image_info returned a TIFF width of 2^32 - 144 as -144.
TEST_F(ImageIoTest, TiffInfoRejectsSizesThatDoNotFitAnInt) {
  const std::string path = temp_dir() + "/wide.tif";
  write_bytes(path, tiff_header(0xffffff70u, 3, 1));
  expect_error([&] { read_image_info(path); }, path,
               "image size 4294967152x3 in the header is too large");
  expect_error([&] { read_image(path); }, path,
               "image size 4294967152x3 in the header is too large");
}

TEST_F(ImageIoTest, WritePngReportsBadPathsAndLeavesNothingBehind) {
  const std::string dir = temp_dir();
  const Image image = random_image(6, 4, 3, SampleType::kUint8);
  expect_error([&] { write_png(dir + "/no/such/folder/x.png", image); },
               dir + "/no/such/folder/x.png", "does not exist", ErrorKind::kRuntime);
  write_text(dir + "/file", "x");
  expect_error([&] { write_png(dir + "/file/x.png", image); }, dir + "/file/x.png",
               "is not a folder", ErrorKind::kRuntime);
  fs::create_directory(dir + "/taken.png");
  expect_error([&] { write_png(dir + "/taken.png", image); }, dir + "/taken.png", "folder",
               ErrorKind::kRuntime);
  // Images PNG cannot hold are the caller's mistake.
  expect_error([&] { write_png(dir + "/f.png", random_image(6, 4, 1, SampleType::kFloat32)); },
               dir + "/f.png", "float32");
  expect_error([&] { write_png(dir + "/f.png", random_image(6, 4, 5, SampleType::kUint8)); },
               dir + "/f.png", "1..4 channels");
  if (geteuid() != 0) {  // root writes anywhere
    fs::create_directory(dir + "/locked");
    fs::permissions(dir + "/locked", fs::perms::owner_read | fs::perms::owner_exec);
    expect_error([&] { write_png(dir + "/locked/x.png", image); }, dir + "/locked/x.png",
                 "permission denied", ErrorKind::kRuntime);
    fs::permissions(dir + "/locked", fs::perms::owner_all);
  }
  // A write that fails half way (file size limit, as a full disk would): the error names the
  // path, the temporary file is removed and the previous file is untouched.
  write_png(dir + "/keep.png", image);
  const auto before = read_bytes(dir + "/keep.png");
  struct rlimit old_limit;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = 2000;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  expect_error([&] { write_png(dir + "/keep.png", random_image(300, 200, 3, SampleType::kUint8)); },
               dir + "/keep.png", "cannot write", ErrorKind::kRuntime);
  setrlimit(RLIMIT_FSIZE, &old_limit);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(read_bytes(dir + "/keep.png"), before);

  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  std::vector<std::string> expected = {"file", "keep.png", "taken.png"};
  if (geteuid() != 0) expected.insert(expected.begin() + 2, "locked");
  EXPECT_EQ(names, expected);  // no temporary files, no f.png
}

// ---------------------------------------------------------------------------------------------
// Images in memory (uploads): decode_image and encode_png

std::string as_string(const std::vector<uint8_t>& bytes) {
  return std::string(bytes.begin(), bytes.end());
}

// The same bytes decode the same from memory as from a file, in every format and with channel
// conversion; the name given stands for the path in errors.
TEST_F(ImageIoTest, DecodeBytesEqualsReadImageOfTheFile) {
  const std::string dir = temp_dir();
  const Image photo = read_image(facades_jpeg());
  write_png(dir + "/photo.png", photo);
  write_png(dir + "/gray16.png", random_image(37, 23, 1, SampleType::kUint16));
  write_tiff(dir + "/photo.tif", photo, 8, PHOTOMETRIC_RGB, 32, false, COMPRESSION_LZW);
  write_tiff(dir + "/planar.tif", random_image(19, 11, 4, SampleType::kUint8), 8, PHOTOMETRIC_RGB,
             0, true);
  const std::vector<std::pair<std::string, ImageFormat>> files = {
      {facades_jpeg(), ImageFormat::kJpeg},
      {dir + "/photo.png", ImageFormat::kPng},
      {dir + "/gray16.png", ImageFormat::kPng},
      {dir + "/photo.tif", ImageFormat::kTiff},
      {dir + "/planar.tif", ImageFormat::kTiff}};
  for (const auto& [path, format] : files) {
    const std::string bytes = as_string(read_bytes(path));
    EXPECT_EQ(detect_image_format(bytes, "upload"), format) << path;
    for (int channels : {0, 1, 3, 4}) {
      ReadOptions options;
      options.channels = channels;
      const Image from_file = read_image(path, options);
      const Image from_bytes = decode_image(bytes, "upload", options);
      EXPECT_EQ(from_bytes, from_file) << path << " channels " << channels;
    }
  }
}

TEST_F(ImageIoTest, DecodeBytesRejectsEmptyTruncatedForeignAndHugeImages) {
  const std::string dir = temp_dir();
  const Image photo = read_image(facades_jpeg());
  write_png(dir + "/full.png", photo);
  write_tiff(dir + "/full.tif", photo, 8, PHOTOMETRIC_RGB, 0, false, COMPRESSION_LZW);
  for (const std::string& source : {facades_jpeg(), dir + "/full.png", dir + "/full.tif"}) {
    const std::string bytes = as_string(read_bytes(source));
    const std::string half = bytes.substr(0, bytes.size() / 2);
    const std::string extension = fs::path(source).extension().string();
    const std::string expected = extension == ".jpg"   ? "truncated JPEG data"
                                 : extension == ".png" ? "truncated PNG data"
                                                       : "truncated or corrupt TIFF data";
    expect_error([&] { decode_image(half, "half" + extension); }, "half" + extension, expected);
    EXPECT_EQ(capture_stderr(dir, [&] { decode_image(half, "half"); }), "") << source;
    ReadOptions small_limit;
    small_limit.max_pixels = 1000;
    expect_error([&] { decode_image(bytes, "big" + extension, small_limit); }, "big" + extension,
                 "more than the limit of 1000 (ReadOptions::max_pixels)");
  }
  expect_error([&] { decode_image("", "empty"); }, "empty", "empty file (0 bytes)");
  expect_error([&] { detect_image_format("GIF89a\x01\x00", "anim"); }, "anim", "it is a GIF");
  expect_error([&] { decode_image("hello, world", "text"); }, "text", "not a PNG/JPEG/TIFF image");
}

// encode_png gives exactly the file write_png writes, for every layout PNG holds; errors as
// write_png's with "png" for the path.
TEST_F(ImageIoTest, EncodePngEqualsWritePngFile) {
  const std::string dir = temp_dir();
  for (int channels = 1; channels <= 4; ++channels) {
    for (SampleType type : {SampleType::kUint8, SampleType::kUint16}) {
      const Image image = random_image(41, 17, channels, type);
      for (int level : {1, 6, 9}) {
        PngWriteOptions options;
        options.compression_level = level;
        write_png(dir + "/out.png", image, options);
        const std::string bytes = encode_png(image, options);
        EXPECT_EQ(bytes, as_string(read_bytes(dir + "/out.png")))
            << channels << " channels, " << to_string(type) << ", level " << level;
        EXPECT_EQ(decode_image(bytes, "again"), image);
      }
    }
  }
  expect_error([&] { encode_png(random_image(4, 4, 3, SampleType::kFloat32)); }, "png",
               "cannot write a float32 image");
  expect_error([&] { encode_png(Image()); }, "png", "needs 1..4 channels");
  PngWriteOptions bad;
  bad.compression_level = 10;
  expect_error([&] { encode_png(random_image(4, 4, 3, SampleType::kUint8), bad); }, "png",
               "compression level 10");
}

}  // namespace
}  // namespace pix2pix
