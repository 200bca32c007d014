#include "pix2pix/tools/download.h"

#include <archive.h>
#include <archive_entry.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <tuple>

#include "pix2pix/error.h"

namespace pix2pix {

namespace {

namespace fs = std::filesystem;

const KnownDataset& find_dataset(const std::string& name) {
  std::string names;
  for (const KnownDataset& dataset : known_datasets()) {
    if (dataset.name == name) return dataset;
    names += (names.empty() ? "" : ", ") + dataset.name;
  }
  throw Error::option("name", "unknown dataset '" + name + "' (known: " + names + ")");
}

// "http://host:port" and "/path" of a URL.
std::pair<std::string, std::string> split_url(const std::string& url) {
  static const std::regex kUrl(R"(^(https?://[^/]+)(/.*)$)");
  std::smatch match;
  if (!std::regex_match(url, match, kUrl))
    throw Error::option("url", "'" + url + "' is not an http:// or https:// URL with a path");
  return {match[1].str(), match[2].str()};
}

// The first byte and the total size of "Content-Range: bytes 100-199/200" or "bytes */200"
// (first -1); total -1 when absent or "*".
std::pair<int64_t, int64_t> content_range(const httplib::Response& response) {
  static const std::regex kRange(R"(bytes (\d+)-\d+/(\d+|\*))");
  static const std::regex kUnsatisfied(R"(bytes \*/(\d+))");
  std::smatch match;
  const std::string header = response.get_header_value("Content-Range");
  if (std::regex_match(header, match, kRange))
    return {std::stoll(match[1].str()), match[2] == "*" ? -1 : std::stoll(match[2].str())};
  if (std::regex_match(header, match, kUnsatisfied)) return {-1, std::stoll(match[1].str())};
  return {-1, -1};
}

// What a download did.
struct Fetched {
  int64_t bytes = 0;         // the archive's size
  int64_t resumed_from = 0;  // bytes of the part the server continued (0: none)
};

// Appends the rest of `url` to `part` (all of it when `part` is empty or the server ignores the
// Range request).
Fetched download(const std::string& url, const std::string& part,
                 const std::function<void(int64_t, int64_t)>& progress, bool retried = false) {
  const auto [origin, path] = split_url(url);
  httplib::Client client(origin);
  client.set_follow_location(true);
  client.set_decompress(false);  // a server's Content-Encoding: gzip must not unpack the .tar.gz
  client.set_connection_timeout(15);
  client.set_read_timeout(60);
  std::error_code error;
  int64_t have = fs::exists(part, error) ? static_cast<int64_t>(fs::file_size(part, error)) : 0;
  httplib::Headers headers;
  if (have > 0) headers.emplace("Range", "bytes=" + std::to_string(have) + "-");
  Fetched fetched;
  std::ofstream out;
  int status = 0;
  int64_t total = -1;
  bool misplaced = false;  // a 206 that does not start where the part ends
  auto on_response = [&](const httplib::Response& response) {
    status = response.status;
    if (status == 206) {
      int64_t first = 0;
      std::tie(first, total) = content_range(response);
      misplaced = first != have;
      if (misplaced) return false;
      fetched.resumed_from = have;
    } else if (status == 200) {
      have = 0;  // the whole file again: the server ignored the Range request
      if (response.has_header("Content-Length"))
        total = std::stoll(response.get_header_value("Content-Length"));
    } else {
      if (status == 416) total = content_range(response).second;
      return false;
    }
    out.open(part,
             status == 206 ? std::ios::binary | std::ios::app : std::ios::binary | std::ios::trunc);
    return static_cast<bool>(out);
  };
  auto on_data = [&](const char* data, size_t size) {
    out.write(data, static_cast<std::streamsize>(size));
    have += static_cast<int64_t>(size);
    if (progress) progress(have, total);
    return static_cast<bool>(out);
  };
  const httplib::Result result = client.Get(path, headers, on_response, on_data);
  out.close();
  if (status == 416 && total == have) return {have, have};  // the part was complete already
  // A part the server cannot continue (416, or a 206 for other bytes): once more from the start.
  if ((status == 416 || misplaced) && !retried && fs::remove(part, error))
    return download(url, part, progress, true);
  if (misplaced) throw Error(url, "answered the Range request with other bytes of the file");
  if (status != 0 && status != 200 && status != 206)
    throw Error(url, "HTTP " + std::to_string(status) +
                         (status == 404 ? " (not found: check the name or `url`)" : ""));
  if (!out && status != 0) throw Error(part, "cannot be written", ErrorKind::kRuntime);
  const bool kept = fs::exists(part, error) && have > 0;
  if (!result || (total >= 0 && have < total))
    throw Error(url,
                "download stopped at " + std::to_string(have) + " bytes" +
                    (total >= 0 ? " of " + std::to_string(total) : "") + " (" +
                    httplib::to_string(result.error()) + ")" +
                    (kept ? "; " + part + " is kept: the same command resumes it" : ""),
                ErrorKind::kRuntime);
  if (total >= 0 && have != total) {
    fs::remove(part, error);
    throw Error(part, "held " + std::to_string(have) + " bytes, the server says " +
                          std::to_string(total) + ": removed, try again");
  }
  fetched.bytes = have;
  return fetched;
}

// libarchive's last message for `a`.
std::string archive_message(archive* a) {
  const char* message = archive_error_string(a);
  return message ? message : "unknown libarchive error";
}

// folder/NAME for an archive entry's NAME; refuses names that would land outside `folder`.
std::string inside(const std::string& folder, const std::string& name, const std::string& file) {
  const fs::path path(name);
  bool escapes = path.is_absolute();
  for (const fs::path& part : path) escapes = escapes || part == "..";
  if (escapes) throw Error(file, "unsafe archive: the entry '" + name + "' points outside it");
  return folder + "/" + name;
}

// Unpacks every entry of `file`, a tar archive (gzip, bzip2 or xz), under `folder`: folders and
// regular files only, none outside `folder`. Errors in the archive are ErrorKind::kInput, those
// in writing the files kRuntime.
void unpack(const std::string& file, const std::string& folder) {
  std::unique_ptr<archive, decltype(&archive_read_free)> in(archive_read_new(), archive_read_free);
  std::unique_ptr<archive, decltype(&archive_write_free)> disk(archive_write_disk_new(),
                                                               archive_write_free);
  // Only what the datasets are published as: no format or filter that reads other files or runs
  // programs (mtree, external decompressors).
  archive_read_support_filter_gzip(in.get());
  archive_read_support_filter_bzip2(in.get());
  archive_read_support_filter_xz(in.get());
  archive_read_support_format_tar(in.get());
  // Entry names and types are checked here (libarchive's own checks would refuse `folder`
  // itself when absolute or under a symbolic link).
  archive_write_disk_set_options(disk.get(), ARCHIVE_EXTRACT_TIME);
  if (archive_read_open_filename(in.get(), file.c_str(), 1 << 16) != ARCHIVE_OK)
    throw Error(file, "not a readable archive: " + archive_message(in.get()));
  size_t entries = 0;
  for (;;) {
    archive_entry* entry = nullptr;
    const int status = archive_read_next_header(in.get(), &entry);
    if (status == ARCHIVE_EOF) break;
    if (status < ARCHIVE_WARN) throw Error(file, "damaged archive: " + archive_message(in.get()));
    const char* name = archive_entry_pathname(entry);
    if (name == nullptr) throw Error(file, "damaged archive: an entry without a name");
    const auto type = archive_entry_filetype(entry);
    if ((type != AE_IFREG && type != AE_IFDIR) || archive_entry_hardlink(entry) != nullptr)
      throw Error(file, std::string("unsafe archive: '") + name +
                            "' is a link or a special file (a dataset holds folders and images)");
    const std::string target = inside(folder, name, file);
    archive_entry_set_pathname(entry, target.c_str());
    if (archive_write_header(disk.get(), entry) < ARCHIVE_WARN)
      throw Error(target, "cannot be unpacked: " + archive_message(disk.get()),
                  ErrorKind::kRuntime);
    const void* block = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    int read = ARCHIVE_OK;
    while ((read = archive_read_data_block(in.get(), &block, &size, &offset)) == ARCHIVE_OK)
      if (archive_write_data_block(disk.get(), block, size, offset) < ARCHIVE_WARN)
        throw Error(target, "cannot be written: " + archive_message(disk.get()),
                    ErrorKind::kRuntime);
    if (read != ARCHIVE_EOF) throw Error(file, "damaged archive: " + archive_message(in.get()));
    if (archive_write_finish_entry(disk.get()) < ARCHIVE_WARN)
      throw Error(target, "cannot be written: " + archive_message(disk.get()), ErrorKind::kRuntime);
    ++entries;
  }
  if (entries == 0) throw Error(file, "an empty archive");
}

// The dataset inside an unpacked archive: its one top-level folder (the authors' archives hold
// NAME/{train,val,test}), or the staging folder itself.
fs::path dataset_root(const fs::path& staging) {
  std::vector<fs::path> entries;
  for (const auto& entry : fs::directory_iterator(staging)) entries.push_back(entry.path());
  return entries.size() == 1 && fs::is_directory(entries[0]) ? entries[0] : staging;
}

}  // namespace

const std::vector<KnownDataset>& known_datasets() {
  static const std::vector<KnownDataset> datasets = {
      {"facades", "photo", "label map", "BtoA"}, {"cityscapes", "photo", "label map", "BtoA"},
      {"night2day", "night", "day", "AtoB"},     {"edges2handbags", "edges", "photo", "AtoB"},
      {"edges2shoes", "edges", "photo", "AtoB"}, {"maps", "aerial photo", "map", "AtoB"},
  };
  return datasets;
}

GetDatasetResult get_dataset(const GetDatasetOptions& options) {
  GetDatasetResult result;
  result.dataset = find_dataset(options.name);
  const std::string url = options.url.empty()
                              ? std::string(kDatasetsBaseUrl) + "/" + options.name + ".tar.gz"
                              : options.url;
  split_url(url);  // a bad `url` fails before anything is written
  fs::path out(options.out);
  result.folder = (out / options.name).string();
  result.archive = result.folder + ".tar.gz";
  std::error_code error;
  if (fs::exists(result.folder, error))
    throw Error(result.folder, "already exists: remove it, or choose another `out`");
  fs::create_directories(out, error);
  if (error) throw Error(options.out, "cannot be created: " + error.message());
  out = fs::canonical(out);  // no symbolic link on the way for the unpacked files

  const std::string part = result.archive + ".part";
  if (fs::exists(result.archive, error)) {
    result.bytes = static_cast<int64_t>(fs::file_size(result.archive, error));
  } else {
    const Fetched fetched = download(url, part, options.progress);
    result.bytes = fetched.bytes;
    result.resumed_from = fetched.resumed_from;
    fs::rename(part, result.archive);
  }

  // Unpacked beside the target and moved in whole: a failure leaves no half dataset.
  const fs::path staging = out / ("." + options.name + ".unpacking");
  fs::remove_all(staging, error);
  fs::create_directories(staging);
  try {
    unpack(result.archive, staging.string());
  } catch (const Error& e) {
    fs::remove_all(staging, error);
    if (e.kind() != ErrorKind::kInput) throw;  // e.g. a full disk: the archive is fine
    fs::remove(result.archive, error);         // a damaged download: the next try fetches it again
    throw Error(std::string(e.what()) + "; removed, nothing unpacked: the next try downloads it");
  }
  fs::rename(dataset_root(staging), result.folder);
  fs::remove_all(staging, error);
  return result;
}

}  // namespace pix2pix
