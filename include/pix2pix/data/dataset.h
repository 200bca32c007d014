// Paired datasets on disk: the layouts pix2pix users have. A dataset is a list of entries (file
// paths, found and validated up front) and a thread-safe load(i) that decodes one entry into an
// (input, target) pair of Images with the direction applied. Transforms and batching live in
// transforms.h and loader.h. To add a layout: extend DatasetLayout, the scan in dataset.cpp, and
// load(), and check_dataset() for `pix2pix data check`.
//
// Also here: splitting / joining aligned A|B images, checking a whole dataset without stopping at
// the first bad file (`data check`), and combining A/ and B/ folders into aligned images
// (`data combine`). None of it needs torch.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "pix2pix/io/image_io.h"
#include "pix2pix/names.h"

namespace pix2pix {

/// Which half is the network's input (the reference's --direction).
enum class Direction {
  kAtoB,  ///< input A, target B
  kBtoA,  ///< input B, target A (facades: photo|label, so BtoA maps labels to photos)
};
/// The directions' names (names.h).
template <>
const std::vector<std::string>& names<Direction>();

/// "AtoB" | "BtoA"; throws pix2pix::Error otherwise.
Direction parse_direction(const std::string& name);
std::string to_string(Direction direction);

/// How the images are laid out under the dataset root.
enum class DatasetLayout {
  kAuto,           ///< kPairedFolders if <root>/A and <root>/B exist, else kAligned
  kAligned,        ///< <root>/<split>/*: each image is A (left half) | B (right half)
  kPairedFolders,  ///< <root>/A/<split>/* and <root>/B/<split>/*, matched by file stem
  kSingle,         ///< <root>/* or <root>/<split>/*: inputs only (translation); target left empty
};
/// The layouts' names (names.h).
template <>
const std::vector<std::string>& names<DatasetLayout>();

/// "auto" | "aligned" | "paired" | "single".
std::string to_string(DatasetLayout layout);
/// The inverse of to_string(DatasetLayout); throws pix2pix::Error otherwise.
DatasetLayout parse_layout(const std::string& name);

/// Where and how to read a dataset. Defaults are the reference's.
struct DatasetOptions {
  std::string root;             ///< dataset folder
  std::string split = "train";  ///< sub-folder: train, val, test
  Direction direction = Direction::kAtoB;
  DatasetLayout layout = DatasetLayout::kAuto;
  int input_nc = 3;   ///< channels the input image is converted to (1..N)
  int output_nc = 3;  ///< channels the target image is converted to
  ReadOptions read;   ///< decoder limits (channels is overridden by input_nc / output_nc)
};

/// One pair's files. For aligned datasets path_a == path_b (one image holds both halves).
struct DatasetEntry {
  std::string name;    ///< file stem, unique within the split
  std::string path_a;  ///< the file holding A
  std::string path_b;  ///< the file holding B (empty for kSingle)
};

/// One decoded pair, direction applied.
struct Sample {
  std::string name;  ///< the entry's name
  Image input;       ///< what the generator sees (real_A in the reference's naming)
  Image target;      ///< what it should produce (real_B); empty for kSingle
};

/// A scanned dataset split. Construction lists and pairs the files (sorted by name) and throws
/// pix2pix::Error naming the folder or file when the split is missing or empty, a file has no
/// partner, or a stem occurs twice. Image files: .png .jpg .jpeg .tif .tiff (any case).
class Dataset {
 public:
  explicit Dataset(DatasetOptions options);

  size_t size() const { return entries_.size(); }
  const DatasetEntry& entry(size_t index) const { return entries_.at(index); }
  const std::vector<DatasetEntry>& entries() const { return entries_; }
  const DatasetOptions& options() const { return options_; }
  /// The layout actually used (kAuto resolved).
  DatasetLayout layout() const { return layout_; }

  /// Decodes entry `index`. Thread-safe. Throws pix2pix::Error naming the file for bad images,
  /// odd-width aligned images, and A/B pairs of different sizes.
  Sample load(size_t index) const;

  /// What load(index) would fail on that the files' headers show, without decoding pixels: an
  /// unreadable or corrupt header, more than options().read.max_pixels pixels, an odd-width
  /// aligned image, A and B of different sizes. Returns the size of one side (input and target
  /// have one size) as {width, height}; throws pix2pix::Error naming the file. Fast (reads a few
  /// bytes per file): for scanning a whole split before training. Thread-safe.
  std::pair<int, int> probe(size_t index) const;

  /// A copy of this dataset without the entries at `indices` (positions in entries(); out of
  /// range or repeated positions are ignored). The order of the others is kept.
  Dataset without(const std::vector<size_t>& indices) const;

 private:
  DatasetOptions options_;
  DatasetLayout layout_;
  std::vector<DatasetEntry> entries_;
};

/// The image files directly inside `folder`, sorted by name (no recursion). Throws
/// pix2pix::Error naming the folder when it does not exist or cannot be read.
std::vector<std::string> list_images(const std::string& folder);

/// The sub-folders of `folder` that directly hold at least one image file, sorted by name.
std::vector<std::string> list_splits(const std::string& folder);

/// Splits an aligned image into A = columns [0, w/2) and B = [w/2, w), as the reference does.
/// Throws pix2pix::Error("<subject>: odd width ...") when the width is odd.
std::pair<Image, Image> split_aligned(const Image& ab, const std::string& subject);

/// A | B side by side: the inverse of split_aligned. A and B must have the same size, channels
/// and sample type (throws pix2pix::Error naming `subject` otherwise).
Image join_aligned(const Image& a, const Image& b, const std::string& subject = "image");

/// A file that a check found wrong, and why.
struct DatasetProblem {
  std::string path;    ///< the file (or folder)
  std::string reason;  ///< what is wrong, one line; several reasons for one file joined by "; "
};

/// What the decodable files of one side of a split hold.
struct ImageSummary {
  std::string side;                       ///< "A|B" (aligned images), "A" or "B" (paired folders)
  size_t files = 0;                       ///< files that decoded
  std::map<std::string, size_t> sizes;    ///< "512x256" -> number of files
  std::map<std::string, size_t> formats;  ///< "JPEG rgb 8-bit, 3 channels" -> number of files
};

/// The findings for one split.
struct SplitCheck {
  std::string split;                     ///< train, val, test or another sub-folder's name
  size_t pairs = 0;                      ///< aligned images, or A/B files matched by stem
  std::vector<ImageSummary> images;      ///< one per side
  std::vector<DatasetProblem> problems;  ///< one per bad file (or folder), sorted by path
  std::vector<std::string> ignored;      ///< files without an image extension (not problems)
};

/// The findings for a whole dataset.
struct DatasetCheck {
  std::string root;                                ///< the dataset folder
  DatasetLayout layout = DatasetLayout::kAligned;  ///< resolved (never kAuto)
  std::vector<SplitCheck> splits;  ///< train, val, test first, then the others by name
  /// Problems over all splits (0: clean).
  size_t problem_count() const;
};

/// How check_dataset works.
struct CheckOptions {
  std::string root;                             ///< dataset folder
  DatasetLayout layout = DatasetLayout::kAuto;  ///< kAuto, kAligned or kPairedFolders
  int threads = 0;                              ///< decoding threads; 0: all cores
  ReadOptions read;                             ///< decoder limits
};

/// Checks every split present (train, val, test, and any other sub-folder holding images): pairs
/// the files as Dataset does and decodes every file fully, collecting each problem (unreadable
/// or truncated file, odd-width aligned image, unmatched file, duplicate stem, A/B size
/// mismatch, empty split) instead of stopping at the first. Throws pix2pix::Error only when
/// there is nothing to check: a missing root, no split folders, or a layout it cannot check.
DatasetCheck check_dataset(const CheckOptions& options);

/// How plan_combine / run_combine build aligned A|B images from two folders.
struct CombineOptions {
  std::string folder_a;  ///< A/<split>/* or, flat, A/*
  std::string folder_b;  ///< B/<split>/* or, flat, B/*
  std::string out;       ///< writes out/<split>/<stem>.png (flat inputs: out/<stem>.png)
  /// Splits to combine; empty: every sub-folder holding images. With flat inputs at most one
  /// name, which then becomes the output sub-folder (out/<name>/<stem>.png).
  std::vector<std::string> splits;
  /// Resize B to A's size (transforms.h resize_image, bicubic: within 2 levels of Pillow) instead
  /// of refusing pairs of different sizes.
  bool resize = false;
  int threads = 0;      ///< decoding / encoding threads; 0: all cores
  ReadOptions read;     ///< decoder limits (channels is ignored)
  PngWriteOptions png;  ///< output encoding
};

/// One output image of a combine.
struct CombineJob {
  std::string split;   ///< output split ("" for flat inputs without a name)
  std::string name;    ///< the common stem
  std::string path_a;  ///< A's file
  std::string path_b;  ///< B's file
  std::string output;  ///< <out>[/<split>]/<name>.png
};

/// What combine would do, found before anything is written.
struct CombinePlan {
  std::vector<CombineJob> jobs;  ///< by split (train, val, test, others), then A's file name
  std::vector<DatasetProblem> problems;  ///< unmatched files, duplicate stems, unreadable
                                         ///< headers, size mismatches (without resize)
};

/// Lists and pairs the files of a combine and reads every header. Per-file problems are
/// collected in the plan; throws pix2pix::Error for missing folders, a missing requested split,
/// or folders without images.
CombinePlan plan_combine(const CombineOptions& options);

/// Writes every job of a plan that has no problems (throws pix2pix::Error otherwise): A | B with
/// B converted to A's channel count, both in the deeper of the two sample types (8-bit scaled
/// by 257 to 16-bit; float becomes 16-bit), B resized to A's size when options.resize.
/// `on_written` (optional) is called after each image, from worker threads, serialised.
/// Returns the number of images written.
size_t run_combine(const CombinePlan& plan, const CombineOptions& options,
                   const std::function<void(const CombineJob&)>& on_written = {});

/// A decoded A and B made into one aligned image as run_combine does (see there).
Image combine_pair(Image a, Image b, bool resize, const std::string& path_a,
                   const std::string& path_b);

}  // namespace pix2pix
