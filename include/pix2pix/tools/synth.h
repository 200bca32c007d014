// The built-in synthetic paired dataset (`pix2pix data synth`): procedurally generated facade
// layouts drawn twice, once as a label map in the CMP facades colours (A) and once as a rendered
// "photo" of the same layout (B), so that A -> B is a learnable translation with structure.
// Plain C++ (no torch), fast enough to write hundreds of pairs in seconds.
//
// Every pair is rendered from one 64-bit seed with a generator of our own (no std distributions),
// so a dataset seed gives byte-identical files on every machine and for any thread count. To add
// a class: append it to SynthClass before kCount, give it a colour in synth_palette(), place it
// in the layout and give it a shader in src/tools/synth.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "pix2pix/io/image_io.h"

namespace pix2pix {

/// The classes a synthetic label map uses: a subset of the CMP facade database's labels, with
/// its colours (the facades dataset's label images).
enum class SynthClass : uint8_t {
  kBackground,  ///< sky, neighbouring buildings, street
  kWall,        ///< the facade itself (CMP "facade")
  kWindow,
  kDoor,
  kCornice,  ///< roof cornice and string courses between floors
  kSill,     ///< window sills
  kBalcony,
  kBlind,   ///< shutters and roller blinds
  kDeco,    ///< lintels / ornaments above windows
  kPillar,  ///< pilasters between window columns
  kShop,    ///< shop fronts on the ground floor
  kCount,
};

/// Number of classes in SynthClass.
constexpr int kSynthClassCount = static_cast<int>(SynthClass::kCount);

/// An 8-bit RGB colour.
struct SynthColor {
  uint8_t r = 0;
  uint8_t g = 0;
  uint8_t b = 0;
};

/// The label colour of each SynthClass (index = class value), as in the facades dataset.
const std::array<SynthColor, kSynthClassCount>& synth_palette();

/// "background", "wall", "window", ...
const char* to_string(SynthClass label);

/// One rendered pair: the same layout as a label map and as a photo.
struct SynthPair {
  Image label;  ///< size x size RGB, flat palette colours only (A)
  Image photo;  ///< size x size RGB rendering of the layout (B)
  /// size * size SynthClass values, row-major: the class of each label pixel.
  std::vector<uint8_t> classes;
};

/// Smallest and largest image side render_synth_pair accepts.
constexpr int kSynthMinSize = 64;
constexpr int kSynthMaxSize = 8192;

/// Renders one pair of size x size images from `seed` (any value; the same seed gives the same
/// pair). Layout scales with size, so one seed looks alike at 64 and 512. Throws pix2pix::Error
/// for a size outside [kSynthMinSize, kSynthMaxSize].
SynthPair render_synth_pair(uint64_t seed, int size);

/// The seed of pair `index` of `split` in a dataset made with `dataset_seed`: a hash of the three,
/// so every pair is independent of the others and of the order they are rendered in.
uint64_t synth_pair_seed(uint64_t dataset_seed, const std::string& split, int index);

/// The aligned image of a pair: label (A) on the left, photo (B) on the right, so the default
/// direction AtoB maps labels to photos. Width 2 * size, height size.
Image synth_aligned_image(const SynthPair& pair);

/// What write_synth_dataset writes.
struct SynthOptions {
  int train = 400;    ///< pairs in <out>/train
  int val = 100;      ///< pairs in <out>/val
  int test = 100;     ///< pairs in <out>/test
  int size = 256;     ///< side of each half; files are (2 * size) x size
  uint64_t seed = 0;  ///< dataset seed; the same seed gives byte-identical files
  /// Write into split folders that already hold files: removes their <number>.png files first
  /// (leftovers of an earlier, larger dataset) and leaves other files alone.
  bool force = false;
  int threads = 0;  ///< worker threads; 0: one per core. Does not change the output.
  /// zlib level for the PNGs: 1 is ~4x faster to write than 6 for ~11% larger files.
  int compression_level = 1;
};

/// Progress of write_synth_dataset, reported after every written pair.
struct SynthProgress {
  std::string split;     ///< "train", "val" or "test"
  int done = 0;          ///< pairs of this split written so far
  int total = 0;         ///< pairs this split will hold
  double seconds = 0.0;  ///< since this split started
};

/// Called after each written pair, never concurrently, with `done` increasing by one per call.
using SynthProgressCallback = std::function<void(const SynthProgress&)>;

/// What one split of a written dataset holds.
struct SynthSplitSummary {
  std::string split;     ///< "train", "val" or "test"
  std::string folder;    ///< <out>/<split>
  int count = 0;         ///< pairs written (0: split skipped, no folder made)
  uint64_t bytes = 0;    ///< total size of its files
  double seconds = 0.0;  ///< time spent on it
};

/// What write_synth_dataset wrote.
struct SynthSummary {
  std::vector<SynthSplitSummary> splits;  ///< train, val, test, in that order
  double seconds = 0.0;                   ///< total time
};

/// Writes the dataset: <out>/{train,val,test}/<i>.png for i = 1..count, each the aligned image
/// of render_synth_pair(synth_pair_seed(seed, split, i), size). Splits with count 0 are skipped.
/// Every split folder is checked before anything is written: one that exists and is not empty is
/// refused unless options.force. Throws pix2pix::Error naming the path: ErrorKind::kInput for bad
/// options or a folder in the way, ErrorKind::kRuntime when creating or writing files fails.
SynthSummary write_synth_dataset(const std::string& out, const SynthOptions& options,
                                 const SynthProgressCallback& progress = {});

}  // namespace pix2pix
