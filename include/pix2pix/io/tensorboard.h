// TensorBoard event files: scalars and PNG images in TensorBoard's record format, so that
// `tensorboard --logdir runs/` shows a run's curves and samples. Plain C++ (no torch, no
// protobuf in this header).
//
// A file is a sequence of records: uint64 length (little endian), masked CRC-32C of those 8
// bytes, the data, masked CRC-32C of the data; each record's data is a serialised Event message
// (src/proto/tensorboard_event.proto, TensorBoard's field numbers). The first event of a file
// carries file_version "brain.Event:2". To log another kind of value: declare its message in the
// .proto and add a method here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace pix2pix {

/// Appends events to one new event file, LOGDIR/events.out.tfevents.<unix seconds>.<host>.
/// Every add_* call writes one complete record and flushes it, so a running TensorBoard sees it
/// and a crash loses at most the record being written. Not thread-safe.
class TensorBoardWriter {
 public:
  /// Creates `logdir` if needed and a new event file in it (a second writer in the same second
  /// gets a ".1", ".2"... suffix rather than appending to another's file), then writes the
  /// file_version event. Throws pix2pix::Error(logdir or the file, reason, kRuntime) when it
  /// cannot.
  explicit TensorBoardWriter(const std::string& logdir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  /// One event holding a scalar per (tag, value) pair, at `step`.
  void add_scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values);
  /// One event holding one scalar.
  void add_scalar(const std::string& tag, int64_t step, double value);
  /// One event holding an encoded image (the bytes of a PNG file) of width x height pixels
  /// with `channels` 1..4.
  void add_image(const std::string& tag, int64_t step, const std::string& png_bytes, int width,
                 int height, int channels);
  /// add_image with the bytes, size and channels read from a PNG file. Throws pix2pix::Error
  /// naming the file when it cannot be read or is not a PNG.
  void add_png_file(const std::string& tag, int64_t step, const std::string& png_path);

  /// The event file's path.
  const std::string& path() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace pix2pix
