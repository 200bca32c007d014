// The standard pix2pix datasets by name (`pix2pix data get`): downloaded from the authors'
// published location (or a mirror), resumed where a download stopped, unpacked beside the target
// and moved into place only when complete. The only code that fetches from the internet.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace pix2pix {

/// A dataset the authors publish as NAME.tar.gz.
struct KnownDataset {
  std::string name;       ///< facades, cityscapes, maps, edges2shoes, edges2handbags, night2day
  std::string a, b;       ///< what the A (left) and B (right) halves show
  std::string direction;  ///< the paper's usual task: AtoB or BtoA
};

/// The datasets `get_dataset` knows, in the reference's download script's order.
const std::vector<KnownDataset>& known_datasets();

/// Where the authors publish them: BASE/NAME.tar.gz.
inline constexpr const char* kDatasetsBaseUrl =
    "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets";

/// How get_dataset works.
struct GetDatasetOptions {
  std::string name;              ///< one of known_datasets()
  std::string out = "datasets";  ///< the dataset lands in OUT/NAME
  std::string url;               ///< the archive's URL; empty: kDatasetsBaseUrl/NAME.tar.gz
  /// Called as bytes arrive: (bytes so far, total or -1 when the server does not say).
  std::function<void(int64_t, int64_t)> progress;
};

/// What get_dataset did.
struct GetDatasetResult {
  std::string folder;        ///< OUT/NAME, unpacked
  std::string archive;       ///< OUT/NAME.tar.gz, kept (delete it to save space)
  int64_t bytes = 0;         ///< the archive's size
  int64_t resumed_from = 0;  ///< bytes of an earlier partial download reused (0: none)
  KnownDataset dataset;
};

/// Downloads (into OUT/NAME.tar.gz.part, resumed with an HTTP Range request when a part is
/// there), checks the size against the server's, renames it to OUT/NAME.tar.gz, unpacks it with
/// libarchive into OUT/.NAME.unpacking and renames the dataset folder to OUT/NAME. A finished
/// archive already in OUT is used without downloading. Throws pix2pix::Error naming the URL or
/// file: unknown name, HTTP errors (404...), an interrupted download (the part is kept: the same
/// call resumes it), a size mismatch, a damaged archive (removed, with nothing left unpacked),
/// OUT/NAME already there.
GetDatasetResult get_dataset(const GetDatasetOptions& options);

}  // namespace pix2pix
