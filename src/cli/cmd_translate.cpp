// `pix2pix translate`: runs a generator on image files of any size and writes one PNG per input:
// OUT/<stem>.png for a file (given or listed on stdin with `-`), OUT/<path below the folder>.png
// for every image in a folder (recursively). The weights come from a run directory, one of its
// checkpoints or a PyTorch state_dict. Every input is checked (readable header, a size and tiling
// the network takes, distinct output names) before any output is written.
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>

#include "commands.h"
#include "network_flags.h"
#include "pix2pix/data/dataset.h"
#include "pix2pix/data/transforms.h"
#include "pix2pix/error.h"
#include "pix2pix/infer/translator.h"
#include "pix2pix/io/pytorch_import.h"
#include "pix2pix/names.h"

namespace pix2pix::cli {

namespace {

namespace fs = std::filesystem;

struct TranslateFlags {
  GeneratorFlags generator;
  ComputeFlags compute;
  std::string weights;
  std::string epoch;  // with a run directory: latest (default), best or N
  std::string out;
  std::vector<std::string> inputs;
  bool eval_mode = false;
  bool train_mode = false;
  bool aligned = false;   // inputs are A|B pairs: translate the input half
  std::string direction;  // AtoB or BtoA; empty: the run's, else AtoB
  int64_t tile = 0;
  int64_t overlap = -1;
  int64_t max_pixels = TranslateOptions{}.max_pixels;
};

struct Job {
  std::string input;
  std::string output;
};

bool has_image_extension(const fs::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return extension == ".png" || extension == ".jpg" || extension == ".jpeg" ||
         extension == ".tif" || extension == ".tiff";
}

// Expands the command line's inputs: files as they are, folders into their images (recursively,
// sorted), `-` into the paths listed on stdin (one per line; folders allowed there too).
std::vector<Job> collect_jobs(const std::vector<std::string>& inputs, const std::string& out) {
  std::vector<Job> jobs;
  bool read_stdin = false;
  std::function<void(const std::string&)> add = [&](const std::string& input) {
    if (input == "-") {
      if (read_stdin) throw Error("-", "stdin can be listed only once");
      read_stdin = true;
      std::string line;
      while (std::getline(std::cin, line)) {
        while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back())))
          line.pop_back();
        if (!line.empty()) add(line == "-" ? "./-" : line);
      }
      return;
    }
    std::error_code error;
    if (fs::is_directory(input, error)) {
      std::vector<fs::path> found;
      fs::recursive_directory_iterator it(input, fs::directory_options::skip_permission_denied,
                                          error);
      for (; !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
        std::error_code type_error;
        if (it->is_regular_file(type_error) && has_image_extension(it->path()))
          found.push_back(it->path());
      }
      if (error) throw Error(input, "cannot list the folder: " + error.message());
      if (found.empty()) throw Error(input, "no images (PNG, JPEG, TIFF) in the folder or below");
      std::sort(found.begin(), found.end());
      for (const auto& path : found) {
        fs::path relative = path.lexically_relative(input);
        relative.replace_extension(".png");
        jobs.push_back({path.string(), (fs::path(out) / relative).string()});
      }
      return;
    }
    if (!fs::exists(input, error)) throw Error(input, "no such file or folder");
    jobs.push_back({input, (fs::path(out) / fs::path(input).stem()).string() + ".png"});
  };
  for (const auto& input : inputs) add(input);
  if (jobs.empty()) throw Error("-", "no input paths on stdin");
  return jobs;
}

std::string describe(const TranslatePlan& plan) {
  std::string text = fmt::format("{}x{}", plan.width, plan.height);
  if (plan.padded_width != plan.width || plan.padded_height != plan.height)
    text += fmt::format(", padded to {}x{}", plan.padded_width, plan.padded_height);
  if (plan.tile > 0)
    text += fmt::format(", {}x{} tiles of {} overlapping {}{}", plan.tiles_x, plan.tiles_y,
                        plan.tile, plan.overlap, plan.automatic_tile ? " (automatic)" : "");
  return text;
}

int run_translate(const TranslateFlags& flags, const CLI::App& app) {
  const LoadedGenerator loaded = load_generator(flags.weights, flags.epoch, flags.generator, app);
  const GeneratorSource& source = loaded.source;
  const GeneratorOptions& options = loaded.options;
  const std::shared_ptr<Generator>& generator = loaded.generator;
  const Direction direction = !flags.direction.empty() ? parse_direction(flags.direction)
                              : source.has_direction   ? source.direction
                                                       : Direction::kAtoB;
  flags.compute.apply_to(*generator);
  TranslateOptions translate_options;
  translate_options.train_mode = flags.train_mode;
  translate_options.tile = flags.tile;
  translate_options.overlap = flags.overlap;
  translate_options.max_pixels = flags.max_pixels;
  Translator translator(generator, translate_options);

  // Check every input and every output name before writing anything.
  const std::vector<Job> jobs = collect_jobs(flags.inputs, flags.out);
  std::map<std::string, std::string> input_of;  // output path -> input path
  std::vector<TranslatePlan> plans;
  for (const auto& job : jobs) {
    const ImageInfo info = read_image_info(job.input);
    if (flags.aligned && info.width % 2 != 0)
      throw Error(job.input,
                  "odd width " + std::to_string(info.width) + ": not an aligned A|B pair");
    plans.push_back(
        translator.plan(flags.aligned ? info.width / 2 : info.width, info.height, job.input));
    auto [it, inserted] = input_of.emplace(job.output, job.input);
    if (!inserted)
      throw Error(job.input, "would overwrite the output of " + it->second + " (" + job.output +
                                 "): inputs must have distinct names");
  }

  fmt::print("weights: {}{}\n", source.weights,
             source.options_file.empty() ? "" : " (architecture from " + source.options_file + ")");
  fmt::print("mode: {}\n", flags.train_mode ? "train (batch statistics, dropout on, as the paper)"
                                            : "eval (running statistics, no dropout)");
  const bool any_tiled = std::any_of(plans.begin(), plans.end(),
                                     [](const TranslatePlan& plan) { return plan.tile > 0; });
  if (any_tiled && options.norm == Norm::kInstance)
    fmt::print(
        "warning: instance norm normalises every tile by its own statistics, so tiles can differ "
        "in tone; --max-pixels 0 translates whole images if memory allows\n");
  if (std::any_of(plans.begin(), plans.end(),
                  [](const TranslatePlan& plan) { return plan.over_budget_in_train_mode; }))
    fmt::print(
        "note: some images exceed --max-pixels {}, but train mode translates whole images (tiles "
        "would each get their own batch statistics)\n",
        flags.max_pixels);

  const bool terminal = isatty(STDOUT_FILENO) != 0;
  int failed = 0;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const Job& job = jobs[i];
    try {
      ReadOptions read_options;
      read_options.channels = static_cast<int>(options.input_nc);
      Image image = read_image(job.input, read_options);
      if (flags.aligned) {
        auto [a, b] = split_aligned(image, job.input);
        image = direction == Direction::kAtoB ? std::move(a) : std::move(b);
      }
      const auto start = std::chrono::steady_clock::now();
      const Image result = tensor_to_image(translator.translate_tensor(
          image_to_tensor(image), job.input, [&](int64_t done, int64_t total) {
            if (!terminal) return;
            fmt::print("\r{}: tile {}/{}", job.input, done, total);
            std::fflush(stdout);
          }));
      if (terminal && plans[i].tile > 0) fmt::print("\r\033[K");
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::error_code error;
      fs::create_directories(fs::path(job.output).parent_path(), error);
      if (error)
        throw Error(fs::path(job.output).parent_path().string(),
                    "cannot create the output folder: " + error.message(), ErrorKind::kRuntime);
      write_png(job.output, result);
      fmt::print("{} -> {}  ({}, {:.3f} s)\n", job.input, job.output, describe(plans[i]), seconds);
    } catch (const Error& e) {
      // A file whose header was fine but whose pixels are not: report it, keep going.
      if (e.kind() != ErrorKind::kInput) throw;
      fmt::print(stderr, "error: {}\n", e.what());
      ++failed;
    }
  }
  if (failed > 0)
    throw Error(fmt::format("{} of {} inputs failed (named above); the others were written", failed,
                            jobs.size()));
  return 0;
}

}  // namespace

Command add_translate_command(CLI::App& parent) {
  auto flags = std::make_shared<TranslateFlags>();
  CLI::App* app = parent.add_subcommand(
      "translate",
      "Translate images of any size with a generator: OUT/<stem>.png per file, OUT/<relative "
      "path>.png per image in a folder");
  add_weights_flags(app, flags->weights, flags->epoch);
  app->add_option("--out", flags->out, "output folder (created if missing)")->required();
  flags->generator.add_to(app);
  flags->compute.add_to(app);
  auto* eval_flag =
      app->add_flag("--eval", flags->eval_mode,
                    "eval mode: running batch-norm statistics, no dropout (the default)");
  app->add_flag("--train-mode", flags->train_mode,
                "the paper's test-time behaviour: batch statistics and dropout on (never tiles)")
      ->excludes(eval_flag);
  app->add_flag("--aligned", flags->aligned,
                "inputs are aligned A|B pairs (as in a dataset): translate the input half");
  app->add_option("--direction", flags->direction,
                  "with --aligned: AtoB (input A) or BtoA (default: the run's, else AtoB)")
      ->check(CLI::IsMember(names<Direction>()));
  app->add_option("--tile", flags->tile,
                  "translate in overlapping tiles of this side (a multiple of the network's size "
                  "multiple); 0: only above --max-pixels")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("--overlap", flags->overlap,
                  "overlap of neighbouring tiles in pixels (default: tile / 4)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--max-pixels", flags->max_pixels,
                  "tile automatically when a (padded) image has more pixels than this; 0: never")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("images", flags->inputs,
                  "images (PNG, JPEG, TIFF), folders (searched recursively), or - to read paths "
                  "from stdin")
      ->required()
      ->check(CLI::Validator(
          [](std::string& path) {
            std::error_code error;
            return path == "-" || fs::exists(path, error) ? std::string()
                                                          : "no such file or folder: " + path;
          },
          "PATH|-"));
  return {app, [flags, app] { return run_translate(*flags, *app); }};
}

}  // namespace pix2pix::cli
