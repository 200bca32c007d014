#include "pix2pix/tools/download.h"

#include <archive.h>
#include <archive_entry.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>

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

// The total size from "Content-Range: bytes 100-199/200"; -1 when absent or "*".
int64_t range_total(const httplib::Response& response) {
  static const std::regex kRange(R"(bytes \d+-\d+/(\d+))");
  std::smatch match;
  const std::string header = response.get_header_value("Content-Range");
  return std::regex_match(header, match, kRange) ? std::stoll(match[1].str()) : -1;
}

// Appends the rest of `url` to `part` (all of it when `part` is empty or the server ignores the
// Range request); returns the archive's total size.
int64_t download(const std::string& url, const std::string& part,
                 const std::function<void(int64_t, int64_t)>& progress) {
  const auto [origin, path] = split_url(url);
  httplib::Client client(origin);
  client.set_follow_location(true);
  client.set_connection_timeout(15);
  client.set_read_timeout(60);
  std::error_code error;
  int64_t have = fs::exists(part, error) ? static_cast<int64_t>(fs::file_size(part, error)) : 0;
  httplib::Headers headers;
  if (have > 0) headers.emplace("Range", "bytes=" + std::to_string(have) + "-");
  std::ofstream out;
  int status = 0;
  int64_t total = -1;
  auto on_response = [&](const httplib::Response& response) {
    status = response.status;
    if (status == 206) {
      total = range_total(response);
    } else if (status == 200) {
      have = 0;  // the whole file again: the server ignored the Range request
      if (response.has_header("Content-Length"))
        total = std::stoll(response.get_header_value("Content-Length"));
    } else {
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
  if (status == 416)  // nothing after the part: it is complete already, or wrong; start again
    return fs::remove(part, error), download(url, part, progress);
  if (status != 0 && status != 200 && status != 206)
    throw Error(url, "HTTP " + std::to_string(status) +
                         (status == 404 ? " (not found: check the name or --url)" : ""));
  if (!out && status != 0) throw Error(part, "cannot be written", ErrorKind::kRuntime);
  if (!result || (total >= 0 && have < total))
    throw Error(url,
                "download stopped at " + std::to_string(have) + " bytes" +
                    (total >= 0 ? " of " + std::to_string(total) : "") + " (" +
                    httplib::to_string(result.error()) + "); " + part +
                    " is kept: the same command resumes it",
                ErrorKind::kRuntime);
  if (total >= 0 && have != total)
    throw Error(part, "holds " + std::to_string(have) + " bytes, the server says " +
                          std::to_string(total) + ": removed, try again");
  return have;
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

// Unpacks every entry of `file` under `folder` (no absolute paths, no "..", no links out).
void unpack(const std::string& file, const std::string& folder) {
  std::unique_ptr<archive, decltype(&archive_read_free)> in(archive_read_new(), archive_read_free);
  std::unique_ptr<archive, decltype(&archive_write_free)> disk(archive_write_disk_new(),
                                                               archive_write_free);
  archive_read_support_filter_all(in.get());
  archive_read_support_format_all(in.get());
  // Entry names are checked here (libarchive's own checks would refuse the absolute `folder`).
  archive_write_disk_set_options(disk.get(),
                                 ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_SYMLINKS);
  if (archive_read_open_filename(in.get(), file.c_str(), 1 << 16) != ARCHIVE_OK)
    throw Error(file, "not a readable archive: " + archive_message(in.get()));
  size_t entries = 0;
  for (;;) {
    archive_entry* entry = nullptr;
    const int status = archive_read_next_header(in.get(), &entry);
    if (status == ARCHIVE_EOF) break;
    if (status < ARCHIVE_WARN) throw Error(file, "damaged archive: " + archive_message(in.get()));
    const std::string target = inside(folder, archive_entry_pathname(entry), file);
    archive_entry_set_pathname(entry, target.c_str());
    if (const char* link = archive_entry_hardlink(entry))
      archive_entry_set_hardlink(entry, inside(folder, link, file).c_str());
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
  split_url(url);  // a bad --url fails before anything is written
  const fs::path out(options.out);
  result.folder = (out / options.name).string();
  result.archive = result.folder + ".tar.gz";
  std::error_code error;
  if (fs::exists(result.folder, error))
    throw Error(result.folder, "already exists: remove it, or choose another `out`");
  fs::create_directories(out, error);
  if (error) throw Error(options.out, "cannot be created: " + error.message());

  const std::string part = result.archive + ".part";
  if (fs::exists(result.archive, error)) {
    result.bytes = static_cast<int64_t>(fs::file_size(result.archive, error));
  } else {
    result.resumed_from =
        fs::exists(part, error) ? static_cast<int64_t>(fs::file_size(part, error)) : 0;
    result.bytes = download(url, part, options.progress);
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
    fs::remove(result.archive, error);  // a damaged download: the next try fetches it again
    throw Error(std::string(e.what()) + "; removed, nothing unpacked: the next try downloads it");
  }
  fs::rename(dataset_root(staging), result.folder);
  fs::remove_all(staging, error);
  return result;
}

}  // namespace pix2pix
