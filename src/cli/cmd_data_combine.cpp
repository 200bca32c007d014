// `pix2pix data combine --a A --b B --out AB`: pairs A/<split>/* with B/<split>/* (or flat A/*
// with B/*) by file stem and writes aligned A|B PNGs to AB/<split>/<stem>.png. Every problem
// (unmatched file, duplicate stem, unreadable header, size mismatch without --resize) is listed
// before anything is written; then the exit status is 2 and nothing is written.
#include <fmt/core.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>

#include "commands.h"
#include "messages.h"
#include "pix2pix/data/dataset.h"
#include "pix2pix/error.h"

namespace pix2pix::cli {

namespace {

int run_combine_command(const CombineOptions& options, const CLI::App& app) {
  const auto start = std::chrono::steady_clock::now();
  const CombinePlan plan = plan_combine(options);
  if (!plan.problems.empty()) {
    for (const auto& problem : plan.problems)
      fmt::print(stderr, "error: {}: {}\n", problem.path, with_flags(problem.reason, app));
    fmt::print(stderr, "error: {}: {} problem{} found, nothing written\n", options.out,
               plan.problems.size(), plan.problems.size() == 1 ? "" : "s");
    return 2;
  }
  std::map<std::string, std::pair<size_t, std::string>> per_split;  // split -> (pairs, folder)
  for (const auto& job : plan.jobs) {
    auto& [pairs, folder] = per_split[job.split];
    ++pairs;
    folder = std::filesystem::path(job.output).parent_path().string();
  }
  for (const auto& [split, info] : per_split) {
    fmt::print("{}: {} pair{} -> {}\n", split.empty() ? "(flat)" : split, info.first,
               info.first == 1 ? "" : "s", info.second);
  }
  std::fflush(stdout);
  const size_t written = run_combine(plan, options);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fmt::print("wrote {} image{} to {} ({:.1f} s)\n", written, written == 1 ? "" : "s", options.out,
             seconds);
  return 0;
}

}  // namespace

Command add_data_combine_command(CLI::App& data) {
  auto options = std::make_shared<CombineOptions>();
  CLI::App* app = data.add_subcommand(
      "combine",
      "Combine A/ and B/ folders into aligned A|B PNGs: OUT/<split>/<stem>.png, pairs matched by "
      "file stem");
  app->add_option("--a", options->folder_a, "folder of A images: A/<split>/* or flat A/*")
      ->required();
  app->add_option("--b", options->folder_b, "folder of B images: B/<split>/* or flat B/*")
      ->required();
  app->add_option("--out", options->out, "output folder (created if missing)")->required();
  app->add_flag("--resize", options->resize,
                "resize B to A's size (bicubic with antialiasing, as Pillow's BICUBIC) instead of "
                "refusing pairs of different sizes");
  app->add_option("--split", options->splits,
                  "splits to combine (default: every sub-folder holding images); with flat "
                  "folders, one name: the output sub-folder");
  return {app, [options, app] { return run_combine_command(*options, *app); }};
}

}  // namespace pix2pix::cli
