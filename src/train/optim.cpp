#include "pix2pix/train/optim.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "names_table.h"
#include "pix2pix/error.h"
#include "train/adam_kernel.h"

namespace pix2pix {

namespace {
// Elements per task of the parallel passes: small tensors (biases, norms) stay on one thread.
constexpr int64_t kGrain = 1 << 16;

// A bfloat16 tensor's data as the raw bits the kernels read.
const uint16_t* bf16_bits(const at::Tensor& t) {
  return reinterpret_cast<const uint16_t*>(t.data_ptr<at::BFloat16>());
}
}  // namespace

Adam::Adam(std::vector<at::Tensor> parameters, AdamOptions options)
    : parameters_(std::move(parameters)), states_(parameters_.size()), options_(options) {
  for (const auto& p : parameters_)
    if (p.scalar_type() != at::kFloat || !p.is_contiguous() ||
        p.device() != parameters_.front().device())
      throw Error("Adam", "parameters must be contiguous float32 tensors on one device",
                  ErrorKind::kRuntime);
}

void Adam::step() {
  RECORD_FUNCTION("pix2pix::Adam::step", std::vector<c10::IValue>());
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    at::Tensor& p = parameters_[i];
    const at::Tensor& grad = p.grad();
    if (!grad.defined()) continue;
    ParamState& state = states_[i];
    if (state.step == 0) {
      state.exp_avg = at::zeros_like(p);
      state.exp_avg_sq = at::zeros_like(p);
    }
    ++state.step;
    if (options_.fused && p.device().is_cpu())
      fused_update(p, grad, state);
    else
      tensor_update(p, grad, state);
  }
}

void Adam::fused_update(at::Tensor& p, const at::Tensor& grad, ParamState& state) const {
  // float32, or bfloat16 as bf16 training leaves on convolution weights (read as they are);
  // anything else is widened first.
  const bool bf16 = grad.scalar_type() == at::kBFloat16;
  const at::Tensor g = bf16 ? grad.contiguous() : grad.to(at::kFloat).contiguous();
  float* param = p.data_ptr<float>();
  float* exp_avg = state.exp_avg.data_ptr<float>();
  float* exp_avg_sq = state.exp_avg_sq.data_ptr<float>();
  const detail::AdamStep hyper{options_.lr,  options_.beta1,        options_.beta2,
                               options_.eps, options_.weight_decay, state.step};
  // Every element is updated on its own, so splitting the range over threads changes nothing
  // in the result (one thread is memory-bound at about half the machine's bandwidth).
  const uint16_t* g16 = bf16 ? bf16_bits(g) : nullptr;
  const float* g32 = bf16 ? nullptr : g.data_ptr<float>();
  uint16_t* copy = state.bf16_copy.defined()
                       ? reinterpret_cast<uint16_t*>(state.bf16_copy.data_ptr<at::BFloat16>())
                       : nullptr;
  // Chosen here, not inside the threads: the first look at the CPU may throw (a bad
  // PIX2PIX_CPU_FEATURES), which must not happen inside an OpenMP region.
  const detail::AdamKernel kernel = detail::default_adam_kernel();
  at::parallel_for(0, p.numel(), kGrain, [&](int64_t begin, int64_t end) {
    const auto count = static_cast<size_t>(end - begin);
    uint16_t* copy_block = copy ? copy + begin : nullptr;
    if (g16)
      detail::adam_update(param + begin, g16 + begin, exp_avg + begin, exp_avg_sq + begin, count,
                          hyper, copy_block, kernel);
    else
      detail::adam_update(param + begin, g32 + begin, exp_avg + begin, exp_avg_sq + begin, count,
                          hyper, copy_block, kernel);
  });
  // Written through raw pointers: record the in-place change as torch's ops would (cached
  // bf16 copies and autograd's saved-tensor checks look at the version).
  p.unsafeGetTensorImpl()->bump_version();
  if (copy) state.bf16_copy.unsafeGetTensorImpl()->bump_version();
}

void Adam::tensor_update(at::Tensor& p, const at::Tensor& grad, ParamState& state) const {
  // torch.optim.Adam's single-tensor form, operation for operation.
  at::Tensor g = grad.to(at::kFloat);
  if (options_.weight_decay != 0) g = g.add(p, options_.weight_decay);
  state.exp_avg.mul_(options_.beta1).add_(g, 1.0 - options_.beta1);
  state.exp_avg_sq.mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
  const double step = static_cast<double>(state.step);
  const double bias_correction1 = 1.0 - std::pow(options_.beta1, step);
  const double bias_correction2 = 1.0 - std::pow(options_.beta2, step);
  const at::Tensor denom =
      (state.exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(options_.eps);
  p.addcdiv_(state.exp_avg, denom, -options_.lr / bias_correction1);
  if (state.bf16_copy.defined()) state.bf16_copy.copy_(p);
}

void Adam::set_bfloat16_copy(const at::Tensor& parameter, at::Tensor copy) {
  const auto it = std::find_if(parameters_.begin(), parameters_.end(),
                               [&](const at::Tensor& p) { return p.is_same(parameter); });
  if (it == parameters_.end())
    throw Error("Adam", "set_bfloat16_copy: not a parameter of this optimiser",
                ErrorKind::kRuntime);
  if (copy.scalar_type() != at::kBFloat16 || !copy.is_contiguous() ||
      copy.device() != parameter.device() || !copy.sizes().equals(parameter.sizes()))
    throw Error("Adam",
                "set_bfloat16_copy: the copy must be a contiguous bfloat16 tensor of the "
                "parameter's shape and device",
                ErrorKind::kRuntime);
  states_[static_cast<size_t>(it - parameters_.begin())].bf16_copy = std::move(copy);
}

void Adam::zero_grad() {
  for (auto& p : parameters_) p.mutable_grad() = at::Tensor();
}

bool Adam::gradients_finite() const {
  RECORD_FUNCTION("pix2pix::Adam::gradients_finite", std::vector<c10::IValue>());
  if (!parameters_.empty() && !parameters_.front().device().is_cpu()) {
    std::vector<at::Tensor> checks;  // one flag per gradient, fetched together
    for (const auto& p : parameters_)
      if (p.grad().defined()) checks.push_back(at::isfinite(p.grad()).all());
    return checks.empty() || at::stack(checks).all().item<bool>();
  }
  for (const auto& p : parameters_) {
    const at::Tensor& grad = p.grad();
    if (!grad.defined()) continue;
    const bool bf16 = grad.scalar_type() == at::kBFloat16;
    if ((bf16 || grad.scalar_type() == at::kFloat) && grad.is_contiguous() &&
        grad.device().is_cpu()) {
      const uint16_t* g16 = bf16 ? bf16_bits(grad) : nullptr;
      const float* g32 = bf16 ? nullptr : grad.data_ptr<float>();
      std::atomic<bool> finite{true};
      at::parallel_for(0, grad.numel(), kGrain, [&](int64_t begin, int64_t end) {
        const auto count = static_cast<size_t>(end - begin);
        if (!(g16 ? detail::all_finite(g16 + begin, count)
                  : detail::all_finite(g32 + begin, count)))
          finite = false;
      });
      if (!finite) return false;
    } else if (!at::isfinite(grad).all().item<bool>()) {
      return false;
    }
  }
  return true;
}

StateDict Adam::state() const {
  StateDict out;
  for (size_t i = 0; i < states_.size(); ++i) {
    if (states_[i].step == 0) continue;
    const std::string prefix = std::to_string(i) + ".";
    out.emplace_back(prefix + "exp_avg", states_[i].exp_avg.to(at::kCPU));
    out.emplace_back(prefix + "exp_avg_sq", states_[i].exp_avg_sq.to(at::kCPU));
    out.emplace_back(prefix + "step", at::scalar_tensor(states_[i].step, at::kLong));
  }
  return out;
}

void Adam::load_state(const StateDict& state, const std::string& source) {
  std::vector<ParamState> loaded(parameters_.size());
  for (const auto& [key, value] : state) {
    const auto dot = key.find('.');
    size_t index = 0;
    try {
      index = std::stoul(key.substr(0, dot));
    } catch (const std::exception&) {
      throw Error(source, "unexpected optimizer state key '" + key + "'");
    }
    if (dot == std::string::npos || index >= parameters_.size())
      throw Error(source, "optimizer state key '" + key + "' names no parameter");
    const std::string field = key.substr(dot + 1);
    if (field == "step") {
      loaded[index].step = value.item<int64_t>();
      continue;
    }
    if (!value.sizes().equals(parameters_[index].sizes()) || value.scalar_type() != at::kFloat)
      throw Error(source, "optimizer state '" + key + "' does not match its parameter's shape");
    const at::Device device = parameters_[index].device();
    if (field == "exp_avg")
      loaded[index].exp_avg = value.to(device).contiguous().clone();
    else if (field == "exp_avg_sq")
      loaded[index].exp_avg_sq = value.to(device).contiguous().clone();
    else
      throw Error(source, "unexpected optimizer state key '" + key + "'");
  }
  for (size_t i = 0; i < loaded.size(); ++i)
    if (loaded[i].step > 0 && (!loaded[i].exp_avg.defined() || !loaded[i].exp_avg_sq.defined()))
      throw Error(source, "optimizer state for parameter " + std::to_string(i) + " is incomplete");
  for (size_t i = 0; i < loaded.size(); ++i) loaded[i].bf16_copy = states_[i].bf16_copy;
  states_ = std::move(loaded);
}

template <>
const std::vector<std::string>& names<LrPolicy>() {
  static const std::vector<std::string> list = {"linear", "step", "cosine", "plateau"};
  return list;
}

LrPolicy parse_lr_policy(const std::string& name) {
  return detail::parse_name<LrPolicy>(name, "lr_policy", "policy");
}

std::string to_string(LrPolicy policy) { return detail::name_of(policy); }

LrSchedule::LrSchedule(ScheduleOptions options)
    : options_(options), best_(std::numeric_limits<double>::infinity()) {
  if (options.n_epochs < 0 || options.n_epochs_decay < 0)
    throw Error::option("n_epochs", "epoch counts must not be negative");
  if (options.policy == LrPolicy::kStep && options.lr_decay_epochs < 1)
    throw Error::option("lr_decay_epochs", "must be at least 1");
}

double LrSchedule::factor(int64_t epoch) const {
  // The reference's schedulers count epochs from 0 (LambdaLR's last_epoch); `k` is that count.
  const int64_t k = epoch - options_.epoch_count;
  switch (options_.policy) {
    case LrPolicy::kLinear:
      return 1.0 - static_cast<double>(
                       std::max<int64_t>(0, k + options_.epoch_count - options_.n_epochs)) /
                       static_cast<double>(options_.n_epochs_decay + 1);
    case LrPolicy::kStep:
      return std::pow(options_.gamma, static_cast<double>(k / options_.lr_decay_epochs));
    case LrPolicy::kCosine: {
      const double total = static_cast<double>(options_.n_epochs + options_.n_epochs_decay);
      return total <= 0 ? 1.0 : 0.5 * (1.0 + std::cos(M_PI * static_cast<double>(k) / total));
    }
    case LrPolicy::kPlateau:
      return plateau_factor_;
  }
  return 1.0;
}

void LrSchedule::observe(double metric) {
  if (options_.policy != LrPolicy::kPlateau) return;
  // ReduceLROnPlateau, mode min, relative threshold (torch's default threshold_mode "rel").
  if (metric < best_ * (1.0 - options_.plateau_threshold)) {
    best_ = metric;
    bad_epochs_ = 0;
  } else if (++bad_epochs_ > options_.plateau_patience) {
    plateau_factor_ *= options_.plateau_factor;
    bad_epochs_ = 0;
  }
}

void LrSchedule::load_state(const std::vector<double>& state) {
  if (state.size() != 3) throw Error("schedule state", "expected 3 values");
  best_ = state[0];
  bad_epochs_ = static_cast<int64_t>(state[1]);
  plateau_factor_ = state[2];
}

}  // namespace pix2pix
