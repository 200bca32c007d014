// `pix2pix model`: builds the networks, prints their summary (parameter counts, receptive field,
// output shape) and optionally writes freshly initialised weights as PyTorch state_dict files.
#include <ATen/ATen.h>
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "network_flags.h"
#include "pix2pix/error.h"
#include "pix2pix/io/pytorch_import.h"

namespace pix2pix::cli {

namespace {

struct ModelFlags {
  GeneratorFlags generator;
  DiscriminatorFlags discriminator;
  InitFlags init;
  int64_t size = 256;
  int64_t seed = 0;
  std::string save_g, save_d;
  bool json = false;
};

int run_model(const ModelFlags& flags) {
  const GeneratorOptions g_options = flags.generator.resolve();
  const DiscriminatorOptions d_options = flags.discriminator.resolve(g_options);
  // The same order as the reference (seed, build G, build D, initialise G, then D), so that with
  // the same seed the weights are the reference's, bit for bit.
  at::manual_seed(static_cast<uint64_t>(flags.seed));
  auto generator = make_generator(g_options);
  auto discriminator = make_discriminator(d_options);
  init_weights(*generator, flags.init.resolve());
  init_weights(*discriminator, flags.init.resolve());

  const auto& g = generator->options();
  const int64_t g_params = count_parameters(*generator);
  const int64_t d_params = count_parameters(*discriminator);
  const auto d_shape = discriminator->output_shape(flags.size, flags.size);
  const int64_t field = discriminator->receptive_field();
  if (flags.size % generator->size_multiple() != 0)
    throw Error("--size", std::to_string(flags.size) + " is not a multiple of " +
                              std::to_string(generator->size_multiple()) + " (what " + g.net +
                              " needs)");

  if (flags.json) {
    nlohmann::json out = {{"generator",
                           {{"net", g.net},
                            {"norm", to_string(g.norm)},
                            {"ngf", g.ngf},
                            {"input_nc", g.input_nc},
                            {"output_nc", g.output_nc},
                            {"num_downs", g.num_downs},
                            {"dropout", g.dropout},
                            {"upsampling", to_string(g.upsampling)},
                            {"parameters", g_params},
                            {"size_multiple", generator->size_multiple()}}},
                          {"discriminator",
                           {{"net", d_options.net},
                            {"norm", to_string(d_options.norm)},
                            {"ndf", d_options.ndf},
                            {"n_layers", d_options.net == "basic" ? 3 : d_options.n_layers},
                            {"input_nc", d_options.input_nc},
                            {"parameters", d_params},
                            {"receptive_field", field},
                            {"output_shape", d_shape}}},
                          {"size", flags.size}};
    fmt::print("{}\n", out.dump(2));
  } else {
    fmt::print(
        "generator      {}  (norm {}, ngf {}, {} -> {} channels, dropout {}, upsampling {})\n",
        g.net, to_string(g.norm), g.ngf, g.input_nc, g.output_nc, g.dropout ? "on" : "off",
        to_string(g.upsampling));
    if (g.num_downs > 0) fmt::print("  depth            {} downsamplings\n", g.num_downs);
    fmt::print("  parameters       {}\n", g_params);
    fmt::print("  input sides      multiples of {}\n", generator->size_multiple());
    fmt::print("discriminator  {}  (norm {}, ndf {}, {} input channels)\n", d_options.net,
               to_string(d_options.norm), d_options.ndf, d_options.input_nc);
    fmt::print("  parameters       {}\n", d_params);
    if (field < 0)
      fmt::print("  receptive field  whole image\n");
    else
      fmt::print("  receptive field  {}x{}\n", field, field);
    fmt::print("  output shape     {}x{}x{} for a {}x{} input\n", d_shape[0], d_shape[1],
               d_shape[2], flags.size, flags.size);
  }
  if (!flags.save_g.empty()) {
    write_state_dict(flags.save_g, module_state_dict(*generator));
    if (!flags.json) fmt::print("wrote {}\n", flags.save_g);
  }
  if (!flags.save_d.empty()) {
    write_state_dict(flags.save_d, module_state_dict(*discriminator));
    if (!flags.json) fmt::print("wrote {}\n", flags.save_d);
  }
  return 0;
}

}  // namespace

Command add_model_command(CLI::App& parent) {
  auto flags = std::make_shared<ModelFlags>();
  CLI::App* app = parent.add_subcommand(
      "model", "Print the networks' architecture summary; optionally write initialised weights");
  flags->generator.add_to(app);
  flags->discriminator.add_to(app);
  flags->init.add_to(app);
  app->add_option("--size", flags->size, "input side for the discriminator's output shape")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  app->add_option("--seed", flags->seed, "random seed for the initial weights")
      ->capture_default_str();
  app->add_option("--save-G", flags->save_g, "write the generator's state_dict (.pth) here");
  app->add_option("--save-D", flags->save_d, "write the discriminator's state_dict (.pth) here");
  app->add_flag("--json", flags->json, "print the summary as JSON");
  return {app, [flags] { return run_model(*flags); }};
}

}  // namespace pix2pix::cli
