#include "models/convolution.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/nn/functional/padding.h>

#include <algorithm>

#include "models/small_product.h"
#include "pix2pix/error.h"

namespace pix2pix::detail {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// y = conv_transpose2d(x, w) is the adjoint of z = conv2d(y, w): y is the input gradient of that
// convolution for the output gradient x (convolution_backward with only the input gradient), the
// gradient with respect to x is conv2d(gy, w), and the weight gradient is that convolution's
// weight gradient for input gy and output gradient x. No transposed kernel is involved, so
// everything runs on oneDNN instead of libtorch 1.13's slow_conv_transpose2d (docs/design.md,
// "Measured facts").
struct ConvTransposeAsGradient : torch::autograd::Function<ConvTransposeAsGradient> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            std::vector<int64_t> stride, std::vector<int64_t> padding,
                            std::vector<int64_t> output_padding) {
    const std::vector<int64_t> out_sizes = {
        x.size(0), weight.size(1),
        transposed_output_side(x.size(2), weight.size(2), stride[0], padding[0], output_padding[0]),
        transposed_output_side(x.size(3), weight.size(3), stride[1], padding[1],
                               output_padding[1])};
    // Only the shape of the convolution's input matters here; its values are never read.
    const at::Tensor shape_of_y = at::empty(out_sizes, x.options());
    const at::Tensor y = std::get<0>(at::convolution_backward(
        x.contiguous(), shape_of_y, weight, c10::nullopt, stride, padding, {1, 1},
        /*transposed=*/false, {0, 0}, /*groups=*/1, {true, false, false}));
    ctx->save_for_backward({x, weight});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& weight = saved[1];
    const std::vector<int64_t> stride = ctx->saved_data["stride"].toIntVector();
    const std::vector<int64_t> padding = ctx->saved_data["padding"].toIntVector();
    const at::Tensor gy = grad_outputs[0].contiguous();
    at::Tensor grad_x, grad_weight;
    if (ctx->needs_input_grad(0))
      grad_x = at::convolution(gy, weight, c10::nullopt, stride, padding, {1, 1}, false, {0, 0}, 1);
    if (ctx->needs_input_grad(1))
      grad_weight = std::get<1>(at::convolution_backward(x.contiguous(), gy, weight, c10::nullopt,
                                                         stride, padding, {1, 1}, false, {0, 0}, 1,
                                                         {false, true, false}));
    return {grad_x, grad_weight, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// sum = a + b in float32, element by element, in one pass (a: float32, possibly sum itself, or
// bfloat16; b: bfloat16, as autograd hands on a bfloat16 working copy's gradient). Not
// sum.copy_(a).add_(b): add_ with a bfloat16 operand first widens it into a fresh
// weight-sized float32 tensor, whose page faults cost 6-12 ms per step for the discriminator's
// 2M-element layer (profile_step bf16) against 0.3 ms for the pass itself.
void add_widened(at::Tensor& sum, const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor a_c = a.contiguous(), b_c = b.contiguous();
  float* out = sum.data_ptr<float>();
  const at::BFloat16* y = b_c.data_ptr<at::BFloat16>();
  auto run = [&](const auto* x) {
    at::parallel_for(0, sum.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        out[i] = static_cast<float>(x[i]) + static_cast<float>(y[i]);
    });
  };
  if (a_c.scalar_type() == at::kFloat)
    run(a_c.data_ptr<float>());
  else
    run(a_c.data_ptr<at::BFloat16>());
}

// Training in bfloat16: the convolution reads the bfloat16 working copy of a float32 weight, and
// the weight's gradient (bfloat16, as the convolution makes it) is left on the float32 weight
// as it is: no cast of the weights forward or of their gradients backward. pix2pix::Adam reads
// bfloat16 gradients directly. A weight used several times in one graph (the discriminator on
// fake and real pairs) or over several backward passes (accumulation) sums in float32, in the
// layer's reusable buffer `sum` (Bf16Cache::sum_; resized on first use).
struct Bf16WeightGradient : torch::autograd::Function<Bf16WeightGradient> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& weight,
                            const at::Tensor& working_copy, const at::Tensor& sum) {
    ctx->saved_data["weight"] = weight;
    ctx->saved_data["sum"] = sum;
    return working_copy;  // autograd returns it as a view carrying this node
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    at::Tensor weight = ctx->saved_data["weight"].toTensor();
    at::Tensor gradient = grad_outputs[0];
    if (gradient.defined()) {
      at::Tensor& sum = weight.mutable_grad();
      if (!sum.defined()) {
        sum = gradient.contiguous();
      } else if (sum.scalar_type() != at::kFloat) {
        at::Tensor buffer = ctx->saved_data["sum"].toTensor();
        if (!buffer.sizes().equals(weight.sizes())) buffer.resize_(weight.sizes());
        add_widened(buffer, sum, gradient);
        sum = buffer;
      } else {
        add_widened(sum, sum, gradient);
      }
    }
    return {at::Tensor(), at::Tensor(), at::Tensor()};  // nothing more for autograd to accumulate
  }
};

std::vector<int64_t> to_vector(const torch::ExpandingArray<2>& a) { return {(*a)[0], (*a)[1]}; }

bool is_bf16(const ComputeOptions& compute) { return compute.precision == Precision::kBFloat16; }

// True when x's longer side is at most max_side: the im2col + matrix product form pays there
// (ComputeOptions::matmul_max_side).
bool small_input(const at::Tensor& x, int64_t max_side) {
  return x.dim() == 4 && std::max(x.size(2), x.size(3)) <= max_side;
}

// Adds a per-channel bias to an N x C x H x W tensor (no-op for an undefined bias).
at::Tensor add_bias(const at::Tensor& y, const at::Tensor& bias) {
  return bias.defined() ? y + bias.view({1, -1, 1, 1}) : y;
}

// A bfloat16 layer's output: without a bias, the bfloat16 result as it is (activations stay
// bfloat16 up to the next layer; batch norm takes them with its float32 parameters); with one
// (the networks' first and last layers, and all layers under instance norm), float32 plus the
// float32 bias, so that outputs and losses see no second rounding.
at::Tensor bf16_output(const at::Tensor& y, const at::Tensor& bias) {
  return bias.defined() ? add_bias(y.to(at::kFloat), bias) : y;
}

// The matrix-product forms below multiply 2-D matrices only (samples side by side along the
// columns), arranged so that every weight and weight gradient is a contiguous matrix: at::mm
// and small_product take transposed operands as they are, and no weight-sized copy is made
// forward or backward. small_products: bfloat16 products with a small dimension on
// small_product (ComputeOptions::small_products).

// (N, C, L) -> (C, N*L): a view for one sample.
at::Tensor samples_side_by_side(const at::Tensor& x) {
  // view, not select: a view's gradient is a view too (select's would be a zero-filled copy).
  return x.size(0) == 1 ? x.view({x.size(1), x.size(2)})
                        : x.permute({1, 0, 2}).reshape({x.size(1), -1});
}

// conv2d(x, weight) (no bias, groups 1) as im2col and a matrix product; differentiable.
at::Tensor conv2d_as_matmul(const at::Tensor& x, const at::Tensor& weight,
                            const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                            const std::vector<int64_t>& dilation, bool small_products) {
  const int64_t n = x.size(0), out = weight.size(0);
  const int64_t kh = weight.size(2), kw = weight.size(3);
  const int64_t ho = (x.size(2) + 2 * padding[0] - dilation[0] * (kh - 1) - 1) / stride[0] + 1;
  const int64_t wo = (x.size(3) + 2 * padding[1] - dilation[1] * (kw - 1) - 1) / stride[1] + 1;
  const at::Tensor columns = at::im2col(x, {kh, kw}, dilation, padding, stride);  // N, C*K, L
  const at::Tensor y =
      product(weight.view({out, -1}), samples_side_by_side(columns), small_products);  // O, N*L
  // _unsafe_view: the result is not an autograd view of the product, so the in-place
  // activations that follow need no view bookkeeping (as torch's own matmul does).
  return n == 1 ? at::_unsafe_view(y, {1, out, ho, wo})
                : y.view({out, n, ho, wo}).permute({1, 0, 2, 3}).contiguous();
}

// conv_transpose2d(x, weight) (no bias, groups 1, dilation 1) as a matrix product and col2im.
at::Tensor conv_transpose2d_as_matmul(const at::Tensor& x, const at::Tensor& weight,
                                      const std::vector<int64_t>& stride,
                                      const std::vector<int64_t>& padding,
                                      const std::vector<int64_t>& output_padding,
                                      bool small_products) {
  const int64_t n = x.size(0), in = x.size(1), l = x.size(2) * x.size(3);
  const int64_t kh = weight.size(2), kw = weight.size(3);
  const int64_t ho =
      transposed_output_side(x.size(2), kh, stride[0], padding[0], output_padding[0]);
  const int64_t wo =
      transposed_output_side(x.size(3), kw, stride[1], padding[1], output_padding[1]);
  // Rows are pixels, so that the weight's gradient (x times the columns' gradient) comes out
  // as a contiguous C_in x (C_out*K) matrix.
  const at::Tensor rows = product(samples_side_by_side(x.reshape({n, in, l})).t(),
                                  weight.view({in, -1}), small_products);  // N*L, C_out*K
  const at::Tensor columns = rows.view({n, l, -1}).transpose(1, 2);        // N, C_out*K, L
  return at::col2im(columns, {ho, wo}, {kh, kw}, {1, 1}, padding, stride);
}
}  // namespace

int64_t transposed_output_side(int64_t input, int64_t kernel, int64_t stride, int64_t padding,
                               int64_t output_padding) {
  return (input - 1) * stride - 2 * padding + kernel + output_padding;
}

at::Tensor conv_transpose2d_as_gradient(const at::Tensor& x, const at::Tensor& weight,
                                        std::vector<int64_t> stride, std::vector<int64_t> padding,
                                        std::vector<int64_t> output_padding) {
  return ConvTransposeAsGradient::apply(x, weight, std::move(stride), std::move(padding),
                                        std::move(output_padding));
}

at::Tensor Bf16Cache::current(const at::Tensor& parameter) {
  const std::lock_guard<std::mutex> lock(mutex_);
  const bool stale =
      !copy_.defined() || data_ != parameter.data_ptr() ||
      static_cast<int64_t>(parameter._version()) - static_cast<int64_t>(copy_._version()) !=
          version_offset_;
  if (stale) {
    at::NoGradGuard no_grad;
    if (copy_.defined() && copy_.sizes() == parameter.sizes())
      copy_.copy_(parameter);  // refreshed in place: no allocation (nothing saved it since)
    else
      copy_ = parameter.to(at::kBFloat16).contiguous();
    data_ = parameter.data_ptr();
    version_offset_ =
        static_cast<int64_t>(parameter._version()) - static_cast<int64_t>(copy_._version());
  }
  return copy_;
}

at::Tensor Bf16Cache::get(const at::Tensor& parameter) {
  const at::Tensor copy = current(parameter);
  if (at::GradMode::is_enabled() && parameter.requires_grad()) {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      if (!sum_.defined()) sum_ = at::empty({0}, parameter.options().dtype(at::kFloat));
    }
    return Bf16WeightGradient::apply(parameter, copy, sum_);
  }
  return copy;
}

at::Tensor Conv2dImpl::forward(const at::Tensor& input) {
  const auto* explicit_padding = c10::get_if<torch::ExpandingArray<2>>(&options.padding());
  if (!is_bf16(compute)) {
    // Float32, TransposedConv::kAuto: small maps as im2col + one matrix product (within float
    // rounding of the reference's numbers), as bf16 does.
    if (input.is_cpu() && compute.transposed == TransposedConv::kAuto && options.groups() == 1 &&
        explicit_padding && c10::get_if<torch::enumtype::kZeros>(&options.padding_mode()) &&
        small_input(input, compute.matmul_max_side_float32))
      return add_bias(
          conv2d_as_matmul(input, weight, to_vector(options.stride()), to_vector(*explicit_padding),
                           to_vector(options.dilation()), false),
          bias);
    // Float32 outside kNative: oneDNN called directly, the weight packed once per change.
    if (input.is_cpu() && compute.transposed != TransposedConv::kNative && compute.onednn_direct &&
        onednn_direct_applies(input, options.groups()) && explicit_padding &&
        c10::get_if<torch::enumtype::kZeros>(&options.padding_mode()))
      return add_bias(onednn_conv2d(input, weight, packed_, to_vector(options.stride()),
                                    to_vector(*explicit_padding), to_vector(options.dilation())),
                      bias);
    return torch::nn::Conv2dImpl::forward(input);
  }
  // bfloat16: pad (if not zeros) and add the bias in float32, convolve in bfloat16.
  at::Tensor x = input;
  if (!explicit_padding)
    throw Error("Conv2d", "bf16 needs explicit padding sizes", ErrorKind::kRuntime);
  std::vector<int64_t> padding = to_vector(*explicit_padding);
  if (!c10::get_if<torch::enumtype::kZeros>(&options.padding_mode())) {
    namespace F = torch::nn::functional;
    F::PadFuncOptions pad_options(_reversed_padding_repeated_twice);
    if (c10::get_if<torch::enumtype::kReflect>(&options.padding_mode()))
      pad_options.mode(torch::kReflect);
    else if (c10::get_if<torch::enumtype::kReplicate>(&options.padding_mode()))
      pad_options.mode(torch::kReplicate);
    else
      pad_options.mode(torch::kCircular);
    // libtorch 1.13 has no bfloat16 reflection or replication padding: pad in float32.
    x = F::pad(x.scalar_type() == at::kBFloat16 ? x.to(at::kFloat) : x, pad_options);
    padding = {0, 0};
  }
  const auto stride = to_vector(options.stride());
  const auto dilation = to_vector(options.dilation());
  const at::Tensor x16 = x.to(at::kBFloat16);
  const at::Tensor w16 = weight16_.get(weight);
  at::Tensor y;
  // The forms below are the CPU's; on a GPU, cuDNN's own bfloat16 convolution.
  if (!x16.is_cpu())
    y = at::conv2d(x16, w16, {}, stride, padding, dilation, options.groups());
  else if (options.groups() == 1 && small_input(x, compute.matmul_max_side))
    y = conv2d_as_matmul(x16, w16, stride, padding, dilation, compute.small_products);
  else if (compute.onednn_direct && onednn_direct_applies(x16, options.groups()))
    y = onednn_conv2d(x16, w16, packed_, stride, padding, dilation);
  else
    y = at::conv2d(x16, w16, {}, stride, padding, dilation, options.groups());
  return bf16_output(y, bias);
}

at::Tensor ConvTranspose2dImpl::forward(const at::Tensor& input,
                                        const c10::optional<at::IntArrayRef>& output_size) {
  const bool plain_layer = options.groups() == 1 && (*options.dilation())[0] == 1 &&
                           (*options.dilation())[1] == 1 &&
                           c10::get_if<torch::enumtype::kZeros>(&options.padding_mode());
  const auto stride = to_vector(options.stride());
  const auto padding = to_vector(c10::get<torch::ExpandingArray<2>>(options.padding()));
  const auto output_padding = to_vector(options.output_padding());
  if (is_bf16(compute)) {
    if (output_size || !plain_layer)
      throw Error("ConvTranspose2d", "bf16 supports groups 1, dilation 1, zero padding only",
                  ErrorKind::kRuntime);
    const at::Tensor x16 = input.to(at::kBFloat16);
    const at::Tensor w16 = weight16_.get(weight);
    at::Tensor y;
    if (!x16.is_cpu())  // libtorch 1.13's wrong bfloat16 conv_transpose2d is its CPU kernel
      y = at::conv_transpose2d(x16, w16, {}, stride, padding, output_padding);
    else if (small_input(input, compute.matmul_max_side_transposed))
      y = conv_transpose2d_as_matmul(x16, w16, stride, padding, output_padding,
                                     compute.small_products);
    else if (compute.onednn_direct && onednn_direct_applies(x16, 1))
      y = onednn_conv_transpose2d(x16, w16, packed_, stride, padding, output_padding);
    else
      y = conv_transpose2d_as_gradient(x16, w16, stride, padding, output_padding);
    return bf16_output(y, bias);
  }
  // Float32, TransposedConv::kAuto: small maps as a matrix product and col2im (within float
  // rounding of the reference's numbers; measured faster in the training step here than both
  // slow_conv_transpose2d and the gradient form), larger ones as convolution gradients.
  if (!input.is_cpu()) return torch::nn::ConvTranspose2dImpl::forward(input, output_size);
  if (compute.transposed == TransposedConv::kAuto && plain_layer && !output_size &&
      small_input(input, compute.matmul_max_side_transposed))
    return add_bias(
        conv_transpose2d_as_matmul(input, weight, stride, padding, output_padding, false), bias);
  const bool gradient_form =
      compute.transposed == TransposedConv::kGradient ||
      (compute.transposed == TransposedConv::kAuto && input.dim() == 4 &&
       input.size(2) >= compute.gradient_min_side && input.size(3) >= compute.gradient_min_side);
  if (!gradient_form || output_size || !plain_layer)
    return torch::nn::ConvTranspose2dImpl::forward(input, output_size);
  if (compute.onednn_direct && onednn_direct_applies(input, 1))
    return add_bias(
        onednn_conv_transpose2d(input, weight, packed_, stride, padding, output_padding), bias);
  return add_bias(conv_transpose2d_as_gradient(input, weight, stride, padding, output_padding),
                  bias);
}

std::vector<std::pair<at::Tensor, at::Tensor>> bf16_working_copies(torch::nn::Module& module) {
  std::vector<std::pair<at::Tensor, at::Tensor>> pairs;
  for_each_convolution(module, [&](auto& layer) {
    if (is_bf16(layer.compute)) pairs.emplace_back(layer.weight, layer.bf16_weight());
  });
  return pairs;
}

}  // namespace pix2pix::detail
