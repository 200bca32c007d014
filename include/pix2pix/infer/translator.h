// Running a trained generator on whole images of any size: image in, image out, same size.
// Sides that are not multiples of what the generator needs are mirror-padded and the output
// cropped back; images above a pixel budget (or when asked) run as overlapping tiles blended
// seamlessly (tiling.h). Also: finding a generator's weights and architecture from a run
// directory, one of its checkpoints, or a plain PyTorch state_dict.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "pix2pix/data/dataset.h"
#include "pix2pix/io/image_io.h"
#include "pix2pix/models/generator.h"

namespace pix2pix {

/// How the generator runs at test time.
struct TranslateOptions {
  /// false (default): eval mode, running batch-norm statistics and no dropout. true: the paper's
  /// test-time behaviour, batch statistics of the image itself and dropout on. Train mode never
  /// tiles: batch norm would normalise each tile by its own statistics, so neighbouring tiles
  /// would disagree; an explicit `tile` with train_mode is an error and automatic tiling is off.
  bool train_mode = false;
  /// true (default): sides that are not multiples of the generator's size_multiple() are
  /// mirror-padded (reflect_pad, split evenly between both ends) up to the next multiple, and the
  /// output is cropped back to the input's size. false: such sizes are errors.
  bool pad = true;
  /// Tile side in pixels, a multiple of size_multiple(); 0 (default): whole images, unless the
  /// padded image has more than max_pixels pixels (then the automatic tile, see max_pixels).
  int64_t tile = 0;
  /// Overlap of neighbouring tiles in pixels, 0..tile - size_multiple(); -1 (default): tile / 4,
  /// at most tile - size_multiple(). The outer quarter of an overlap is dropped and the middle
  /// half cross-faded (tiling.h), so tiles equal the whole image when overlap / 4 covers the
  /// network's receptive-field radius.
  int64_t overlap = -1;
  /// Pixel budget for whole-image translation: a padded image above it is tiled automatically
  /// (eval mode only) with the largest tile that is a multiple of size_multiple() and whose square
  /// fits the budget (at least 2 * size_multiple()), and the default overlap. 0: never tile
  /// automatically. Default 2^20 (1024 x 1024): unet_256 then peaks at about 1.4 GB.
  int64_t max_pixels = int64_t{1} << 20;
};

/// What translating a width x height image will do (Translator::plan).
struct TranslatePlan {
  int width = 0, height = 0;                ///< the input
  int padded_width = 0, padded_height = 0;  ///< after mirror padding to the size multiple
  int pad_left = 0, pad_top = 0;            ///< padding before the image (the rest goes after it)
  int64_t tile = 0;                         ///< tile side; 0: the whole padded image at once
  int64_t overlap = 0;                      ///< overlap of neighbouring tiles (when tiled)
  int64_t tiles_x = 1, tiles_y = 1;         ///< tiles per row and per column
  bool automatic_tile = false;              ///< the tile came from max_pixels, not `tile`
  /// True when the padded image exceeds max_pixels but train mode translates it whole.
  bool over_budget_in_train_mode = false;
};

/// Translates images with one generator. In eval mode, translations may run from several threads
/// at once when the generator is already in eval mode (generator->eval()): translate then leaves
/// its state alone. Train mode changes the generator's state: one translation at a time.
/// The generator is where it will run (place() before making the Translator): images stay on
/// the CPU and each whole image or tile visits that device.
class Translator {
 public:
  Translator(std::shared_ptr<Generator> generator, TranslateOptions options = {});

  /// Translates one image (any sample type; its channel count must be the generator's input_nc).
  /// `name` names the image in errors, e.g. a size the network cannot take.
  Image translate(const Image& input, const std::string& name) const;

  /// Translates a C x H x W (or N x C x H x W) float tensor in [-1, 1] of any size: pads, tiles
  /// and crops as translate does, and returns the generator's output of the same layout and size.
  /// `on_tile(done, total)` is called after each tile when tiling.
  at::Tensor translate_tensor(const at::Tensor& input, const std::string& name,
                              const std::function<void(int64_t, int64_t)>& on_tile = nullptr) const;

  /// How a width x height image would be translated. Throws pix2pix::Error naming `name` for a
  /// size the generator cannot take (only without padding), and naming the flag for a tile or
  /// overlap that does not fit the generator, or a tile in train mode.
  TranslatePlan plan(int width, int height, const std::string& name) const;

  /// Throws pix2pix::Error naming `name` if a width x height input cannot be translated (see
  /// plan).
  void check_size(int width, int height, const std::string& name) const;

  const TranslateOptions& options() const { return options_; }
  const Generator& generator() const { return *generator_; }

 private:
  at::Tensor run(const at::Tensor& batch) const;

  std::shared_ptr<Generator> generator_;
  TranslateOptions options_;
  c10::Device device_;  ///< the generator's, when the Translator was made
};

/// Where a generator's weights and architecture come from (find_generator).
struct GeneratorSource {
  std::string weights;         ///< the state_dict file to load
  std::string options_file;    ///< the run's options.json the architecture came from; empty: none
  GeneratorOptions options;    ///< the architecture: from options_file, else the fallback given
  bool has_direction = false;  ///< options_file recorded a direction
  Direction direction = Direction::kAtoB;  ///< the run's direction (when has_direction)
};

/// The checkpoint file of `epoch` in RUN/checkpoints: "latest" (also when empty) ->
/// latest_net_G.pth, "best" -> best_net_G.pth, N > 0 -> N_net_G.pth (leading zeros dropped).
/// Throws Error::option("epoch", ...) for another value and Error(path, ...) listing the run's
/// generator checkpoints when the file does not exist.
std::string generator_checkpoint(const std::string& run_dir, const std::string& epoch);

/// Resolves a `--weights` argument:
/// - a run directory (holds options.json): the architecture and direction from its options.json,
///   the weights from checkpoints/<epoch>_net_G.pth, `epoch` being "latest" (also when empty),
///   "best" or an epoch number;
/// - a file inside a run's checkpoints/ folder: that file, the architecture from the run's
///   options.json;
/// - any other file (e.g. the reference's latest_net_G.pth): that file, architecture `fallback`.
/// Throws pix2pix::Error naming the path: missing, an unreadable options.json, an epoch without a
/// checkpoint (listing those that exist), or an epoch given with a file.
GeneratorSource find_generator(const std::string& weights, const std::string& epoch,
                               const GeneratorOptions& fallback = {});

/// The generator fields of a run's options.json (netG, ngf, input_nc, output_nc, num_downs, norm,
/// dropout, upsampling; missing fields keep the defaults). Throws pix2pix::Error naming the file.
GeneratorOptions read_run_generator_options(const std::string& options_json);

}  // namespace pix2pix
