#include "network_flags.h"

namespace pix2pix::cli {

void GeneratorFlags::add_to(CLI::App* app) {
  app->add_option("--netG", net,
                  "generator: unet_256, unet_128, unet_<side> or unet (with --num-downs), "
                  "resnet_6blocks, resnet_9blocks")
      ->capture_default_str();
  app->add_option("--norm", norm,
                  "normalisation: batch, instance, none or syncbatch (batch norm over all "
                  "data-parallel ranks)")
      ->check(CLI::IsMember({"batch", "instance", "none", "syncbatch"}))
      ->capture_default_str();
  app->add_option("--ngf", ngf, "generator filters in the first layer")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app->add_option("--input-nc", input_nc, "input image channels")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app->add_option("--output-nc", output_nc, "output image channels")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app->add_option("--num-downs", num_downs, "U-Net depth (default: from --netG)")
      ->check(CLI::Range(5, 16));
  app->add_option("--upsampling", upsampling,
                  "decoder upsampling: transposed (reference), resize-conv (= resize-nearest) or "
                  "resize-bilinear")
      ->check(CLI::IsMember({"transposed", "resize-conv", "resize-nearest", "resize-bilinear"}))
      ->capture_default_str();
  app->add_flag("--no-dropout", no_dropout, "no dropout in the generator");
}

GeneratorOptions GeneratorFlags::resolve() const {
  GeneratorOptions options;
  options.net = net;
  options.norm = parse_norm(norm);
  options.ngf = ngf;
  options.input_nc = input_nc;
  options.output_nc = output_nc;
  options.num_downs = num_downs;
  options.dropout = !no_dropout;
  options.upsampling = parse_upsampling(upsampling);
  return options;
}

void DiscriminatorFlags::add_to(CLI::App* app) {
  app->add_option("--netD", net, "discriminator: basic (70x70 PatchGAN), n_layers, pixel, image")
      ->check(CLI::IsMember({"basic", "n_layers", "pixel", "image"}))
      ->capture_default_str();
  app->add_option("--n-layers-D", n_layers,
                  "PatchGAN layers for n_layers/image: 1..5 = 16, 34, 70, 142, 286 pixel patches")
      ->check(CLI::Range(1, 5))
      ->capture_default_str();
  app->add_option("--ndf", ndf, "discriminator filters in the first layer")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app->add_option("--norm-D", norm, "discriminator normalisation (default: as --norm)")
      ->check(CLI::IsMember({"batch", "instance", "none", "syncbatch"}));
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
  app->add_option("--init-type", type, "weight init: normal, xavier, kaiming or orthogonal")
      ->check(CLI::IsMember({"normal", "xavier", "kaiming", "orthogonal"}))
      ->capture_default_str();
  app->add_option("--init-gain", gain, "std (normal) or gain (xavier, orthogonal)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

InitOptions InitFlags::resolve() const { return {parse_init_type(type), gain}; }

void ComputeFlags::add_to(CLI::App* app) {
  app->add_option("--precision", precision,
                  "fp32; bf16: bfloat16 convolutions (fp32 master weights, norms and losses), on "
                  "CPUs with bfloat16 instructions (AVX-512 BF16 or AMX; BF16 on arm64); auto: "
                  "bf16 where the CPU has them, else fp32")
      ->check(CLI::IsMember({"fp32", "bf16", "auto"}))
      ->capture_default_str();
  app->add_option("--transposed-conv", transposed,
                  "fp32 convolution forms: auto (matrix products on small maps, transposed "
                  "convolutions as convolution gradients on larger ones), gradient (transposed "
                  "ones always as convolution gradients), native (libtorch's: the reference's "
                  "numbers bit for bit)")
      ->check(CLI::IsMember({"auto", "gradient", "native"}))
      ->capture_default_str();
  app->add_option("--bf16-conv", bf16_conv,
                  "bf16 convolution calls: direct (oneDNN called directly, weights reordered once "
                  "per optimiser step), or libtorch (its conv2d: the same kernels and numbers, "
                  "slower)")
      ->check(CLI::IsMember({"direct", "libtorch"}))
      ->capture_default_str();
}

ComputeOptions ComputeFlags::resolve() const {
  ComputeOptions options;
  options.precision = parse_precision(precision);
  check_precision_supported(options.precision);  // before anything is written
  options.transposed = parse_transposed_conv(transposed);
  options.onednn_direct = bf16_conv == "direct";
  return options;
}

}  // namespace pix2pix::cli
