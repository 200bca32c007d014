// libFuzzer target for the image reader (src/io/image_io.cpp,
// src/detail/image_{png,jpeg,tiff}.cpp): arbitrary bytes go through read_image_info and read_image,
// and a decoded image through every channel conversion. The documented contract is that every
// failure is a pix2pix::Error, so only that is caught: any other exception, a crash, a sanitizer
// report, a leak or a hang is a finding. Seeds: fuzz/corpus/image/. Run with scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "fuzz_util.h"
#include "pix2pix/error.h"
#include "pix2pix/io/image_io.h"

namespace {

// Small enough that a forged header cannot exhaust libFuzzer's -rss_limit_mb (4 Mpx x 4 channels
// x 4 bytes = 64 MB), large enough for any seed.
constexpr int64_t kMaxPixels = int64_t{1} << 22;

// Reads every byte of the image from instrumented code, so that a decoder that leaves the buffer
// short shows up as a heap overflow; also checks the size bookkeeping.
void touch(const pix2pix::Image& image) {
  if (image.empty() || image.data.size() != image.sample_count() * size_t(image.bytes_per_sample()))
    std::abort();
  unsigned sum = 0;
  for (uint8_t byte : image.data) sum += byte;
  volatile unsigned sink = sum;
  (void)sink;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const pix2pix::fuzz::ScratchFile file("image");
  file.write(data, size);
  try {
    const pix2pix::ImageInfo info = pix2pix::read_image_info(file.path());
    if (info.width <= 0 || info.height <= 0 || info.channels <= 0) std::abort();
  } catch (const pix2pix::Error&) {
  }
  pix2pix::ReadOptions options;
  options.max_pixels = kMaxPixels;
  pix2pix::Image image;
  try {
    image = pix2pix::read_image(file.path(), options);
  } catch (const pix2pix::Error&) {
    return 0;
  }
  touch(image);
  for (int channels = 1; channels <= 4; ++channels) {
    try {
      const pix2pix::Image converted = pix2pix::convert_channels(image, channels);
      if (converted.channels != channels || converted.width != image.width ||
          converted.height != image.height || converted.type != image.type)
        std::abort();
      touch(converted);
    } catch (const pix2pix::Error&) {
      // Only images with more than 4 channels (TIFF extra samples) may refuse.
      if (image.channels <= 4) std::abort();
    }
  }
  return 0;
}
