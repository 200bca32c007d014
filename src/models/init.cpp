#include "pix2pix/models/init.h"

#include <torch/nn.h>

#include "names_table.h"
#include "pix2pix/error.h"
#include "pix2pix/models/sync_batch_norm.h"

namespace pix2pix {

template <>
const std::vector<std::string>& names<InitType>() {
  static const std::vector<std::string> list = {"normal", "xavier", "kaiming", "orthogonal"};
  return list;
}

InitType parse_init_type(const std::string& name) {
  return detail::parse_name<InitType>(name, "init_type", "initialisation");
}

std::string to_string(InitType type) { return detail::name_of(type); }

namespace {

void init_weight(at::Tensor& weight, const InitOptions& options) {
  switch (options.type) {
    case InitType::kNormal:
      torch::nn::init::normal_(weight, 0.0, options.gain);
      break;
    case InitType::kXavier:
      torch::nn::init::xavier_normal_(weight, options.gain);
      break;
    case InitType::kKaiming:
      torch::nn::init::kaiming_normal_(weight, 0.0, torch::kFanIn);
      break;
    case InitType::kOrthogonal:
      torch::nn::init::orthogonal_(weight, options.gain);
      break;
  }
}

template <typename LayerImpl>
bool init_layer(torch::nn::Module& module, const InitOptions& options) {
  auto* layer = module.as<LayerImpl>();
  if (layer == nullptr) return false;
  init_weight(layer->weight, options);
  if (layer->bias.defined()) torch::nn::init::zeros_(layer->bias);
  return true;
}

}  // namespace

void init_weights(torch::nn::Module& module, const InitOptions& options) {
  torch::NoGradGuard no_grad;
  auto init_one = [&](torch::nn::Module& layer) {
    if (init_layer<torch::nn::Conv2dImpl>(layer, options) ||
        init_layer<torch::nn::ConvTranspose2dImpl>(layer, options) ||
        init_layer<torch::nn::LinearImpl>(layer, options))
      return;
    if (auto* bn = layer.as<torch::nn::BatchNorm2dImpl>()) {
      if (bn->weight.defined()) torch::nn::init::normal_(bn->weight, 1.0, options.gain);
      if (bn->bias.defined()) torch::nn::init::zeros_(bn->bias);
    } else if (auto* sync_bn = layer.as<SyncBatchNorm2dImpl>()) {
      torch::nn::init::normal_(sync_bn->weight, 1.0, options.gain);
      torch::nn::init::zeros_(sync_bn->bias);
    }
  };
  // modules() is pre-order, the reference's apply() post-order; both visit the leaves (the only
  // layers initialised) in the same order, so the random draws happen in the same order. The
  // module itself is visited without modules(include_self), which needs a shared_ptr.
  init_one(module);
  for (const auto& child : module.modules(/*include_self=*/false)) init_one(*child);
}

}  // namespace pix2pix
