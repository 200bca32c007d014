// Crash-safe file replacement: write a hidden temporary beside the target, flush and fsync it,
// then rename it over the target (and fsync the folder). Readers and a crash at any moment see
// either the previous file or the complete new one, never a part; a failed write (full disk,
// file-size limit, permissions) removes the temporary and leaves the previous file as it was.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>
#include <string_view>

namespace pix2pix::detail {

class AtomicFile {
 public:
  /// Creates the temporary for `path`. Throws pix2pix::Error (kRuntime) naming `path` when the
  /// folder is missing, not writable, or `path` is a folder.
  explicit AtomicFile(std::string path);
  /// Removes the temporary unless commit() succeeded.
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  /// The temporary as a stdio stream (buffered; errors surface in write() or commit()).
  std::FILE* stream() { return file_; }
  /// Appends bytes; throws naming the target on failure.
  void write(const void* data, size_t size);
  /// Flushes, fsyncs, closes and renames over the target. Throws naming the target on failure
  /// (the temporary is removed, the previous target is intact).
  void commit();

  const std::string& path() const { return path_; }

 private:
  [[noreturn]] void fail(int error, const std::string& what);

  std::string path_, temp_;
  std::FILE* file_ = nullptr;
  bool committed_ = false;
};

/// Replaces `path` with `bytes` atomically (see AtomicFile).
void write_file_atomically(const std::string& path, std::string_view bytes);

/// Why a file cannot be created in `folder`, in words, from an errno value.
std::string folder_problem(const std::string& folder, int error);

}  // namespace pix2pix::detail
