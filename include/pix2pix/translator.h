// Running a trained generator on whole images: image in, image out, same size. Later: padding of
// arbitrary sizes and tiling of large images.
#pragma once

#include <memory>
#include <string>

#include "pix2pix/generator.h"
#include "pix2pix/image_io.h"

namespace pix2pix {

/// How the generator runs at test time.
struct TranslateOptions {
  /// false (default): eval mode, running batch-norm statistics and no dropout. true: the paper's
  /// test-time behaviour, batch statistics of the image itself and dropout on.
  bool train_mode = false;
};

/// Translates images with one generator.
class Translator {
 public:
  Translator(std::shared_ptr<Generator> generator, TranslateOptions options = {});

  /// Translates one image (any sample type; its channel count must be the generator's input_nc).
  /// `name` names the image in errors, e.g. a size the network cannot take.
  Image translate(const Image& input, const std::string& name) const;

  /// Throws pix2pix::Error naming `name` if the generator cannot take a width x height input.
  void check_size(int width, int height, const std::string& name) const;

 private:
  std::shared_ptr<Generator> generator_;
  TranslateOptions options_;
};

}  // namespace pix2pix
