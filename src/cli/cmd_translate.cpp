// `pix2pix translate`: runs a generator (weights from a PyTorch state_dict) on image files and
// writes OUT/<stem>.png for each. Every input is checked (readable, a size the network takes)
// before any output is written.
#include <fmt/core.h>

#include <chrono>
#include <filesystem>
#include <map>

#include "commands.h"
#include "network_flags.h"
#include "pix2pix/dataset.h"
#include "pix2pix/error.h"
#include "pix2pix/pytorch_import.h"
#include "pix2pix/translator.h"

namespace pix2pix::cli {

namespace {

namespace fs = std::filesystem;

struct TranslateFlags {
  GeneratorFlags generator;
  ComputeFlags compute;
  std::string weights;
  std::string out;
  std::vector<std::string> inputs;
  bool eval_mode = false;
  bool train_mode = false;
  bool aligned = false;          // inputs are A|B pairs: translate the input half
  std::string direction = "AtoB";
};

int run_translate(const TranslateFlags& flags) {
  const GeneratorOptions options = flags.generator.resolve();
  auto generator = make_generator(options);
  load_state_dict(*generator, read_state_dict(flags.weights), flags.weights);
  set_compute(*generator, flags.compute.resolve());
  TranslateOptions translate_options;
  translate_options.train_mode = flags.train_mode;
  Translator translator(generator, translate_options);

  // Check every input and every output name before writing anything.
  std::map<std::string, std::string> output_of;  // output path -> input path
  std::vector<std::pair<std::string, std::string>> jobs;
  for (const auto& input : flags.inputs) {
    const ImageInfo info = read_image_info(input);
    if (flags.aligned && info.width % 2 != 0)
      throw Error(input, "odd width " + std::to_string(info.width) + ": not an aligned A|B pair");
    translator.check_size(flags.aligned ? info.width / 2 : info.width, info.height, input);
    const std::string output = (fs::path(flags.out) / fs::path(input).stem()).string() + ".png";
    auto [it, inserted] = output_of.emplace(output, input);
    if (!inserted)
      throw Error(input, "would overwrite the output of " + it->second + " (" + output +
                             "): input names must have distinct stems");
    jobs.emplace_back(input, output);
  }
  std::error_code error;
  fs::create_directories(flags.out, error);
  if (error) throw Error(flags.out, "cannot create the output folder: " + error.message());

  fmt::print("mode: {}\n", flags.train_mode ? "train (batch statistics, dropout on, as the paper)"
                                            : "eval (running statistics, no dropout)");
  for (const auto& [input, output] : jobs) {
    ReadOptions read_options;
    read_options.channels = static_cast<int>(options.input_nc);
    Image image = read_image(input, read_options);
    if (flags.aligned) {
      auto [a, b] = split_aligned(image, input);
      image = parse_direction(flags.direction) == Direction::kAtoB ? std::move(a) : std::move(b);
    }
    const auto start = std::chrono::steady_clock::now();
    const Image result = translator.translate(image, input);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    write_png(output, result);
    fmt::print("{} -> {}  ({}x{}, {:.3f} s)\n", input, output, image.width, image.height, seconds);
  }
  return 0;
}

}  // namespace

Command add_translate_command(CLI::App& parent) {
  auto flags = std::make_shared<TranslateFlags>();
  CLI::App* app = parent.add_subcommand(
      "translate", "Translate images with a generator: writes OUT/<stem>.png for each input");
  app->add_option("--weights", flags->weights, "generator weights: a PyTorch state_dict (.pth)")
      ->required()
      ->check(CLI::ExistingFile);
  app->add_option("--out", flags->out, "output folder (created if missing)")->required();
  flags->generator.add_to(app);
  flags->compute.add_to(app);
  auto* eval_flag =
      app->add_flag("--eval", flags->eval_mode,
                    "eval mode: running batch-norm statistics, no dropout (the default)");
  app->add_flag("--train-mode", flags->train_mode,
                "the paper's test-time behaviour: batch statistics and dropout on")
      ->excludes(eval_flag);
  app->add_flag("--aligned", flags->aligned,
                "inputs are aligned A|B pairs (as in a dataset): translate the input half");
  app->add_option("--direction", flags->direction, "with --aligned: AtoB (input A) or BtoA")
      ->check(CLI::IsMember({"AtoB", "BtoA"}))
      ->capture_default_str();
  app->add_option("images", flags->inputs, "images to translate (PNG, JPEG, TIFF)")
      ->required()
      ->check(CLI::ExistingFile);
  return {app, [flags] { return run_translate(*flags); }};
}

}  // namespace pix2pix::cli
