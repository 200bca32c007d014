#include "pix2pix/io/tensorboard.h"

#include <fmt/core.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "io/crc32c.h"
#include "pix2pix/error.h"
#include "pix2pix/io/image_io.h"
#include "tensorboard_event.pb.h"

namespace pix2pix {

namespace {

namespace fs = std::filesystem;
namespace pb = pix2pix::tensorboard;

// The CRC-32C table for one byte at a time (reflected polynomial 0x82f63b78). Event records are
// small next to a training step, so a byte-wise table is fast enough.
std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ ((crc & 1u) ? 0x82f63b78u : 0u);
    table[i] = crc;
  }
  return table;
}

double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void put_uint64_le(char* out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}

void put_uint32_le(char* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}

}  // namespace

struct TensorBoardWriter::State {
  std::string path;
  std::FILE* file = nullptr;

  void write_event(const pb::Event& event) {
    std::string data;
    if (!event.SerializeToString(&data))
      throw Error(path, "cannot serialise an event", ErrorKind::kRuntime);
    char header[12];
    put_uint64_le(header, static_cast<uint64_t>(data.size()));
    put_uint32_le(header + 8, detail::masked_crc32c(header, 8));
    char footer[4];
    put_uint32_le(footer, detail::masked_crc32c(data.data(), data.size()));
    if (std::fwrite(header, 1, sizeof header, file) != sizeof header ||
        std::fwrite(data.data(), 1, data.size(), file) != data.size() ||
        std::fwrite(footer, 1, sizeof footer, file) != sizeof footer || std::fflush(file) != 0)
      throw Error(path, std::string("cannot write: ") + std::strerror(errno), ErrorKind::kRuntime);
  }
};

TensorBoardWriter::TensorBoardWriter(const std::string& logdir) : state_(new State) {
  std::error_code error;
  fs::create_directories(logdir, error);
  if (error)
    throw Error(logdir, "cannot create the TensorBoard folder: " + error.message(),
                ErrorKind::kRuntime);
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
  const double now = unix_seconds();
  const std::string base =
      fmt::format("{}/events.out.tfevents.{}.{}", logdir, static_cast<int64_t>(now), host);
  // "x": never open a file another writer created (two runs logging in the same second).
  for (int attempt = 0; attempt < 1000 && !state_->file; ++attempt) {
    state_->path = attempt == 0 ? base : fmt::format("{}.{}", base, attempt);
    state_->file = std::fopen(state_->path.c_str(), "wbx");
    if (!state_->file && errno != EEXIST)
      throw Error(state_->path, std::string("cannot create: ") + std::strerror(errno),
                  ErrorKind::kRuntime);
  }
  if (!state_->file) throw Error(base, "cannot create: too many event files", ErrorKind::kRuntime);
  pb::Event event;
  event.set_wall_time(now);
  event.set_step(0);
  event.set_file_version("brain.Event:2");
  state_->write_event(event);
}

TensorBoardWriter::~TensorBoardWriter() {
  if (state_ && state_->file) std::fclose(state_->file);
}

const std::string& TensorBoardWriter::path() const { return state_->path; }

void TensorBoardWriter::add_scalars(int64_t step,
                                    const std::vector<std::pair<std::string, double>>& values) {
  pb::Event event;
  event.set_wall_time(unix_seconds());
  event.set_step(step);
  pb::Summary* summary = event.mutable_summary();
  for (const auto& [tag, value] : values) {
    pb::Summary::Value* entry = summary->add_value();
    entry->set_tag(tag);
    entry->set_simple_value(static_cast<float>(value));
  }
  state_->write_event(event);
}

void TensorBoardWriter::add_scalar(const std::string& tag, int64_t step, double value) {
  add_scalars(step, {{tag, value}});
}

void TensorBoardWriter::add_image(const std::string& tag, int64_t step,
                                  const std::string& png_bytes, int width, int height,
                                  int channels) {
  if (width <= 0 || height <= 0 || channels < 1 || channels > 4)
    throw Error(tag, fmt::format("bad image for TensorBoard: {}x{} with {} channels", width, height,
                                 channels));
  pb::Event event;
  event.set_wall_time(unix_seconds());
  event.set_step(step);
  pb::Summary::Value* entry = event.mutable_summary()->add_value();
  entry->set_tag(tag);
  pb::Summary::Image* image = entry->mutable_image();
  image->set_width(width);
  image->set_height(height);
  image->set_colorspace(channels);
  image->set_encoded_image_string(png_bytes);
  state_->write_event(event);
}

void TensorBoardWriter::add_png_file(const std::string& tag, int64_t step,
                                     const std::string& png_path) {
  const ImageInfo info = read_image_info(png_path);
  if (info.format != ImageFormat::kPng) throw Error(png_path, "not a PNG file");
  std::ifstream in(png_path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) throw Error(png_path, "cannot read", ErrorKind::kRuntime);
  add_image(tag, step, bytes, info.width, info.height, info.channels);
}

namespace detail {

uint32_t crc32c(const void* data, size_t size) {
  static const std::array<uint32_t, 256> table = make_crc32c_table();
  const auto* bytes = static_cast<const uint8_t*>(data);
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ bytes[i]) & 0xff] ^ (crc >> 8);
  return crc ^ 0xffffffffu;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

}  // namespace detail

}  // namespace pix2pix
