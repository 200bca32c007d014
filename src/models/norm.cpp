#include "pix2pix/models/norm.h"

#include <torch/nn.h>

#include "models/layers.h"
#include "pix2pix/error.h"
#include "pix2pix/models/sync_batch_norm.h"

namespace pix2pix {

Norm parse_norm(const std::string& name) {
  if (name == "batch") return Norm::kBatch;
  if (name == "instance") return Norm::kInstance;
  if (name == "none") return Norm::kNone;
  if (name == "syncbatch") return Norm::kSyncBatch;
  throw Error::option(
      "norm", "unknown normalisation '" + name + "' (expected batch, instance, none or syncbatch)");
}

std::string to_string(Norm norm) {
  switch (norm) {
    case Norm::kBatch:
      return "batch";
    case Norm::kInstance:
      return "instance";
    case Norm::kNone:
      return "none";
    case Norm::kSyncBatch:
      return "syncbatch";
  }
  return "?";
}

namespace detail {

torch::nn::AnyModule make_norm_layer(Norm norm, int64_t channels) {
  switch (norm) {
    case Norm::kBatch:
      return torch::nn::AnyModule(torch::nn::BatchNorm2d(channels));
    case Norm::kInstance:
      // The reference: affine=False, track_running_stats=False (no parameters, no buffers).
      return torch::nn::AnyModule(torch::nn::InstanceNorm2d(
          torch::nn::InstanceNorm2dOptions(channels).affine(false).track_running_stats(false)));
    case Norm::kSyncBatch:
      // A Communicator is attached by the trainer (set_communicator); until then, BatchNorm2d.
      return torch::nn::AnyModule(SyncBatchNorm2d(channels));
    case Norm::kNone:
      break;
  }
  return torch::nn::AnyModule(torch::nn::Identity());
}

}  // namespace detail
}  // namespace pix2pix
