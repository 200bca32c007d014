// Translates one image with a trained generator: a run directory, one of its checkpoints, or
// the reference's latest_net_G.pth.   build/examples/translate WEIGHTS INPUT.png OUTPUT.png
#include <pix2pix/pix2pix.h>

#include <iostream>

int main(int argc, char** argv) try {
  if (argc != 4) {
    std::cerr << "usage: translate WEIGHTS INPUT.png OUTPUT.png\n";
    return 2;
  }
  const pix2pix::GeneratorSource source = pix2pix::find_generator(argv[1], "latest");
  auto generator = pix2pix::make_generator(source.options);
  pix2pix::load_state_dict(*generator, pix2pix::read_state_dict(source.weights), source.weights);
  const pix2pix::Translator translator(generator);  // eval mode, any size, tiles when large
  pix2pix::ReadOptions read;  // a grey or RGBA file is converted to the generator's channels
  read.channels = static_cast<int>(source.options.input_nc);
  const pix2pix::Image input = pix2pix::read_image(argv[2], read);
  pix2pix::write_png(argv[3], translator.translate(input, argv[2]));
} catch (const pix2pix::Error& error) {
  std::cerr << "error: " << error.what() << "\n";
  return 2;
}
