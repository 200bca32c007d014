// `pix2pix export`: a generator as an ONNX model (io/onnx_export.h), its weights and architecture
// named as translate names them.
#include <fmt/core.h>

#include <filesystem>

#include "commands.h"
#include "network_flags.h"
#include "pix2pix/data/dataset.h"
#include "pix2pix/io/onnx_export.h"
#include "pix2pix/names.h"

namespace pix2pix::cli {

namespace {

struct ExportFlags {
  GeneratorFlags generator;
  std::string weights, epoch, out, direction;
  std::string mode = "eval";
  int64_t opset = OnnxExportOptions{}.opset;
};

int run_export(const ExportFlags& flags, const CLI::App& app) {
  const LoadedGenerator loaded = load_generator(flags.weights, flags.epoch, flags.generator, app);
  OnnxExportOptions options;
  options.mode = flags.mode == "paper" ? OnnxMode::kPaper : OnnxMode::kEval;
  options.opset = flags.opset;
  options.metadata["weights"] = std::filesystem::path(loaded.source.weights).filename().string();
  if (!flags.direction.empty())
    options.metadata["direction"] = flags.direction;
  else if (loaded.source.has_direction)
    options.metadata["direction"] = to_string(loaded.source.direction);
  export_onnx(*loaded.generator, flags.out, options);

  const GeneratorOptions& g = loaded.options;
  fmt::print("weights: {}{}\n", loaded.source.weights,
             loaded.source.options_file.empty()
                 ? ""
                 : " (architecture from " + loaded.source.options_file + ")");
  fmt::print("wrote {} ({:.1f} MB): {}, opset {}, mode {}\n", flags.out,
             static_cast<double>(std::filesystem::file_size(flags.out)) / 1e6, g.net, options.opset,
             flags.mode);
  fmt::print("input `input`: float32 N x {} x H x W in [-1, 1], H and W multiples of {}\n",
             g.input_nc, loaded.generator->size_multiple());
  fmt::print("output `output`: float32 N x {} x H x W in [-1, 1]\n", g.output_nc);
  if (options.mode == OnnxMode::kPaper && g.dropout)
    fmt::print(
        "note: paper mode exports no dropout: the model equals translate --train-mode "
        "--no-dropout, one image at a time\n");
  return 0;
}

}  // namespace

Command add_export_command(CLI::App& parent) {
  auto flags = std::make_shared<ExportFlags>();
  CLI::App* app = parent.add_subcommand(
      "export", "Write a generator as an ONNX model (dynamic batch, height and width)");
  add_weights_flags(app, flags->weights, flags->epoch);
  app->add_option("--out", flags->out, "the .onnx file to write")->required();
  app->add_option("--mode", flags->mode,
                  "eval: running batch-norm statistics, no dropout (translate's default); paper: "
                  "each image normalised by its own statistics (translate --train-mode "
                  "--no-dropout)")
      ->check(CLI::IsMember(names<OnnxMode>()))
      ->capture_default_str();
  app->add_option("--opset", flags->opset, "ONNX operator set")
      ->check(CLI::Range(13, 17))
      ->capture_default_str();
  app->add_option("--direction", flags->direction,
                  "recorded in the model's metadata (default: the run's, if known)")
      ->check(CLI::IsMember(names<Direction>()));
  flags->generator.add_to(app);
  return {app, [flags, app] { return run_export(*flags, *app); }};
}

}  // namespace pix2pix::cli
