#include "pix2pix/translator.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include "pix2pix/error.h"
#include "pix2pix/transforms.h"

namespace pix2pix {

Translator::Translator(std::shared_ptr<Generator> generator, TranslateOptions options)
    : generator_(std::move(generator)), options_(options) {}

void Translator::check_size(int width, int height, const std::string& name) const {
  const int64_t multiple = generator_->size_multiple();
  if (width % multiple != 0 || height % multiple != 0)
    throw Error(name, std::to_string(width) + "x" + std::to_string(height) +
                          " cannot be translated by " + generator_->options().net +
                          ": width and height must be multiples of " + std::to_string(multiple));
}

Image Translator::translate(const Image& input, const std::string& name) const {
  if (input.channels != generator_->options().input_nc)
    throw Error(name, "has " + std::to_string(input.channels) + " channels, the generator takes " +
                          std::to_string(generator_->options().input_nc));
  check_size(input.width, input.height, name);
  at::NoGradGuard no_grad;
  // Train mode updates batch norm's running statistics; translating must not change the model,
  // so keep a copy and put it back.
  std::vector<at::Tensor> saved;
  if (options_.train_mode)
    for (const auto& buffer : generator_->buffers()) saved.push_back(buffer.clone());
  const bool was_training = generator_->is_training();
  generator_->train(options_.train_mode);
  at::Tensor output = generator_->forward(image_to_tensor(input).unsqueeze(0));
  generator_->train(was_training);
  if (options_.train_mode) {
    size_t i = 0;
    for (auto& buffer : generator_->buffers()) buffer.copy_(saved[i++]);
  }
  return tensor_to_image(output[0]);
}

}  // namespace pix2pix
