#include "pix2pix/infer/translator.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "pix2pix/data/transforms.h"
#include "pix2pix/device.h"
#include "pix2pix/error.h"
#include "pix2pix/infer/tiling.h"
#include "pix2pix/train/run_directory.h"
#include "pix2pix/train/trainer.h"
#include "train/train_options.h"

namespace pix2pix {

namespace {

namespace fs = std::filesystem;

bool all_digits(const std::string& s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

int64_t round_up(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

int64_t default_overlap(int64_t tile, int64_t multiple) {
  return std::min(tile / 4, tile - multiple);
}

// Puts the generator in the requested mode for one translation and restores its mode and, after
// train mode, its batch-norm running statistics (translating must not change the model), also
// when the forward pass throws. A generator already in eval mode is not touched in eval mode, so
// that several threads can translate with it at once (the server does).
class ModeGuard {
 public:
  ModeGuard(Generator& generator, bool train_mode)
      : generator_(generator), train_mode_(train_mode), was_training_(generator.is_training()) {
    if (train_mode_)
      for (const auto& buffer : generator_.buffers()) saved_.push_back(buffer.clone());
    if (was_training_ != train_mode_) generator_.train(train_mode_);
  }
  ~ModeGuard() {
    if (was_training_ != train_mode_) generator_.train(was_training_);
    if (train_mode_) {
      size_t i = 0;
      for (auto& buffer : generator_.buffers()) buffer.copy_(saved_[i++]);
    }
  }
  ModeGuard(const ModeGuard&) = delete;
  ModeGuard& operator=(const ModeGuard&) = delete;

 private:
  Generator& generator_;
  bool train_mode_;
  bool was_training_;
  std::vector<at::Tensor> saved_;
};

}  // namespace

Translator::Translator(std::shared_ptr<Generator> generator, TranslateOptions options)
    : generator_(std::move(generator)), options_(options), device_(device_of(*generator_)) {}

TranslatePlan Translator::plan(int width, int height, const std::string& name) const {
  if (width < 1 || height < 1) throw Error(name, "empty image");
  const int64_t multiple = generator_->size_multiple();
  if (!options_.pad && (width % multiple != 0 || height % multiple != 0))
    throw Error(name, std::to_string(width) + "x" + std::to_string(height) +
                          " cannot be translated by " + generator_->options().net +
                          ": width and height must be multiples of " + std::to_string(multiple));
  TranslatePlan plan;
  plan.width = width;
  plan.height = height;
  plan.padded_width = static_cast<int>(round_up(width, multiple));
  plan.padded_height = static_cast<int>(round_up(height, multiple));
  plan.pad_left = (plan.padded_width - width) / 2;
  plan.pad_top = (plan.padded_height - height) / 2;

  const int64_t pixels = int64_t{plan.padded_width} * plan.padded_height;
  int64_t tile = 0;
  if (options_.tile > 0) {
    if (options_.train_mode)
      throw Error::option(
          "tile",
          "tiling needs eval mode: in train mode batch norm normalises every tile by its "
          "own statistics, so neighbouring tiles disagree and seams appear (turn `train_mode` "
          "off, or translate whole images in train mode)");
    tile = options_.tile;
  } else if (options_.max_pixels > 0 && pixels > options_.max_pixels) {
    if (options_.train_mode) {
      plan.over_budget_in_train_mode = true;
    } else {
      const auto side = static_cast<int64_t>(std::sqrt(static_cast<double>(options_.max_pixels)));
      tile = std::max(2 * multiple, side / multiple * multiple);
      plan.automatic_tile = true;
    }
  }
  if (tile == 0) return plan;
  const int64_t overlap = options_.overlap < 0 ? default_overlap(tile, multiple) : options_.overlap;
  const TileAxis rows = plan_tile_axis(plan.padded_height, tile, overlap, multiple);
  const TileAxis columns = plan_tile_axis(plan.padded_width, tile, overlap, multiple);
  if (rows.starts.size() == 1 && columns.starts.size() == 1) return plan;  // one tile: whole
  plan.tile = tile;
  plan.overlap = overlap;
  plan.tiles_y = static_cast<int64_t>(rows.starts.size());
  plan.tiles_x = static_cast<int64_t>(columns.starts.size());
  return plan;
}

void Translator::check_size(int width, int height, const std::string& name) const {
  plan(width, height, name);
}

at::Tensor Translator::translate_tensor(
    const at::Tensor& input, const std::string& name,
    const std::function<void(int64_t, int64_t)>& on_tile) const {
  if (input.dim() != 3 && input.dim() != 4)
    throw Error(name, "expected a C x H x W or N x C x H x W tensor");
  const at::Tensor batch = input.dim() == 3 ? input.unsqueeze(0) : input;
  if (batch.size(1) != generator_->options().input_nc)
    throw Error(name, "has " + std::to_string(batch.size(1)) + " channels, the generator takes " +
                          std::to_string(generator_->options().input_nc));
  const int height = static_cast<int>(batch.size(2));
  const int width = static_cast<int>(batch.size(3));
  const TranslatePlan plan = this->plan(width, height, name);

  at::NoGradGuard no_grad;
  ModeGuard mode(*generator_, options_.train_mode);
  at::Tensor padded = batch;
  if (plan.padded_width != width || plan.padded_height != height)
    padded = reflect_pad(batch, plan.pad_top, plan.padded_height - height - plan.pad_top,
                         plan.pad_left, plan.padded_width - width - plan.pad_left);
  // The image stays on the CPU; each whole image or tile visits the generator's device.
  const TileFunction forward = [&](const at::Tensor& x) {
    return generator_->forward(x.to(device_)).to(at::kCPU);
  };
  const at::Tensor output_padded = plan.tile == 0
                                       ? forward(padded)
                                       : run_tiled(padded, forward, plan.tile, plan.overlap,
                                                   generator_->size_multiple(), on_tile);
  at::Tensor output = output_padded;
  if (plan.padded_width != width || plan.padded_height != height)
    output = output.narrow(2, plan.pad_top, height).narrow(3, plan.pad_left, width).contiguous();
  return input.dim() == 3 ? output[0] : output;
}

Image Translator::translate(const Image& input, const std::string& name) const {
  if (input.channels != generator_->options().input_nc)
    throw Error(name, "has " + std::to_string(input.channels) + " channels, the generator takes " +
                          std::to_string(generator_->options().input_nc));
  check_size(input.width, input.height, name);
  return tensor_to_image(translate_tensor(image_to_tensor(input), name));
}

// ---- where the weights come from ------------------------------------------------------------

namespace {

using Json = nlohmann::json;

// The generator and direction of the run whose options.json is `path`, through the options table.
TrainOptions run_options_from(const Json& values, const std::string& path) {
  TrainOptions options;
  detail::read_options_json(values, path, &options);
  return options;
}

// "latest", "best", "5", ... for every checkpoints/<epoch>_net_G.pth, latest and best first.
std::string available_checkpoints(const fs::path& folder) {
  std::set<std::string> named, numbered;
  std::error_code error;
  for (fs::directory_iterator it(folder, error); !error && it != fs::directory_iterator();
       it.increment(error)) {
    const std::string file = it->path().filename().string();
    const std::string suffix = RunDirectory::weights_name("");
    if (file.size() <= suffix.size() ||
        file.compare(file.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string epoch = file.substr(0, file.size() - suffix.size());
    (all_digits(epoch) ? numbered : named).insert(epoch);
  }
  std::vector<std::string> all(named.begin(), named.end());
  std::vector<std::string> numbers(numbered.begin(), numbered.end());
  std::sort(numbers.begin(), numbers.end(), [](const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() < b.size() : a < b;
  });
  all.insert(all.end(), numbers.begin(), numbers.end());
  if (all.empty()) return "none";
  std::string list;
  for (const auto& epoch : all) list += (list.empty() ? "" : ", ") + epoch;
  return list;
}

}  // namespace

std::string generator_checkpoint(const std::string& run_dir, const std::string& epoch) {
  const std::string which = epoch.empty() ? "latest" : epoch;
  const bool number = all_digits(which) && which.size() < 10 && std::stoll(which) > 0;
  if (which != "latest" && which != "best" && !number)
    throw Error::option("epoch", "'" + which + "' is not latest, best or an epoch number");
  const RunDirectory run{run_dir};
  const std::string label = number ? std::to_string(std::stoll(which)) : which;
  const fs::path folder = run.checkpoints(), file = run.weights(label);
  std::error_code error;
  if (!fs::is_regular_file(file, error))
    throw Error(file.string(),
                "no such checkpoint (available epochs: " + available_checkpoints(folder) + ")");
  return file.string();
}

GeneratorOptions read_run_generator_options(const std::string& options_json) {
  return run_options_from(detail::read_options_file(options_json), options_json).generator;
}

GeneratorSource find_generator(const std::string& weights, const std::string& epoch,
                               const GeneratorOptions& fallback) {
  GeneratorSource source;
  source.options = fallback;
  std::error_code error;
  auto use_run_options = [&](const fs::path& options_file) {
    source.options_file = options_file.string();
    const Json values = detail::read_options_file(source.options_file);
    const TrainOptions run = run_options_from(values, source.options_file);
    source.options = run.generator;
    source.has_direction = values.contains("direction");
    source.direction = run.direction;
  };
  if (fs::is_directory(weights, error)) {
    const RunDirectory run{weights};
    if (!fs::exists(run.options(), error))
      throw Error(weights, "a folder without options.json: not a run directory (runs/NAME)");
    use_run_options(run.options());
    source.weights = generator_checkpoint(weights, epoch);
    return source;
  }
  if (!fs::exists(weights, error)) throw Error(weights, "no such file or folder");
  if (!epoch.empty())
    throw Error::option("epoch", "needs a run directory as `weights`; " + weights + " is a file");
  source.weights = weights;
  const fs::path parent = fs::path(weights).parent_path();
  if (parent.filename() == "checkpoints") {
    const std::string dir = parent.parent_path().string();
    const RunDirectory run{dir.empty() ? "." : dir};
    if (fs::exists(run.options(), error)) use_run_options(run.options());
  }
  return source;
}

}  // namespace pix2pix
