#include "pix2pix/models/norm.h"

#include <torch/nn.h>

#include "models/layers.h"
#include "names_table.h"
#include "pix2pix/error.h"
#include "pix2pix/models/sync_batch_norm.h"

namespace pix2pix {

template <>
const std::vector<std::string>& names<Norm>() {
  static const std::vector<std::string> list = {"batch", "instance", "none", "syncbatch"};
  return list;
}

Norm parse_norm(const std::string& name) {
  return detail::parse_name<Norm>(name, "norm", "normalisation");
}

std::string to_string(Norm norm) { return detail::name_of(norm); }

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
