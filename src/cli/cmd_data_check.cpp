// `pix2pix data check DIR`: pairs and decodes every file of every split and prints counts, image
// sizes, formats and one line per bad file. Exit status 0 when clean, 1 when any file is bad
// (findings, not usage errors), 2 for bad usage (e.g. DIR missing).
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "pix2pix/data/dataset.h"
#include "pix2pix/error.h"
#include "pix2pix/names.h"

namespace pix2pix::cli {

namespace {

struct CheckFlags {
  std::string root;
  std::string direction = "AtoB";
  std::string layout = "auto";
  bool json = false;
};

// "512x256 (400), 600x400 (2)": most frequent first.
std::string counts_text(const std::map<std::string, size_t>& counts) {
  std::vector<std::pair<std::string, size_t>> sorted(counts.begin(), counts.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& x, const auto& y) { return x.second > y.second; });
  std::string text;
  for (const auto& [key, count] : sorted)
    text += fmt::format("{}{} ({})", text.empty() ? "" : ", ", key, count);
  return text.empty() ? "none readable" : text;
}

std::string layout_text(DatasetLayout layout, Direction direction) {
  const bool a_to_b = direction == Direction::kAtoB;
  if (layout == DatasetLayout::kPairedFolders) {
    return fmt::format(
        "paired folders A/<split>, B/<split> matched by stem; {}: input {}, target {}",
        to_string(direction), a_to_b ? "A" : "B", a_to_b ? "B" : "A");
  }
  return fmt::format("aligned A|B images; {}: input = {} half, target = {} half",
                     to_string(direction), a_to_b ? "left (A)" : "right (B)",
                     a_to_b ? "right (B)" : "left (A)");
}

std::string ignored_text(const std::vector<std::string>& ignored) {
  std::vector<std::string> names;
  for (size_t i = 0; i < ignored.size() && i < 5; ++i) names.push_back(ignored[i]);
  std::string text;
  for (const auto& name : names) text += (text.empty() ? "" : ", ") + name;
  if (ignored.size() > names.size()) text += fmt::format(", ... ({} more)", ignored.size() - 5);
  return text;
}

void print_text(const DatasetCheck& check, Direction direction, double seconds) {
  fmt::print("{}: {}\n", check.root, layout_text(check.layout, direction));
  size_t pairs = 0;
  for (const auto& split : check.splits) {
    pairs += split.pairs;
    fmt::print("{}: {} pair{}{}\n", split.split, split.pairs, split.pairs == 1 ? "" : "s",
               split.problems.empty() ? "" : fmt::format(", {} bad", split.problems.size()));
    for (const auto& images : split.images) {
      const std::string side = images.side == "A|B" ? "" : images.side + " ";
      fmt::print("  {}sizes: {}\n", side, counts_text(images.sizes));
      fmt::print("  {}formats: {}\n", side, counts_text(images.formats));
    }
    if (!split.ignored.empty()) {
      fmt::print("  ignored {} file{} without an image extension: {}\n", split.ignored.size(),
                 split.ignored.size() == 1 ? "" : "s", ignored_text(split.ignored));
    }
    for (const auto& problem : split.problems)
      fmt::print("  bad: {}: {}\n", problem.path, problem.reason);
  }
  const size_t problems = check.problem_count();
  fmt::print("{} pairs in {} split{}: {} ({:.1f} s)\n", pairs, check.splits.size(),
             check.splits.size() == 1 ? "" : "s",
             problems == 0 ? std::string("no problems")
                           : fmt::format("{} bad file{}", problems, problems == 1 ? "" : "s"),
             seconds);
}

void print_json(const DatasetCheck& check, Direction direction, double seconds) {
  nlohmann::json splits = nlohmann::json::array();
  for (const auto& split : check.splits) {
    nlohmann::json images = nlohmann::json::array();
    for (const auto& summary : split.images) {
      images.push_back({{"side", summary.side},
                        {"files", summary.files},
                        {"sizes", summary.sizes},
                        {"formats", summary.formats}});
    }
    nlohmann::json problems = nlohmann::json::array();
    for (const auto& problem : split.problems)
      problems.push_back({{"path", problem.path}, {"reason", problem.reason}});
    splits.push_back({{"split", split.split},
                      {"pairs", split.pairs},
                      {"images", images},
                      {"problems", problems},
                      {"ignored", split.ignored}});
  }
  const nlohmann::json out = {{"root", check.root},
                              {"layout", to_string(check.layout)},
                              {"direction", to_string(direction)},
                              {"clean", check.problem_count() == 0},
                              {"problem_count", check.problem_count()},
                              {"seconds", seconds},
                              {"splits", splits}};
  fmt::print("{}\n", out.dump(2));
}

int run_check(const CheckFlags& flags) {
  CheckOptions options;
  options.root = flags.root;
  options.layout = parse_layout(flags.layout);
  const Direction direction = parse_direction(flags.direction);
  const auto start = std::chrono::steady_clock::now();
  const DatasetCheck check = check_dataset(options);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (flags.json) {
    print_json(check, direction, seconds);
  } else {
    print_text(check, direction, seconds);
  }
  return check.problem_count() == 0 ? 0 : 1;
}

}  // namespace

Command add_data_check_command(CLI::App& data) {
  auto flags = std::make_shared<CheckFlags>();
  // Not "single": data check checks pairs, and single-image folders hold inputs only.
  std::vector<std::string> layouts = names<DatasetLayout>();
  layouts.erase(std::find(layouts.begin(), layouts.end(), to_string(DatasetLayout::kSingle)));
  CLI::App* app = data.add_subcommand(
      "check",
      "Check a dataset: pairs, sizes and formats per split, one line per bad file "
      "(exit 0: clean, 1: bad files, 2: bad usage)");
  app->add_option("dir", flags->root, "dataset folder (DIR/<split>/ or DIR/A/<split>/ + DIR/B/)")
      ->required();
  app->add_option("--direction", flags->direction, "AtoB or BtoA: which side is the input")
      ->check(CLI::IsMember(names<Direction>()))
      ->capture_default_str();
  app->add_option("--layout", flags->layout,
                  "auto (paired when DIR/A and DIR/B exist), aligned (A|B in one image) or "
                  "paired (DIR/A/<split>, DIR/B/<split> matched by stem)")
      ->check(CLI::IsMember(layouts))
      ->capture_default_str();
  app->add_flag("--json", flags->json, "print the findings as JSON");
  return {app, [flags] { return run_check(*flags); }};
}

}  // namespace pix2pix::cli
