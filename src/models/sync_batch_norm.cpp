// SyncBatchNorm2d: a custom autograd function whose forward and backward each do one
// all-reduce per layer (a packed [sum, sum of squares, count] and [sum(dy), sum(dy * xhat)]).
// Sums are accumulated in double, as ATen's CPU batch norm does, so the variance from
// E[x^2] - E[x]^2 keeps float precision.
#include "pix2pix/models/sync_batch_norm.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "pix2pix/train/distributed.h"

namespace pix2pix {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor per_channel(const at::Tensor& values) { return values.view({1, -1, 1, 1}); }

struct SyncBatchNormFunction : torch::autograd::Function<SyncBatchNormFunction> {
  // `communicator` is a Communicator* carried as an integer: autograd keeps only IValues, and
  // the module owning the communicator outlives the graph built from its forward.
  static at::Tensor forward(AutogradContext* context, const at::Tensor& input,
                            const at::Tensor& weight, const at::Tensor& bias,
                            at::Tensor running_mean, at::Tensor running_var, double momentum,
                            double eps, int64_t communicator) {
    auto* group = reinterpret_cast<Communicator*>(communicator);
    const at::Tensor x = input.contiguous();
    const int64_t channels = x.size(1);
    at::Tensor stats = at::empty({2 * channels + 1}, x.options().dtype(at::kDouble));
    stats.narrow(0, 0, channels).copy_(at::sum(x, {0, 2, 3}, false, at::kDouble));
    stats.narrow(0, channels, channels).copy_(at::sum(x * x, {0, 2, 3}, false, at::kDouble));
    stats[2 * channels].fill_(static_cast<double>(x.numel() / channels));
    group->all_reduce_sum({stats});
    const double count = stats[2 * channels].item<double>();
    const at::Tensor mean = stats.narrow(0, 0, channels) / count;
    const at::Tensor variance =
        (stats.narrow(0, channels, channels) / count - mean * mean).clamp_min(0);
    const at::Tensor invstd = (variance + eps).rsqrt();
    // Running statistics as BatchNorm2d: the unbiased variance of the whole batch.
    running_mean.mul_(1 - momentum).add_(mean.to(running_mean.scalar_type()), momentum);
    running_var.mul_(1 - momentum)
        .add_((variance * (count / std::max(count - 1, 1.0))).to(running_var.scalar_type()),
              momentum);
    const at::Tensor xhat =
        (x - per_channel(mean.to(x.scalar_type()))) * per_channel(invstd.to(x.scalar_type()));
    context->save_for_backward({xhat, weight, invstd.to(x.scalar_type())});
    context->saved_data["communicator"] = communicator;
    context->saved_data["count"] = count;
    return xhat * per_channel(weight) + per_channel(bias);
  }

  static variable_list backward(AutogradContext* context, variable_list grad_outputs) {
    auto* group = reinterpret_cast<Communicator*>(context->saved_data["communicator"].toInt());
    const double count = context->saved_data["count"].toDouble();
    const variable_list saved = context->get_saved_variables();
    const at::Tensor& xhat = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor& invstd = saved[2];
    const at::Tensor grad = grad_outputs[0].contiguous();
    const int64_t channels = xhat.size(1);
    at::Tensor sums = at::empty({2 * channels}, grad.options().dtype(at::kDouble));
    sums.narrow(0, 0, channels).copy_(at::sum(grad, {0, 2, 3}, false, at::kDouble));
    sums.narrow(0, channels, channels).copy_(at::sum(grad * xhat, {0, 2, 3}, false, at::kDouble));
    // This rank's parameter gradients; data parallelism averages them with the other weights'.
    const at::Tensor grad_bias = sums.narrow(0, 0, channels).to(grad.scalar_type());
    const at::Tensor grad_weight = sums.narrow(0, channels, channels).to(grad.scalar_type());
    group->all_reduce_sum({sums});
    const at::Tensor mean_grad = (sums.narrow(0, 0, channels) / count).to(grad.scalar_type());
    const at::Tensor mean_grad_xhat =
        (sums.narrow(0, channels, channels) / count).to(grad.scalar_type());
    const at::Tensor grad_input =
        (grad - per_channel(mean_grad) - xhat * per_channel(mean_grad_xhat)) *
        per_channel(weight * invstd);
    return {grad_input,   grad_weight,  grad_bias,    at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

SyncBatchNorm2dImpl::SyncBatchNorm2dImpl(int64_t channels, double eps, double momentum)
    : channels(channels), eps(eps), momentum(momentum) {
  weight = register_parameter("weight", at::empty({channels}));
  bias = register_parameter("bias", at::empty({channels}));
  running_mean = register_buffer("running_mean", at::zeros({channels}));
  running_var = register_buffer("running_var", at::ones({channels}));
  num_batches_tracked = register_buffer("num_batches_tracked", at::zeros({}, at::kLong));
  reset_parameters();
}

void SyncBatchNorm2dImpl::reset_parameters() {
  at::NoGradGuard no_grad;
  weight.fill_(1);
  bias.zero_();
  running_mean.zero_();
  running_var.fill_(1);
  num_batches_tracked.zero_();
}

void SyncBatchNorm2dImpl::set_communicator(std::shared_ptr<Communicator> communicator) {
  communicator_ = std::move(communicator);
}

at::Tensor SyncBatchNorm2dImpl::forward(const at::Tensor& input) {
  TORCH_CHECK(input.dim() == 4, "SyncBatchNorm2d: expected N x C x H x W input, got ", input.dim(),
              " dimensions");
  if (is_training()) {
    at::NoGradGuard no_grad;
    num_batches_tracked.add_(1);
  }
  if (!is_training() || !communicator_ || communicator_->world_size() == 1)
    return at::batch_norm(input, weight, bias, running_mean, running_var, is_training(), momentum,
                          eps, /*cudnn_enabled=*/false);
  // bf16 activations are normalised in float32 (the statistics are sums in double anyway).
  return SyncBatchNormFunction::apply(input.to(at::kFloat), weight, bias, running_mean, running_var,
                                      momentum, eps, reinterpret_cast<int64_t>(communicator_.get()))
      .to(input.scalar_type());
}

int set_communicator(torch::nn::Module& network,
                     const std::shared_ptr<Communicator>& communicator) {
  int found = 0;
  for (const auto& module : network.modules(/*include_self=*/false))
    if (auto* norm = module->as<SyncBatchNorm2dImpl>()) {
      norm->set_communicator(communicator);
      ++found;
    }
  return found;
}

}  // namespace pix2pix
