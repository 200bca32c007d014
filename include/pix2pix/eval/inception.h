// The InceptionV3 that FID and KID are defined with: pytorch-fid's port of the TensorFlow graph
// (inception-2015-12-05), i.e. torchvision's Inception3 layout (1008 classes, no auxiliary
// head) whose Mixed_5b..5d, Mixed_6b..6e, Mixed_7b and Mixed_7c blocks average-pool without
// counting padding and whose last block max-pools. Its output is the 2048-d pool3 feature.
//
// Submodules are registered with torchvision's names (Conv2d_1a_3x3.conv.weight,
// Mixed_7c.branch_pool.bn.running_var, fc.weight, ...), so the state_dict file pytorch-fid uses,
// `pt_inception-2015-12-05-6726825d.pth`, loads strictly with pytorch_import.h. Users download
// that file themselves; nothing is fetched. Without it, FID and KID are unavailable.
#pragma once

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pix2pix/io/image_io.h"

namespace pix2pix {

namespace detail {
class InceptionBlock;
}

/// What the network does to its input before the first convolution. Defaults are pytorch-fid's.
struct FidInceptionOptions {
  /// Resize to 299 x 299, bilinear, align_corners=False (torch's F.interpolate, no antialias).
  bool resize_input = true;
  /// Map [0, 1] inputs to [-1, 1] (2x - 1), the range the TensorFlow graph was trained on.
  bool normalize_input = true;
};

/// pytorch-fid's FID InceptionV3 up to the 2048-d average pool (plus the unused 1008-way `fc`,
/// kept so that the weight file's keys match). Always run it in eval mode (batch norm with the
/// stored statistics, eps 0.001).
class FidInceptionV3 : public torch::nn::Module {
 public:
  explicit FidInceptionV3(FidInceptionOptions options = {});

  /// N x 3 x H x W images in [0, 1] (with normalize_input; else already in [-1, 1]) ->
  /// N x 2048 pool features. H and W must be at least 75 without resize_input.
  at::Tensor forward(at::Tensor images);

  /// The input steps of forward alone (resize, then [0, 1] -> [-1, 1], as options say).
  at::Tensor preprocess(at::Tensor images) const;
  /// The network after preprocess: N x 3 x H x W in [-1, 1] -> N x 2048.
  at::Tensor pool_features(at::Tensor prepared);

  const FidInceptionOptions& options() const { return options_; }

 private:
  FidInceptionOptions options_;
  // Conv2d_1a_3x3 .. Conv2d_4a_3x3 (max pools after 2b and 4a), then Mixed_5b .. Mixed_7c.
  std::vector<std::shared_ptr<detail::InceptionBlock>> blocks_;
};

/// Builds the network, loads `weights_path` strictly (pytorch_import.h) and puts it in eval
/// mode. Throws pix2pix::Error naming the file when it is missing or its keys or shapes differ.
std::shared_ptr<FidInceptionV3> load_fid_inception(const std::string& weights_path,
                                                   FidInceptionOptions options = {});

/// Pool features (N x 2048, float) of 8-bit images, `batch_size` at a time: each image is
/// converted to RGB (gray replicated), scaled to [0, 1] and run through `network` (which
/// resizes each to 299 x 299). Images may have different sizes. `progress` (optional) gets the
/// number of images done after each batch.
at::Tensor fid_features(FidInceptionV3& network, const std::vector<Image>& images,
                        int64_t batch_size = 8,
                        const std::function<void(size_t)>& progress = nullptr);

}  // namespace pix2pix
