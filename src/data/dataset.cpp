// Dataset layouts on disk: listing and pairing files (by stem, never by position), loading a pair
// with the direction applied, checking a whole dataset without stopping at the first bad file
// (`pix2pix data check`) and combining A/ and B/ folders into aligned images
// (`pix2pix data combine`). Plain C++: no torch headers, so it compiles in seconds.
#include "pix2pix/data/dataset.h"

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>

#include "io/image_codecs.h"
#include "names_table.h"
#include "pix2pix/data/transforms.h"
#include "pix2pix/error.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;

constexpr const char* kImageExtensions = ".png .jpg .jpeg .tif .tiff";

bool has_image_extension(const fs::path& path) {
  std::string extension = path.extension().string();
  for (char& c : extension) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return extension == ".png" || extension == ".jpg" || extension == ".jpeg" ||
         extension == ".tif" || extension == ".tiff";
}

std::string join_path(const std::string& folder, const std::string& name) {
  return (fs::path(folder) / name).string();
}

std::string stem_of(const std::string& path) { return fs::path(path).stem().string(); }

bool is_folder(const std::string& path) {
  std::error_code error;
  return fs::is_directory(path, error);
}

std::string join(const std::vector<std::string>& items, const std::string& separator) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

// Throws unless `folder` exists and is a folder.
void require_folder(const std::string& folder, const std::string& what) {
  std::error_code error;
  if (!fs::exists(folder, error)) throw Error(folder, what + " does not exist");
  if (!fs::is_directory(folder, error)) throw Error(folder, "not a folder");
}

struct FolderListing {
  std::vector<std::string> images;   // files with an image extension, sorted
  std::vector<std::string> ignored;  // other files, sorted
};

FolderListing list_folder(const std::string& folder) {
  require_folder(folder, "folder");
  FolderListing listing;
  std::error_code error;
  fs::directory_iterator it(folder, error);
  for (; !error && it != fs::directory_iterator(); it.increment(error)) {
    std::error_code type_error;
    if (!it->is_regular_file(type_error)) continue;  // sub-folders are splits, not images
    (has_image_extension(it->path()) ? listing.images : listing.ignored)
        .push_back(it->path().string());
  }
  if (error) throw Error(folder, "cannot read the folder: " + error.message());
  std::sort(listing.images.begin(), listing.images.end());
  std::sort(listing.ignored.begin(), listing.ignored.end());
  return listing;
}

// Throws, listing the splits that do exist, unless `folder` (a split of `parent`) exists.
void require_split(const std::string& folder, const std::string& parent) {
  if (is_folder(folder)) return;
  const std::vector<std::string> splits = list_splits(parent);
  throw Error(folder, splits.empty() ? fmt::format("split folder does not exist, and no "
                                                   "sub-folder of {} holds images",
                                                   parent)
                                     : fmt::format("split folder does not exist; splits in {}: {}",
                                                   parent, join(splits, ", ")));
}

// train, val, test first (the reference's phases), then the others by name.
void order_splits(std::vector<std::string>* splits) {
  auto rank = [](const std::string& name) {
    return name == "train" ? 0 : name == "val" ? 1 : name == "test" ? 2 : 3;
  };
  std::sort(splits->begin(), splits->end(), [&](const std::string& x, const std::string& y) {
    return rank(x) != rank(y) ? rank(x) < rank(y) : x < y;
  });
  splits->erase(std::unique(splits->begin(), splits->end()), splits->end());
}

// Files by stem. A file whose stem was already taken becomes a problem: outputs and pairs are
// named by stem, so a.png and a.jpg cannot both be used.
std::map<std::string, std::string> index_by_stem(const std::vector<std::string>& files,
                                                 std::vector<DatasetProblem>* problems) {
  std::map<std::string, std::string> by_stem;
  for (const auto& path : files) {
    const std::string stem = stem_of(path);
    auto [it, inserted] = by_stem.emplace(stem, path);
    if (!inserted) {
      problems->push_back({path, fmt::format("same stem '{}' as {}: rename one (files are "
                                             "named and paired by stem)",
                                             stem, it->second)});
    }
  }
  return by_stem;
}

std::string unmatched_reason(const std::string& stem, const std::string& other_folder) {
  if (!is_folder(other_folder)) return fmt::format("no partner: {} does not exist", other_folder);
  return fmt::format("no file with stem '{}' in {} (pairs are matched by file stem)", stem,
                     other_folder);
}

// The files of one split, paired, with the problems found while pairing.
struct SplitScan {
  std::vector<DatasetEntry> entries;     // sorted by file name
  std::vector<DatasetProblem> problems;  // duplicate stems, unmatched files
  std::vector<std::string> files_a;      // every image file (aligned: every file)
  std::vector<std::string> files_b;      // every image file in the B folder (paired)
  std::vector<std::string> ignored;      // files without an image extension
};

// One image per entry (aligned or single); `with_b` sets path_b = path_a (aligned).
SplitScan scan_single_folder(const std::string& folder, bool with_b) {
  SplitScan scan;
  FolderListing listing = list_folder(folder);
  const auto by_stem = index_by_stem(listing.images, &scan.problems);
  for (const auto& path : listing.images) {
    const std::string stem = stem_of(path);
    if (by_stem.at(stem) != path) continue;  // a duplicate, reported
    scan.entries.push_back({stem, path, with_b ? path : std::string()});
  }
  scan.files_a = std::move(listing.images);
  scan.ignored = std::move(listing.ignored);
  return scan;
}

// A/<split> and B/<split> matched by stem; either folder may be missing (its partner's files are
// then all unmatched).
SplitScan scan_paired(const std::string& folder_a, const std::string& folder_b) {
  SplitScan scan;
  FolderListing listing_a, listing_b;
  if (is_folder(folder_a)) listing_a = list_folder(folder_a);
  if (is_folder(folder_b)) listing_b = list_folder(folder_b);
  const auto by_stem_a = index_by_stem(listing_a.images, &scan.problems);
  const auto by_stem_b = index_by_stem(listing_b.images, &scan.problems);
  for (const auto& path : listing_a.images) {
    const std::string stem = stem_of(path);
    if (by_stem_a.at(stem) != path) continue;
    const auto partner = by_stem_b.find(stem);
    if (partner == by_stem_b.end()) {
      scan.problems.push_back({path, unmatched_reason(stem, folder_b)});
    } else {
      scan.entries.push_back({stem, path, partner->second});
    }
  }
  for (const auto& [stem, path] : by_stem_b) {
    if (by_stem_a.count(stem) == 0)
      scan.problems.push_back({path, unmatched_reason(stem, folder_a)});
  }
  scan.files_a = std::move(listing_a.images);
  scan.files_b = std::move(listing_b.images);
  scan.ignored = std::move(listing_a.ignored);
  scan.ignored.insert(scan.ignored.end(), listing_b.ignored.begin(), listing_b.ignored.end());
  return scan;
}

// One line per path (several reasons joined), sorted by path.
std::vector<DatasetProblem> merge_problems(const std::vector<DatasetProblem>& problems) {
  std::map<std::string, std::string> by_path;
  for (const auto& problem : problems) {
    std::string& reasons = by_path[problem.path];
    reasons += (reasons.empty() ? "" : "; ") + problem.reason;
  }
  std::vector<DatasetProblem> merged;
  for (auto& [path, reason] : by_path) merged.push_back({path, reason});
  return merged;
}

// Throws the first problem, mentioning how many more there are.
[[noreturn]] void throw_first(const std::vector<DatasetProblem>& problems,
                              const std::string& hint) {
  const DatasetProblem& first = problems.front();
  std::string reason = first.reason;
  if (problems.size() > 1) {
    reason += fmt::format(" (and {} more problem{}{})", problems.size() - 1,
                          problems.size() > 2 ? "s" : "", hint);
  }
  throw Error(first.path, reason);
}

// The error's reason without the "<path>: " that read_image puts first.
std::string reason_of(const std::exception& error, const std::string& path) {
  const std::string message = error.what();
  const std::string prefix = path + ": ";
  std::string reason =
      message.compare(0, prefix.size(), prefix) == 0 ? message.substr(prefix.size()) : message;
  return reason.substr(0, reason.find('\n'));
}

std::string size_string(int width, int height) { return fmt::format("{}x{}", width, height); }

void require_even_width(int width, const std::string& subject) {
  if (width % 2 != 0) {
    throw Error(subject, fmt::format("odd width {}: an aligned image holds A and B side by side, "
                                     "so its width must be even",
                                     width));
  }
}

void require_same_size(const std::string& path_a, int width_a, int height_a,
                       const std::string& path_b, int width_b, int height_b) {
  if (width_a != width_b || height_a != height_b) {
    throw Error(path_a, fmt::format("size {} differs from its partner {} ({}): A and B of a pair "
                                    "must have the same size",
                                    size_string(width_a, height_a), path_b,
                                    size_string(width_b, height_b)));
  }
}

// Runs body(0..count-1) on `threads` threads (0: all cores). The first exception stops the
// remaining work and is rethrown.
void parallel_for(size_t count, int threads, const std::function<void(size_t)>& body) {
  size_t workers =
      threads > 0 ? size_t(threads) : std::max(1u, std::thread::hardware_concurrency());
  workers = std::min(workers, count);
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex mutex;
  std::exception_ptr failure;
  auto work = [&] {
    while (!stop) {
      const size_t index = next++;
      if (index >= count) return;
      try {
        body(index);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!failure) failure = std::current_exception();
        stop = true;
      }
    }
  };
  std::vector<std::thread> pool;
  for (size_t i = 1; i < workers; ++i) pool.emplace_back(work);
  work();
  for (auto& thread : pool) thread.join();
  if (failure) std::rethrow_exception(failure);
}

Image to_uint16(const Image& image) {
  if (image.type == SampleType::kUint16) return image;
  Image out(image.width, image.height, image.channels, SampleType::kUint16);
  uint16_t* dst = out.samples<uint16_t>();
  const size_t count = image.sample_count();
  if (image.type == SampleType::kUint8) {
    const uint8_t* src = image.samples<uint8_t>();
    for (size_t i = 0; i < count; ++i) dst[i] = uint16_t(src[i] * 257);  // 255 -> 65535
  } else {
    const float* src = image.samples<float>();
    for (size_t i = 0; i < count; ++i) {
      const float v = std::isnan(src[i]) ? 0.0f : std::min(1.0f, std::max(0.0f, src[i]));
      dst[i] = uint16_t(std::lround(v * 65535.0f));
    }
  }
  return out;
}

ImageSummary summary_of(const std::string& side) {
  ImageSummary summary;
  summary.side = side;
  return summary;
}

DatasetLayout resolve_layout(const std::string& root, DatasetLayout layout) {
  if (layout != DatasetLayout::kAuto) return layout;
  return is_folder(join_path(root, "A")) && is_folder(join_path(root, "B"))
             ? DatasetLayout::kPairedFolders
             : DatasetLayout::kAligned;
}

void require_paired_root(const std::string& root) {
  for (const char* side : {"A", "B"}) {
    const std::string folder = join_path(root, side);
    if (!is_folder(folder)) {
      throw Error(folder,
                  "folder does not exist: a paired dataset has <root>/A/<split>/ and "
                  "<root>/B/<split>/");
    }
  }
}

}  // namespace

template <>
const std::vector<std::string>& names<Direction>() {
  static const std::vector<std::string> list = {"AtoB", "BtoA"};
  return list;
}

Direction parse_direction(const std::string& name) {
  if (const std::optional<Direction> direction = detail::find_name<Direction>(name))
    return *direction;
  throw Error::option("direction",
                      "'" + name + "' is not " + detail::list_names(names<Direction>()));
}

std::string to_string(Direction direction) { return detail::name_of(direction); }

template <>
const std::vector<std::string>& names<DatasetLayout>() {
  static const std::vector<std::string> list = {"auto", "aligned", "paired", "single"};
  return list;
}

std::string to_string(DatasetLayout layout) { return detail::name_of(layout); }

DatasetLayout parse_layout(const std::string& name) {
  if (const std::optional<DatasetLayout> layout = detail::find_name<DatasetLayout>(name))
    return *layout;
  throw Error::option("layout",
                      "'" + name + "' is not " + detail::list_names(names<DatasetLayout>()));
}

std::vector<std::string> list_images(const std::string& folder) {
  return list_folder(folder).images;
}

std::vector<std::string> list_splits(const std::string& folder) {
  std::vector<std::string> splits;
  std::error_code error;
  fs::directory_iterator it(folder, error);
  for (; !error && it != fs::directory_iterator(); it.increment(error)) {
    std::error_code type_error;
    if (!it->is_directory(type_error)) continue;
    try {
      if (!list_folder(it->path().string()).images.empty())
        splits.push_back(it->path().filename().string());
    } catch (const Error&) {
      // An unreadable sub-folder is not a split.
    }
  }
  std::sort(splits.begin(), splits.end());
  return splits;
}

std::pair<Image, Image> split_aligned(const Image& ab, const std::string& subject) {
  if (ab.empty()) throw Error(subject, "empty image");
  require_even_width(ab.width, subject);
  Image a(ab.width / 2, ab.height, ab.channels, ab.type);
  Image b(ab.width / 2, ab.height, ab.channels, ab.type);
  const size_t half = a.row_bytes();
  for (int y = 0; y < ab.height; ++y) {
    const uint8_t* row = ab.data.data() + size_t(y) * ab.row_bytes();
    std::memcpy(a.data.data() + size_t(y) * half, row, half);
    std::memcpy(b.data.data() + size_t(y) * half, row + half, half);
  }
  return {std::move(a), std::move(b)};
}

Image join_aligned(const Image& a, const Image& b, const std::string& subject) {
  if (a.empty() || b.empty()) throw Error(subject, "cannot join an empty image");
  if (a.width != b.width || a.height != b.height || a.channels != b.channels || a.type != b.type) {
    throw Error(subject,
                fmt::format("A ({}, {} channels, {}) and B ({}, {} channels, {}) differ",
                            size_string(a.width, a.height), a.channels, to_string(a.type),
                            size_string(b.width, b.height), b.channels, to_string(b.type)));
  }
  Image ab(a.width * 2, a.height, a.channels, a.type);
  const size_t half = a.row_bytes();
  for (int y = 0; y < a.height; ++y) {
    uint8_t* row = ab.data.data() + size_t(y) * ab.row_bytes();
    std::memcpy(row, a.data.data() + size_t(y) * half, half);
    std::memcpy(row + half, b.data.data() + size_t(y) * half, half);
  }
  return ab;
}

Dataset::Dataset(DatasetOptions options) : options_(std::move(options)) {
  if (options_.input_nc < 1)
    throw Error("input_nc", fmt::format("must be at least 1, got {}", options_.input_nc));
  if (options_.output_nc < 1)
    throw Error("output_nc", fmt::format("must be at least 1, got {}", options_.output_nc));
  const std::string& root = options_.root;
  require_folder(root, "dataset folder");
  layout_ = resolve_layout(root, options_.layout);

  SplitScan scan;
  std::string folder;
  switch (layout_) {
    case DatasetLayout::kAuto:  // resolved above
    case DatasetLayout::kAligned:
      folder = join_path(root, options_.split);
      require_split(folder, root);
      scan = scan_single_folder(folder, true);
      break;
    case DatasetLayout::kPairedFolders: {
      require_paired_root(root);
      folder = join_path(join_path(root, "A"), options_.split);
      const std::string folder_b = join_path(join_path(root, "B"), options_.split);
      require_split(folder, join_path(root, "A"));
      require_split(folder_b, join_path(root, "B"));
      scan = scan_paired(folder, folder_b);
      break;
    }
    case DatasetLayout::kSingle:
      folder = join_path(root, options_.split);
      if (!is_folder(folder)) folder = root;
      scan = scan_single_folder(folder, false);
      break;
  }
  if (!scan.problems.empty()) {
    throw_first(merge_problems(scan.problems), "; `check_dataset(" + root + ")` lists all");
  }
  if (scan.entries.empty()) {
    throw Error(folder, fmt::format("no images ({}) in this folder", kImageExtensions));
  }
  entries_ = std::move(scan.entries);
}

Sample Dataset::load(size_t index) const {
  const DatasetEntry& entry = entries_.at(index);
  Sample sample;
  sample.name = entry.name;
  ReadOptions read = options_.read;
  if (layout_ == DatasetLayout::kSingle) {
    read.channels = options_.input_nc;
    sample.input = read_image(entry.path_a, read);
    return sample;
  }
  const bool a_to_b = options_.direction == Direction::kAtoB;
  const int channels_a = a_to_b ? options_.input_nc : options_.output_nc;
  const int channels_b = a_to_b ? options_.output_nc : options_.input_nc;
  Image a, b;
  if (layout_ == DatasetLayout::kPairedFolders) {
    read.channels = channels_a;
    a = read_image(entry.path_a, read);
    read.channels = channels_b;
    b = read_image(entry.path_b, read);
    require_same_size(entry.path_a, a.width, a.height, entry.path_b, b.width, b.height);
  } else {
    read.channels = 0;  // convert the halves, not the whole
    auto halves = split_aligned(read_image(entry.path_a, read), entry.path_a);
    a = detail::convert_channels(halves.first, channels_a, entry.path_a);
    b = detail::convert_channels(halves.second, channels_b, entry.path_a);
  }
  sample.input = a_to_b ? std::move(a) : std::move(b);
  sample.target = a_to_b ? std::move(b) : std::move(a);
  return sample;
}

std::pair<int, int> Dataset::probe(size_t index) const {
  const DatasetEntry& entry = entries_.at(index);
  auto header = [&](const std::string& path) {
    const ImageInfo info = read_image_info(path);
    const int64_t pixels = int64_t{info.width} * info.height;
    if (options_.read.max_pixels > 0 && pixels > options_.read.max_pixels)
      throw Error(path,
                  fmt::format("{} pixels, more than the limit of {} (ReadOptions::max_pixels)",
                              size_string(info.width, info.height), options_.read.max_pixels));
    return info;
  };
  const ImageInfo a = header(entry.path_a);
  if (layout_ == DatasetLayout::kSingle) return {a.width, a.height};
  if (layout_ == DatasetLayout::kPairedFolders) {
    const ImageInfo b = header(entry.path_b);
    require_same_size(entry.path_a, a.width, a.height, entry.path_b, b.width, b.height);
    return {a.width, a.height};
  }
  require_even_width(a.width, entry.path_a);
  return {a.width / 2, a.height};
}

Dataset Dataset::without(const std::vector<size_t>& indices) const {
  std::vector<bool> drop(entries_.size(), false);
  for (size_t i : indices)
    if (i < drop.size()) drop[i] = true;
  Dataset copy = *this;
  copy.entries_.clear();
  for (size_t i = 0; i < entries_.size(); ++i)
    if (!drop[i]) copy.entries_.push_back(entries_[i]);
  return copy;
}

size_t DatasetCheck::problem_count() const {
  size_t count = 0;
  for (const auto& split : splits) count += split.problems.size();
  return count;
}

namespace {

// The splits a check covers: train, val and test when they exist (even empty: that is a
// problem), and any sub-folder holding images. Throws naming `root` when there are none.
std::vector<std::string> splits_to_check(const std::string& root,
                                         const std::vector<std::string>& parents, bool paired) {
  std::vector<std::string> names;
  for (const auto& parent : parents) {
    for (const char* phase : {"train", "val", "test"})
      if (is_folder(join_path(parent, phase))) names.push_back(phase);
    for (auto& split : list_splits(parent)) names.push_back(std::move(split));
  }
  order_splits(&names);
  if (!names.empty()) return names;
  const size_t loose = paired ? 0 : list_images(root).size();
  std::string reason =
      fmt::format("no split folders{} (train/, val/, test/ or another sub-folder holding images)",
                  paired ? " in A/ nor in B/" : "");
  if (loose > 0) {
    reason += fmt::format(
        "; {} image{} lie directly in it: an aligned dataset keeps them in "
        "<root>/<split>/",
        loose, loose == 1 ? "" : "s");
  }
  throw Error(root, reason);
}

// One file of a split to decode: which split, which side (index into SplitCheck::images).
struct CheckTask {
  size_t split;
  int side;
  std::string path;
};

// What decoding a file found.
struct Decoded {
  bool ok = false;
  int width = 0;
  int height = 0;
  std::string format;
  std::string error;
};

// Decodes every file once, in parallel.
std::vector<Decoded> decode_all(const std::vector<CheckTask>& tasks, const CheckOptions& options) {
  std::vector<Decoded> decoded(tasks.size());
  ReadOptions read = options.read;
  read.channels = 0;
  parallel_for(tasks.size(), options.threads, [&](size_t index) {
    const std::string& path = tasks[index].path;
    Decoded& result = decoded[index];
    try {
      const ImageInfo info = read_image_info(path);
      const Image image = read_image(path, read);
      result.width = image.width;
      result.height = image.height;
      result.format = fmt::format("{} {} {}-bit, {} channel{}", to_string(info.format), info.color,
                                  info.bit_depth, image.channels, image.channels == 1 ? "" : "s");
      result.ok = true;
    } catch (const std::exception& error) {
      result.error = reason_of(error, path);
    }
  });
  return decoded;
}

// Counts each decoded file into its split's summary, and the files that failed or have an odd
// width (aligned) as problems. Returns the results by path.
std::map<std::string, const Decoded*> summarise(const std::vector<CheckTask>& tasks,
                                                const std::vector<Decoded>& decoded, bool paired,
                                                DatasetCheck& check,
                                                std::vector<SplitScan>& scans) {
  std::map<std::string, const Decoded*> by_path;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const CheckTask& task = tasks[i];
    const Decoded& result = decoded[i];
    by_path[task.path] = &result;
    SplitCheck& split = check.splits[task.split];
    if (!result.ok) {
      scans[task.split].problems.push_back({task.path, result.error});
      continue;
    }
    ImageSummary& summary = split.images[size_t(task.side)];
    ++summary.files;
    ++summary.sizes[size_string(result.width, result.height)];
    ++summary.formats[result.format];
    if (!paired && result.width % 2 != 0) {
      scans[task.split].problems.push_back(
          {task.path, fmt::format("odd width {}: an aligned image holds A and B side by side, "
                                  "so its width must be even",
                                  result.width)});
    }
  }
  return by_path;
}

}  // namespace

DatasetCheck check_dataset(const CheckOptions& options) {
  const std::string& root = options.root;
  require_folder(root, "dataset folder");
  DatasetCheck check;
  check.root = root;
  check.layout = resolve_layout(root, options.layout);
  if (check.layout == DatasetLayout::kSingle) {
    throw Error("layout", "a check needs an aligned or a paired dataset");
  }
  const bool paired = check.layout == DatasetLayout::kPairedFolders;
  if (paired) require_paired_root(root);
  const std::vector<std::string> parents =
      paired ? std::vector<std::string>{join_path(root, "A"), join_path(root, "B")}
             : std::vector<std::string>{root};
  const std::vector<std::string> names = splits_to_check(root, parents, paired);

  // Pair every split, then decode every file once.
  std::vector<SplitScan> scans;
  std::vector<CheckTask> tasks;
  for (size_t i = 0; i < names.size(); ++i) {
    SplitCheck split;
    split.split = names[i];
    SplitScan scan;
    if (paired) {
      scan = scan_paired(join_path(parents[0], names[i]), join_path(parents[1], names[i]));
      split.images = {summary_of("A"), summary_of("B")};
    } else {
      scan = scan_single_folder(join_path(root, names[i]), true);
      split.images = {summary_of("A|B")};
    }
    split.pairs = scan.entries.size();
    split.ignored = scan.ignored;
    for (const auto& path : scan.files_a) tasks.push_back({i, 0, path});
    for (const auto& path : scan.files_b) tasks.push_back({i, 1, path});
    check.splits.push_back(std::move(split));
    scans.push_back(std::move(scan));
  }
  const std::vector<Decoded> decoded = decode_all(tasks, options);
  const auto by_path = summarise(tasks, decoded, paired, check, scans);

  // Pairs whose sides differ in size, and empty splits.
  for (size_t i = 0; i < names.size(); ++i) {
    SplitScan& scan = scans[i];
    if (paired) {
      for (const auto& entry : scan.entries) {
        const Decoded& a = *by_path.at(entry.path_a);
        const Decoded& b = *by_path.at(entry.path_b);
        if (a.ok && b.ok && (a.width != b.width || a.height != b.height)) {
          scan.problems.push_back(
              {entry.path_a, fmt::format("size {} differs from its partner {} ({})",
                                         size_string(a.width, a.height), entry.path_b,
                                         size_string(b.width, b.height))});
        }
      }
    }
    if (scan.files_a.empty() && scan.files_b.empty()) {
      scan.problems.push_back({paired ? join_path(parents[0], names[i]) : join_path(root, names[i]),
                               fmt::format("no images ({}) in this split{}", kImageExtensions,
                                           paired ? " (nor in B's)" : "")});
    }
    check.splits[i].problems = merge_problems(scan.problems);
  }
  return check;
}

CombinePlan plan_combine(const CombineOptions& options) {
  require_folder(options.folder_a, "folder");
  require_folder(options.folder_b, "folder");
  if (options.out.empty()) throw Error("out", "no output folder given");
  const bool flat_a = !list_folder(options.folder_a).images.empty();
  const bool flat_b = !list_folder(options.folder_b).images.empty();

  struct Group {
    std::string split, folder_a, folder_b, out;
  };
  std::vector<Group> groups;
  if (flat_a || flat_b) {
    if (flat_a != flat_b) {
      throw Error(flat_a ? options.folder_b : options.folder_a,
                  fmt::format("holds no images directly while {} does: give two flat folders, or "
                              "two folders with split sub-folders",
                              flat_a ? options.folder_a : options.folder_b));
    }
    if (options.splits.size() > 1) {
      throw Error("split", "flat input folders make one output folder: name at most one split");
    }
    const std::string name = options.splits.empty() ? "" : options.splits.front();
    groups.push_back({name, options.folder_a, options.folder_b,
                      name.empty() ? options.out : join_path(options.out, name)});
  } else {
    std::vector<std::string> names = options.splits;
    if (names.empty()) {
      names = list_splits(options.folder_a);
      for (auto& split : list_splits(options.folder_b)) names.push_back(std::move(split));
      order_splits(&names);
      if (names.empty()) {
        throw Error(options.folder_a,
                    fmt::format("no images ({}) in it, in {}, nor in their sub-folders",
                                kImageExtensions, options.folder_b));
      }
    } else {
      for (const auto& name : names) {
        require_split(join_path(options.folder_a, name), options.folder_a);
        require_split(join_path(options.folder_b, name), options.folder_b);
      }
    }
    for (const auto& name : names) {
      groups.push_back({name, join_path(options.folder_a, name), join_path(options.folder_b, name),
                        join_path(options.out, name)});
    }
  }

  CombinePlan plan;
  for (const auto& group : groups) {
    // Writing <stem>.png into an input folder could overwrite an input.
    std::error_code error;
    for (const auto& input : {group.folder_a, group.folder_b}) {
      if (fs::exists(group.out, error) && fs::equivalent(group.out, input, error)) {
        throw Error(group.out, "is an input folder: its images would be overwritten");
      }
    }
    SplitScan scan = scan_paired(group.folder_a, group.folder_b);
    if (scan.files_a.empty() && scan.files_b.empty()) {
      scan.problems.push_back({group.folder_a, fmt::format("no images ({}) in it nor in {}",
                                                           kImageExtensions, group.folder_b)});
    }
    for (const auto& entry : scan.entries) {
      plan.jobs.push_back({group.split, entry.name, entry.path_a, entry.path_b,
                           join_path(group.out, entry.name + ".png")});
    }
    plan.problems.insert(plan.problems.end(), scan.problems.begin(), scan.problems.end());
  }

  // Every header now, so that a size mismatch or an unreadable file stops the combine before
  // anything is written.
  std::vector<std::vector<DatasetProblem>> found(plan.jobs.size());
  parallel_for(plan.jobs.size(), options.threads, [&](size_t index) {
    const CombineJob& job = plan.jobs[index];
    ImageInfo info[2];
    bool ok = true;
    for (int side = 0; side < 2; ++side) {
      const std::string& path = side == 0 ? job.path_a : job.path_b;
      try {
        info[side] = read_image_info(path);
      } catch (const std::exception& error) {
        found[index].push_back({path, reason_of(error, path)});
        ok = false;
      }
    }
    const ImageInfo& info_a = info[0];
    const ImageInfo& info_b = info[1];
    if (ok && !options.resize && (info_a.width != info_b.width || info_a.height != info_b.height)) {
      found[index].push_back(
          {job.path_a, fmt::format("size {} differs from its partner {} ({}); "
                                   "`resize` resizes B to A's size",
                                   size_string(info_a.width, info_a.height), job.path_b,
                                   size_string(info_b.width, info_b.height))});
    }
  });
  for (auto& problems : found)
    plan.problems.insert(plan.problems.end(), problems.begin(), problems.end());
  plan.problems = merge_problems(plan.problems);
  return plan;
}

Image combine_pair(Image a, Image b, bool resize, const std::string& path_a,
                   const std::string& path_b) {
  if (a.type == SampleType::kFloat32) a = to_uint16(a);  // PNG holds 8 or 16 bits
  if (b.type == SampleType::kFloat32) b = to_uint16(b);
  if (a.type != b.type) {
    a = to_uint16(a);
    b = to_uint16(b);
  }
  if (b.channels != a.channels) b = detail::convert_channels(b, a.channels, path_b);
  if (b.width != a.width || b.height != a.height) {
    if (!resize) {
      throw Error(path_a, fmt::format("size {} differs from its partner {} ({})",
                                      size_string(a.width, a.height), path_b,
                                      size_string(b.width, b.height)));
    }
    b = resize_image(b, a.width, a.height, ResizeFilter::kBicubic);  // as Pillow, within 2 levels
  }
  return join_aligned(a, b, path_a);
}

size_t run_combine(const CombinePlan& plan, const CombineOptions& options,
                   const std::function<void(const CombineJob&)>& on_written) {
  if (!plan.problems.empty()) throw_first(plan.problems, "");
  std::set<std::string> folders;
  for (const auto& job : plan.jobs) folders.insert(fs::path(job.output).parent_path().string());
  for (const auto& folder : folders) {
    std::error_code error;
    if (!folder.empty()) fs::create_directories(folder, error);
    if (error) {
      throw Error(folder, "cannot create the output folder: " + error.message(),
                  ErrorKind::kRuntime);
    }
  }
  ReadOptions read = options.read;
  read.channels = 0;
  std::mutex mutex;
  parallel_for(plan.jobs.size(), options.threads, [&](size_t index) {
    const CombineJob& job = plan.jobs[index];
    const Image ab = combine_pair(read_image(job.path_a, read), read_image(job.path_b, read),
                                  options.resize, job.path_a, job.path_b);
    write_png(job.output, ab, options.png);
    if (on_written) {
      std::lock_guard<std::mutex> lock(mutex);
      on_written(job);
    }
  });
  return plan.jobs.size();
}

}  // namespace pix2pix
