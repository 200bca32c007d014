#include "io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "pix2pix/error.h"

namespace pix2pix::detail {

namespace {

std::string folder_of(const std::string& path) {
  std::string folder = std::filesystem::path(path).parent_path().string();
  return folder.empty() ? "." : folder;
}

}  // namespace

std::string folder_problem(const std::string& folder, int error) {
  switch (error) {
    case ENOENT:
      return "cannot write: folder '" + folder + "' does not exist";
    case ENOTDIR:
      return "cannot write: '" + folder + "' is not a folder";
    case EACCES:
    case EPERM:
      return "cannot write: permission denied in folder '" + folder + "'";
    case EROFS:
      return "cannot write: folder '" + folder + "' is on a read-only file system";
    default:
      return "cannot write in folder '" + folder + "': " + std::strerror(error);
  }
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  const std::filesystem::path target(path_);
  const std::string name = target.filename().string();
  if (name.empty() || name == "." || name == "..")
    throw Error(path_, "cannot write: not a file name", ErrorKind::kRuntime);
  const std::string folder = folder_of(path_);
  struct stat status;
  if (::stat(folder.c_str(), &status) != 0)
    throw Error(path_, folder_problem(folder, errno), ErrorKind::kRuntime);
  if (!S_ISDIR(status.st_mode))
    throw Error(path_, folder_problem(folder, ENOTDIR), ErrorKind::kRuntime);
  if (::stat(path_.c_str(), &status) == 0 && S_ISDIR(status.st_mode))
    throw Error(path_, "cannot write: a folder of that name exists", ErrorKind::kRuntime);
  // A hidden, unique temporary in the same folder, so that rename() is atomic.
  static std::atomic<unsigned> counter{0};
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {
    temp_ = (target.parent_path() /
             ("." + name + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++)))
                .string();
    fd = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && (errno != EEXIST || attempt > 100))
      throw Error(path_, folder_problem(folder, errno), ErrorKind::kRuntime);
  }
  file_ = ::fdopen(fd, "wb");
  if (file_ == nullptr) {
    const int error = errno;
    ::close(fd);
    ::unlink(temp_.c_str());
    throw Error(path_, std::string("cannot write: ") + std::strerror(error), ErrorKind::kRuntime);
  }
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  if (file_ != nullptr) std::fclose(file_);
  ::unlink(temp_.c_str());
}

void AtomicFile::fail(int error, const std::string& what) {
  if (file_ != nullptr) std::fclose(file_);
  file_ = nullptr;
  ::unlink(temp_.c_str());
  committed_ = true;  // nothing left to clean up
  throw Error(path_, "cannot write: " + what + ": " + std::strerror(error != 0 ? error : EIO),
              ErrorKind::kRuntime);
}

void AtomicFile::write(const void* data, size_t size) {
  if (size > 0 && std::fwrite(data, 1, size, file_) != size) fail(errno, "write failed");
}

void AtomicFile::commit() {
  // Write errors such as a full disk may only show when the buffer is flushed or synced.
  if (std::fflush(file_) != 0 || std::ferror(file_)) fail(errno, "write failed");
  if (::fsync(::fileno(file_)) != 0) fail(errno, "fsync failed");
  const int closed = std::fclose(file_);
  file_ = nullptr;
  if (closed != 0) fail(errno, "close failed");
  if (std::rename(temp_.c_str(), path_.c_str()) != 0) fail(errno, "rename failed");
  committed_ = true;
  // Make the rename itself durable; failing here leaves a complete file, so it is not an error.
  const int dir = ::open(folder_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

void write_file_atomically(const std::string& path, std::string_view bytes) {
  AtomicFile file(path);
  file.write(bytes.data(), bytes.size());
  file.commit();
}

}  // namespace pix2pix::detail
