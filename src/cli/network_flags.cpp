#include "network_flags.h"

#include "option_flags.h"
#include "pix2pix/device.h"
#include "pix2pix/io/pytorch_import.h"
#include "pix2pix/names.h"

namespace pix2pix::cli {

namespace {

// `names` and one more word the flag takes.
std::vector<std::string> and_also(std::vector<std::string> names, const std::string& word) {
  names.push_back(word);
  return names;
}

}  // namespace

void GeneratorFlags::add_to(CLI::App* app) {
  add_option_flag(app, "netG", net)->capture_default_str();
  add_option_flag(app, "norm", norm)->check(CLI::IsMember(names<Norm>()))->capture_default_str();
  add_option_flag(app, "ngf", ngf)->check(CLI::Range(1, 4096))->capture_default_str();
  add_option_flag(app, "input_nc", input_nc)->check(CLI::Range(1, 64))->capture_default_str();
  add_option_flag(app, "output_nc", output_nc)->check(CLI::Range(1, 64))->capture_default_str();
  add_option_flag(app, "num_downs", num_downs)->check(CLI::Range(5, 16));
  add_option_flag(app, "upsampling", upsampling)
      ->check(CLI::IsMember(and_also(names<Upsampling>(), "resize-conv")))
      ->capture_default_str();
  add_switch(app, "dropout", dropout);
}

GeneratorOptions GeneratorFlags::resolve() const {
  GeneratorOptions options;
  options.net = net;
  options.norm = parse_norm(norm);
  options.ngf = ngf;
  options.input_nc = input_nc;
  options.output_nc = output_nc;
  options.num_downs = num_downs;
  options.dropout = dropout;
  options.upsampling = parse_upsampling(upsampling);
  return options;
}

// The architecture: the run's (or the defaults) with the generator flags given on the command
// line on top (the command line wins).
namespace {

GeneratorOptions resolve_generator(const GeneratorSource& source, const GeneratorFlags& flags,
                                   const CLI::App& app) {
  if (source.options_file.empty()) return flags.resolve();
  GeneratorOptions options = source.options;
  const GeneratorOptions given = flags.resolve();
  auto explicit_flag = [&](const char* name) { return app.get_option(name)->count() > 0; };
  if (explicit_flag("--netG")) {
    options.net = given.net;
    if (!explicit_flag("--num-downs")) options.num_downs = 0;  // from the new name
  }
  if (explicit_flag("--num-downs")) options.num_downs = given.num_downs;
  if (explicit_flag("--norm")) options.norm = given.norm;
  if (explicit_flag("--ngf")) options.ngf = given.ngf;
  if (explicit_flag("--input-nc")) options.input_nc = given.input_nc;
  if (explicit_flag("--output-nc")) options.output_nc = given.output_nc;
  if (explicit_flag("--upsampling")) options.upsampling = given.upsampling;
  if (explicit_flag("--no-dropout")) options.dropout = false;
  return options;
}

}  // namespace

void add_weights_flags(CLI::App* app, std::string& weights, std::string& epoch) {
  app->add_option("--weights", weights,
                  "generator: a run directory (runs/NAME: options.json + checkpoints), one of its "
                  "checkpoints, or a PyTorch state_dict (.pth)")
      ->required()
      ->check(CLI::ExistingPath);
  app->add_option("--epoch", epoch,
                  "with a run directory: latest (default), best or an epoch number");
}

LoadedGenerator load_generator(const std::string& weights, const std::string& epoch,
                               const GeneratorFlags& flags, const CLI::App& app) {
  LoadedGenerator loaded;
  loaded.source = find_generator(weights, epoch, flags.resolve());
  loaded.options = resolve_generator(loaded.source, flags, app);
  loaded.generator = make_generator(loaded.options);
  load_state_dict(*loaded.generator, read_state_dict(loaded.source.weights), loaded.source.weights);
  return loaded;
}

void DiscriminatorFlags::add_to(CLI::App* app) {
  add_option_flag(app, "netD", net)
      ->check(CLI::IsMember({"basic", "n_layers", "pixel", "image"}))
      ->capture_default_str();
  add_option_flag(app, "n_layers_D", n_layers)->check(CLI::Range(1, 5))->capture_default_str();
  add_option_flag(app, "ndf", ndf)->check(CLI::Range(1, 4096))->capture_default_str();
  add_option_flag(app, "norm_D", norm)->check(CLI::IsMember(names<Norm>()));
}

DiscriminatorOptions DiscriminatorFlags::resolve(const GeneratorOptions& generator) const {
  DiscriminatorOptions options;
  options.net = net;
  options.n_layers = n_layers;
  options.ndf = ndf;
  options.norm = norm.empty() ? generator.norm : parse_norm(norm);
  options.input_nc = generator.input_nc + generator.output_nc;
  return options;
}

void InitFlags::add_to(CLI::App* app) {
  add_option_flag(app, "init_type", type)
      ->check(CLI::IsMember(names<InitType>()))
      ->capture_default_str();
  add_option_flag(app, "init_gain", gain)->check(CLI::PositiveNumber)->capture_default_str();
}

InitOptions InitFlags::resolve() const { return {parse_init_type(type), gain}; }

void ComputeFlags::add_to(CLI::App* app) {
  add_option_flag(app, "device", device)->capture_default_str();
  add_option_flag(app, "precision", precision)
      ->check(CLI::IsMember(and_also(names<Precision>(), "auto")))
      ->capture_default_str();
  add_option_flag(app, "transposed_conv", transposed)
      ->check(CLI::IsMember(names<TransposedConv>()))
      ->capture_default_str();
  add_option_flag(app, "onednn", onednn)
      ->check(CLI::IsMember({"direct", "libtorch"}))
      ->capture_default_str();
}

ComputeOptions ComputeFlags::resolve() const {
  ComputeOptions options;
  options.device = parse_device(device);
  // auto: bf16 where the CPU has bfloat16 instructions, and on every GPU.
  options.precision = precision == "auto" && options.device.is_cuda() ? Precision::kBFloat16
                                                                      : parse_precision(precision);
  check_precision_supported(options.precision, options.device);  // before anything is written
  options.transposed = parse_transposed_conv(transposed);
  options.onednn_direct = onednn == "direct";
  return options;
}

ComputeOptions ComputeFlags::apply_to(torch::nn::Module& module) const {
  const ComputeOptions options = resolve();
  place(module, options);
  return options;
}

}  // namespace pix2pix::cli
