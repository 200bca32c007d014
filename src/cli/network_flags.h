// Flags that describe the networks, shared by every command that builds one (model, translate,
// train), so the same spelling means the same thing everywhere; names and help from the options
// table (option_flags.h).
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "pix2pix/infer/translator.h"
#include "pix2pix/models/compute.h"
#include "pix2pix/models/discriminator.h"
#include "pix2pix/models/generator.h"
#include "pix2pix/models/init.h"

namespace pix2pix::cli {

/// Generator flags as given on the command line (names resolved by resolve()).
struct GeneratorFlags {
  std::string net = "unet_256";
  std::string norm = "batch";
  std::string upsampling = "transposed";
  int64_t ngf = 64, input_nc = 3, output_nc = 3, num_downs = 0;
  bool dropout = true;

  void add_to(CLI::App* app);
  GeneratorOptions resolve() const;
};

/// A trained generator named as `translate` names it: --weights (a run directory, a checkpoint or
/// a state_dict) and --epoch, with the generator flags given on the command line on top of the
/// run's architecture (the command line wins).
struct LoadedGenerator {
  GeneratorSource source;                ///< where the weights and architecture came from
  GeneratorOptions options;              ///< the architecture built
  std::shared_ptr<Generator> generator;  ///< float32, weights loaded, compute not yet set
};

/// --weights (required, an existing path) and --epoch, as load_generator takes them: the same
/// flags and help in every command that runs a trained generator (translate, export, serve).
void add_weights_flags(CLI::App* app, std::string& weights, std::string& epoch);

/// Finds, builds and loads the generator; `app` tells which generator flags were given.
LoadedGenerator load_generator(const std::string& weights, const std::string& epoch,
                               const GeneratorFlags& flags, const CLI::App& app);

/// Discriminator flags; its input channel count comes from the generator's (conditional GAN).
struct DiscriminatorFlags {
  std::string net = "basic";
  std::string norm;  ///< empty: the generator's norm
  int64_t ndf = 64, n_layers = 3;

  void add_to(CLI::App* app);
  DiscriminatorOptions resolve(const GeneratorOptions& generator) const;
};

/// Weight initialisation flags.
struct InitFlags {
  std::string type = "normal";
  double gain = 0.02;

  void add_to(CLI::App* app);
  InitOptions resolve() const;
};

/// How and where the networks compute: --device auto|cpu|cuda[:N], --precision fp32|bf16|auto,
/// --transposed-conv auto|gradient|native, --onednn direct|libtorch.
struct ComputeFlags {
  std::string device = "auto";
  std::string precision = "fp32";
  std::string transposed = "auto";
  std::string onednn = "direct";

  void add_to(CLI::App* app);
  ComputeOptions resolve() const;
  /// resolve(), then `module` moved to the device and set to compute there (set_compute).
  ComputeOptions apply_to(torch::nn::Module& module) const;
};

}  // namespace pix2pix::cli
