// Helpers shared by the libFuzzer targets in fuzz/: the readers under test take a path, so each
// input is written to a per-process scratch file (in /dev/shm when it exists: no disk I/O) and
// the reader opens that file exactly as it would a user's.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace pix2pix::fuzz {

/// A scratch file that lives as long as the fuzzing process; `write` replaces its contents.
class ScratchFile {
 public:
  explicit ScratchFile(const std::string& stem) {
    struct stat info {};
    const std::string folder = ::stat("/dev/shm", &info) == 0 && S_ISDIR(info.st_mode)
                                   ? "/dev/shm"
                                   : (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
    path_ = folder + "/pix2pix_fuzz_" + stem + "_" + std::to_string(::getpid());
  }
  ~ScratchFile() { std::remove(path_.c_str()); }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  const std::string& path() const { return path_; }

  /// Replaces the file's contents with `data`; aborts if that fails (the harness is broken, not
  /// the reader).
  void write(const uint8_t* data, size_t size) const {
    std::FILE* file = std::fopen(path_.c_str(), "wb");
    if (file == nullptr || (size > 0 && std::fwrite(data, 1, size, file) != size) ||
        std::fclose(file) != 0) {
      std::perror(path_.c_str());
      std::abort();
    }
  }

 private:
  std::string path_;
};

}  // namespace pix2pix::fuzz
