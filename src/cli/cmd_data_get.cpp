// `pix2pix data get NAME`: one of the authors' datasets, downloaded (resumable), unpacked,
// checked, and the command that trains on it. The work is in tools/download.h.
#include <fmt/core.h>
#include <unistd.h>

#include <chrono>

#include "commands.h"
#include "pix2pix/data/dataset.h"
#include "pix2pix/tools/download.h"

namespace pix2pix::cli {

namespace {

// Progress on stderr: a live line on a terminal, one line per 10% otherwise.
std::function<void(int64_t, int64_t)> progress_printer() {
  const bool live = isatty(fileno(stderr)) != 0;
  auto last_tenth = std::make_shared<int64_t>(-1);
  return [live, last_tenth](int64_t bytes, int64_t total) {
    const double mb = bytes / 1e6;
    if (total <= 0) {
      if (live) fmt::print(stderr, "\r{:.1f} MB", mb);
      return;
    }
    const int64_t tenth = bytes * 10 / total;
    if (live) {
      fmt::print(stderr, "\r{:.1f} / {:.1f} MB ({}%)", mb, total / 1e6, bytes * 100 / total);
      if (bytes == total) fmt::print(stderr, "\n");
    } else if (tenth != *last_tenth) {
      *last_tenth = tenth;
      fmt::print(stderr, "{:.1f} / {:.1f} MB\n", mb, total / 1e6);
    }
  };
}

int run_get(const GetDatasetOptions& flags) {
  GetDatasetOptions options = flags;
  options.progress = progress_printer();
  const GetDatasetResult got = get_dataset(options);
  if (got.resumed_from > 0)
    fmt::print("resumed a partial download at {} bytes\n", got.resumed_from);
  fmt::print("{}: {:.1f} MB archive, unpacked into {}\n", got.archive, got.bytes / 1e6, got.folder);
  CheckOptions check_options;
  check_options.root = got.folder;
  const DatasetCheck check = check_dataset(check_options);
  for (const SplitCheck& split : check.splits)
    fmt::print("  {}: {} pairs{}\n", split.split, split.pairs,
               split.problems.empty() ? "" : fmt::format(", {} bad", split.problems.size()));
  const KnownDataset& d = got.dataset;
  fmt::print("A (left) is the {}, B (right) the {}; the usual task is {} ({} -> {}):\n", d.a, d.b,
             d.direction, d.direction == "AtoB" ? d.a : d.b, d.direction == "AtoB" ? d.b : d.a);
  fmt::print("  pix2pix train --data {} --name {} --direction {}\n", got.folder, d.name,
             d.direction);
  if (check.problem_count() > 0)
    fmt::print("{} bad files: `pix2pix data check {}` lists them\n", check.problem_count(),
               got.folder);
  return check.problem_count() == 0 ? 0 : 1;
}

}  // namespace

Command add_data_get_command(CLI::App& data) {
  auto flags = std::make_shared<GetDatasetOptions>();
  std::string names;
  for (const KnownDataset& dataset : known_datasets())
    names += (names.empty() ? "" : ", ") + dataset.name;
  CLI::App* app = data.add_subcommand(
      "get",
      "Download one of the authors' pix2pix datasets, unpack and check it (a stopped download "
      "resumes; exit 0: clean, 1: bad files or a failed download, 2: bad name, URL or archive)");
  app->add_option("name", flags->name, names)->required();
  app->add_option("--out", flags->out, "the dataset lands in OUT/NAME")->capture_default_str();
  app->add_option("--url", flags->url,
                  std::string("the archive's URL, e.g. a mirror (default: ") + kDatasetsBaseUrl +
                      "/NAME.tar.gz)");
  return {app, [flags] { return run_get(*flags); }};
}

}  // namespace pix2pix::cli
