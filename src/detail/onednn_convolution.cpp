#include "detail/onednn_convolution.h"

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>

#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <unordered_map>
#include <utility>

#include "pix2pix/error.h"

namespace pix2pix::detail {

using dnnl::memory;

struct OnednnWeights::Packed {
  at::Tensor buffer;  ///< bytes in `desc`'s layout
  const void* source = nullptr;
  uint32_t version = 0;
  memory::desc desc;
};

OnednnWeights::OnednnWeights() = default;
OnednnWeights::~OnednnWeights() = default;
OnednnWeights::OnednnWeights(const OnednnWeights&) {}
OnednnWeights& OnednnWeights::operator=(const OnednnWeights&) {
  forward_.reset();
  backward_data_.reset();
  return *this;
}

// The two packed layouts of a layer, for the autograd functions below.
struct OnednnAccess {
  static std::unique_ptr<OnednnWeights::Packed>& forward(OnednnWeights& w) { return w.forward_; }
  static std::unique_ptr<OnednnWeights::Packed>& backward_data(OnednnWeights& w) {
    return w.backward_data_;
  }
};

bool onednn_direct_applies(const at::Tensor& x, int64_t groups) {
  return groups == 1 && x.dim() == 4 && x.device().is_cpu() && x.scalar_type() == at::kBFloat16;
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using Dims = std::vector<int64_t>;

const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// One convolution's geometry: input (src) sizes, weight sizes, stride, padding, dilation (4, 4,
// 2, 2, 2 numbers). Everything else follows from it.
using Key = Dims;

Dims src_sizes(const Key& k) { return {k[0], k[1], k[2], k[3]}; }
Dims weight_sizes(const Key& k) { return {k[4], k[5], k[6], k[7]}; }
Dims stride_of(const Key& k) { return {k[8], k[9]}; }
Dims padding_of(const Key& k) { return {k[10], k[11]}; }
Dims dilation_of(const Key& k) { return {k[12], k[13]}; }
Dims dst_sizes(const Key& k) {
  Dims d = {k[0], k[4], 0, 0};
  for (int i = 0; i < 2; ++i)
    d[2 + i] = (k[2 + i] + 2 * k[10 + i] - k[12 + i] * (k[6 + i] - 1) - 1) / k[8 + i] + 1;
  return d;
}

// The three primitives of one convolution, with the layouts oneDNN chose for bfloat16 on this
// machine (the plain layouts are libtorch's contiguous tensors).
struct Primitives {
  memory::desc src_plain, weights_plain, dst_plain;
  dnnl::convolution_forward::primitive_desc forward_pd;
  dnnl::convolution_backward_data::primitive_desc backward_data_pd;
  dnnl::convolution_backward_weights::primitive_desc backward_weights_pd;
  dnnl::convolution_forward forward;
  dnnl::convolution_backward_data backward_data;
  dnnl::convolution_backward_weights backward_weights;

  explicit Primitives(const Key& key) {
    using tag = memory::format_tag;
    const auto bf16 = memory::data_type::bf16;
    const Dims src = src_sizes(key), weights = weight_sizes(key), dst = dst_sizes(key);
    src_plain = memory::desc(src, bf16, tag::nchw);
    weights_plain = memory::desc(weights, bf16, tag::oihw);
    dst_plain = memory::desc(dst, bf16, tag::nchw);
    // Activations in oneDNN's blocked layout (its choice), except for stride-1 convolutions
    // with outputs under 32 a side (the PatchGAN's last two layers at 256x256): in
    // channels-last, oneDNN runs its brgemm kernel there. Measured (2-core Zen 5, bf16,
    // milliseconds, blocked -> channels-last): 256->512 4x4 on 32x32 forward 6.4 -> 4.5,
    // backward equal; 512->1 on 31x31 backward-data 0.27 -> 0.04. Stride-1 layers on larger
    // maps (3x3 and 4x4 at 64 and 128 a side) and the stride-2 layers were equal or slower.
    // The brgemm kernel sums in another order: results may differ by one bfloat16 rounding.
    const bool channels_last = key[8] == 1 && key[9] == 1 && dst[2] < 32 && dst[3] < 32;
    const tag activations = channels_last ? tag::nhwc : tag::any;
    const memory::desc src_any(src, bf16, activations), weights_any(weights, bf16, tag::any),
        dst_any(dst, bf16, activations);
    const Dims stride = stride_of(key), padding = padding_of(key);
    Dims dilates = dilation_of(key);
    for (auto& d : dilates) d -= 1;  // oneDNN counts dilation from 0
    // Scratch memory comes with each call (below), so that one primitive may run on several
    // threads at once.
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const auto direct = dnnl::algorithm::convolution_direct;
    forward_pd = dnnl::convolution_forward::primitive_desc(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, direct, src_any,
                                        weights_any, dst_any, stride, dilates, padding, padding),
        attr, cpu_engine());
    backward_data_pd = dnnl::convolution_backward_data::primitive_desc(
        dnnl::convolution_backward_data::desc(direct, src_any, weights_any, dst_any, stride,
                                              dilates, padding, padding),
        attr, cpu_engine(), forward_pd);
    backward_weights_pd = dnnl::convolution_backward_weights::primitive_desc(
        dnnl::convolution_backward_weights::desc(direct, src_any, weights_any, dst_any, stride,
                                                 dilates, padding, padding),
        attr, cpu_engine(), forward_pd);
    forward = dnnl::convolution_forward(forward_pd);
    backward_data = dnnl::convolution_backward_data(backward_data_pd);
    backward_weights = dnnl::convolution_backward_weights(backward_weights_pd);
  }

  /// The reorder from layout `from` to `to` (one of this convolution's few pairs), made once.
  dnnl::reorder reorder(const memory::desc& from, const memory::desc& to) const {
    const std::lock_guard<std::mutex> lock(reorders_mutex);
    for (const auto& [pair, primitive] : reorders)
      if (pair.first == from && pair.second == to) return primitive;
    reorders.emplace_back(std::make_pair(from, to), dnnl::reorder(dnnl::reorder::primitive_desc(
                                                        cpu_engine(), from, cpu_engine(), to)));
    return reorders.back().second;
  }

 private:
  mutable std::mutex reorders_mutex;
  mutable std::vector<std::pair<std::pair<memory::desc, memory::desc>, dnnl::reorder>> reorders;
};

// Primitives are made once per geometry and process (creating one costs far more than a call).
const Primitives& primitives(const Key& key) {
  static std::mutex mutex;
  static std::map<Key, std::unique_ptr<Primitives>> made;
  const std::lock_guard<std::mutex> lock(mutex);
  auto& slot = made[key];
  if (!slot) {
    try {
      slot = std::make_unique<Primitives>(key);
    } catch (const dnnl::error& e) {
      made.erase(key);
      throw Error("convolution",
                  std::string("oneDNN has no bfloat16 convolution for this shape: ") + e.what(),
                  ErrorKind::kRuntime);
    }
  }
  return *slot;
}

at::Tensor bytes(const memory::desc& desc) {
  return at::empty({static_cast<int64_t>(desc.get_size())}, at::TensorOptions().dtype(at::kByte));
}

memory wrap(const memory::desc& desc, const at::Tensor& t) {
  return memory(desc, cpu_engine(), t.data_ptr());
}

void reorder(const Primitives& p, const memory::desc& from, const at::Tensor& source,
             const memory::desc& to, const at::Tensor& target) {
  memory in = wrap(from, source), out = wrap(to, target);
  dnnl::stream stream(cpu_engine());
  p.reorder(from, to).execute(stream, in, out);
  stream.wait();
}

// `t`, held in layout `from`, in layout `to`: t itself when they agree, else a reordered copy.
at::Tensor relayout(const Primitives& p, const at::Tensor& t, const memory::desc& from,
                    const memory::desc& to) {
  if (from == to) return t;
  at::Tensor out = bytes(to);
  reorder(p, from, t, to, out);
  return out;
}

// A plain bfloat16 contiguous tensor of `sizes` that a primitive writes in layout `layout`:
// directly when that is the plain layout, else through a buffer reordered by finish().
struct Result {
  at::Tensor plain, buffer;
  memory::desc plain_desc, layout;
  Result(const Dims& sizes, const memory::desc& plain_layout, const memory::desc& written)
      : plain(at::empty(sizes, at::TensorOptions().dtype(at::kBFloat16))),
        plain_desc(plain_layout),
        layout(written) {
    buffer = plain_desc == layout ? plain : bytes(layout);
  }
  memory target() const { return wrap(layout, buffer); }
  at::Tensor finish(const Primitives& p) {
    if (!buffer.is_same(plain)) reorder(p, layout, buffer, plain_desc, plain);
    return plain;
  }
};

// Runs `primitive` with `args` and scratch memory of `scratch`'s size (a buffer per thread, kept
// and grown as needed: the calls of one thread never overlap).
void execute(const dnnl::primitive& primitive, const memory::desc& scratch,
             std::unordered_map<int, memory> args) {
  if (scratch.get_size() > 0) {
    thread_local at::Tensor scratchpad;
    if (!scratchpad.defined() || scratchpad.numel() < static_cast<int64_t>(scratch.get_size()))
      scratchpad = bytes(scratch);
    args.emplace(DNNL_ARG_SCRATCHPAD, wrap(scratch, scratchpad));
  }
  dnnl::stream stream(cpu_engine());
  primitive.execute(stream, args);
  stream.wait();
}

// The bfloat16 working copy `weight` (plain layout) in layout `to`, packed into `slot` when the
// copy changed since (storage, version or layout). A buffer still referenced elsewhere (saved
// by a graph) is left as it is and a new one made.
at::Tensor packed(const Primitives& p, std::unique_ptr<OnednnWeights::Packed>& slot,
                  const at::Tensor& weight, const memory::desc& plain, const memory::desc& to) {
  if (plain == to) return weight.detach();
  if (!slot) slot = std::make_unique<OnednnWeights::Packed>();
  OnednnWeights::Packed& w = *slot;
  if (w.buffer.defined() && w.source == weight.data_ptr() && w.version == weight._version() &&
      w.desc == to)
    return w.buffer;
  if (!w.buffer.defined() || w.buffer.use_count() > 1 ||
      w.buffer.numel() != static_cast<int64_t>(to.get_size()))
    w.buffer = bytes(to);
  reorder(p, plain, weight, to, w.buffer);
  w.source = weight.data_ptr();
  w.version = weight._version();
  w.desc = to;
  return w.buffer;
}

at::Tensor as_bf16_contiguous(const at::Tensor& t) {
  return t.scalar_type() == at::kBFloat16 ? t.contiguous() : t.to(at::kBFloat16).contiguous();
}

// The arguments of the aten operations these calls stand for, for profilers and
// pix2pix::count_convolution_flops (only built while a RecordFunction callback is active).
at::Tensor meta(const Dims& sizes) {
  return at::empty(sizes, at::TensorOptions().device(at::kMeta).dtype(at::kBFloat16));
}
std::vector<c10::IValue> convolution_args(const at::Tensor& input, const Key& key) {
  return {input,           meta(weight_sizes(key)), c10::IValue(), stride_of(key),
          padding_of(key), dilation_of(key),        false,         Dims{0, 0},
          int64_t{1}};
}
std::vector<c10::IValue> convolution_backward_args(const at::Tensor& grad_output,
                                                   const at::Tensor& input, const Key& key,
                                                   bool input_grad, bool weight_grad) {
  return {grad_output,
          input,
          meta(weight_sizes(key)),
          c10::IValue(),
          stride_of(key),
          padding_of(key),
          dilation_of(key),
          false,
          Dims{0, 0},
          int64_t{1},
          c10::List<bool>({input_grad, weight_grad, false})};
}

// y = conv2d(x, w): forward on oneDNN's forward kernel; backward: the input gradient on the
// backward-data kernel, the weight gradient on the backward-weights kernel, both from one
// reorder of the output gradient; x stays in the kernels' layout from the forward.
struct Conv2dFunction : torch::autograd::Function<Conv2dFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            OnednnWeights* weights, Key key, bool record, bool input_grad) {
    const Primitives& p = primitives(key);
    RECORD_FUNCTION("pix2pix::convolution", convolution_args(x, key));
    const at::Tensor xc = as_bf16_contiguous(x);
    const at::Tensor src = relayout(p, xc, p.src_plain, p.forward_pd.src_desc());
    const at::Tensor w = packed(p, OnednnAccess::forward(*weights), weight, p.weights_plain,
                                p.forward_pd.weights_desc());
    Result y(dst_sizes(key), p.dst_plain, p.forward_pd.dst_desc());
    execute(p.forward, p.forward_pd.scratchpad_desc(),
            {{DNNL_ARG_SRC, wrap(p.forward_pd.src_desc(), src)},
             {DNNL_ARG_WEIGHTS, wrap(p.forward_pd.weights_desc(), w)},
             {DNNL_ARG_DST, y.target()}});
    if (record) {
      ctx->save_for_backward({x, weight});  // as libtorch's convolution saves them
      ctx->saved_data["src"] = src;
      if (input_grad)
        ctx->saved_data["weights"] = packed(p, OnednnAccess::backward_data(*weights), weight,
                                            p.weights_plain, p.backward_data_pd.weights_desc());
      ctx->saved_data["key"] = key;
    }
    return y.finish(p);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const Key key = ctx->saved_data["key"].toIntVector();
    const Primitives& p = primitives(key);
    const bool input_grad = ctx->needs_input_grad(0), weight_grad = ctx->needs_input_grad(1);
    const at::Tensor gy = as_bf16_contiguous(grad_outputs[0]);
    if (at::GradMode::is_enabled()) {
      // A gradient that is itself differentiated (create_graph: the WGAN-GP penalty): aten's
      // differentiable operations on the saved inputs.
      const auto saved = ctx->get_saved_variables();
      auto [gx, gw, unused] = at::convolution_backward(
          gy, saved[0], saved[1], c10::nullopt, stride_of(key), padding_of(key), dilation_of(key),
          false, {0, 0}, 1, {input_grad, weight_grad, false});
      return {gx, gw, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
    RECORD_FUNCTION(
        "pix2pix::convolution_backward",
        convolution_backward_args(gy, meta(src_sizes(key)), key, input_grad, weight_grad));
    const memory::desc& diff_dst_desc =
        input_grad ? p.backward_data_pd.diff_dst_desc() : p.backward_weights_pd.diff_dst_desc();
    const at::Tensor diff_dst = relayout(p, gy, p.dst_plain, diff_dst_desc);
    at::Tensor gx, gw;
    if (input_grad) {
      Result out(src_sizes(key), p.src_plain, p.backward_data_pd.diff_src_desc());
      execute(p.backward_data, p.backward_data_pd.scratchpad_desc(),
              {{DNNL_ARG_DIFF_DST, wrap(diff_dst_desc, diff_dst)},
               {DNNL_ARG_WEIGHTS,
                wrap(p.backward_data_pd.weights_desc(), ctx->saved_data["weights"].toTensor())},
               {DNNL_ARG_DIFF_SRC, out.target()}});
      gx = out.finish(p);
    }
    if (weight_grad) {
      const auto& pd = p.backward_weights_pd;
      const at::Tensor src =
          relayout(p, ctx->saved_data["src"].toTensor(), p.forward_pd.src_desc(), pd.src_desc());
      const at::Tensor dd = relayout(p, diff_dst, diff_dst_desc, pd.diff_dst_desc());
      Result out(weight_sizes(key), p.weights_plain, pd.diff_weights_desc());
      execute(p.backward_weights, pd.scratchpad_desc(),
              {{DNNL_ARG_SRC, wrap(pd.src_desc(), src)},
               {DNNL_ARG_DIFF_DST, wrap(pd.diff_dst_desc(), dd)},
               {DNNL_ARG_DIFF_WEIGHTS, out.target()}});
      gw = out.finish(p);
    }
    return {gx, gw, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// y = conv_transpose2d(x, w) as the input gradient of conv2d(., w) (backward-data kernel, x in
// the role of the output gradient); backward: the input gradient is that convolution's forward
// of gy, the weight gradient its backward-weights with gy as input and x as output gradient, both
// from one reorder of gy; x stays in the kernels' layout from the forward.
struct ConvTranspose2dFunction : torch::autograd::Function<ConvTranspose2dFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            OnednnWeights* weights, Key key, bool record, bool input_grad) {
    const Primitives& p = primitives(key);
    const Dims y_sizes = src_sizes(key);
    RECORD_FUNCTION("pix2pix::convolution_backward",
                    convolution_backward_args(x, meta(y_sizes), key, true, false));
    const at::Tensor xc = as_bf16_contiguous(x);
    const auto& pd = p.backward_data_pd;
    const at::Tensor diff_dst = relayout(p, xc, p.dst_plain, pd.diff_dst_desc());
    const at::Tensor w = packed(p, OnednnAccess::backward_data(*weights), weight, p.weights_plain,
                                pd.weights_desc());
    Result y(y_sizes, p.src_plain, pd.diff_src_desc());
    execute(p.backward_data, pd.scratchpad_desc(),
            {{DNNL_ARG_DIFF_DST, wrap(pd.diff_dst_desc(), diff_dst)},
             {DNNL_ARG_WEIGHTS, wrap(pd.weights_desc(), w)},
             {DNNL_ARG_DIFF_SRC, y.target()}});
    if (record) {
      ctx->save_for_backward({x, weight});  // as libtorch's convolution saves them
      ctx->saved_data["diff_dst"] = diff_dst;
      if (input_grad)
        ctx->saved_data["weights"] = packed(p, OnednnAccess::forward(*weights), weight,
                                            p.weights_plain, p.forward_pd.weights_desc());
      ctx->saved_data["key"] = key;
    }
    return y.finish(p);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const Key key = ctx->saved_data["key"].toIntVector();
    const Primitives& p = primitives(key);
    const bool input_grad = ctx->needs_input_grad(0), weight_grad = ctx->needs_input_grad(1);
    const at::Tensor gy = as_bf16_contiguous(grad_outputs[0]);
    if (at::GradMode::is_enabled()) {
      // Differentiated again (create_graph): aten's differentiable operations, as
      // conv_transpose2d_as_gradient's backward.
      const auto saved = ctx->get_saved_variables();
      at::Tensor gx, gw;
      if (input_grad)
        gx = at::convolution(gy, saved[1], c10::nullopt, stride_of(key), padding_of(key), {1, 1},
                             false, {0, 0}, 1);
      if (weight_grad)
        gw = std::get<1>(at::convolution_backward(saved[0].contiguous(), gy, saved[1], c10::nullopt,
                                                  stride_of(key), padding_of(key), {1, 1}, false,
                                                  {0, 0}, 1, {false, true, false}));
      return {gx, gw, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
    const memory::desc& src_desc =
        input_grad ? p.forward_pd.src_desc() : p.backward_weights_pd.src_desc();
    const at::Tensor src = relayout(p, gy, p.src_plain, src_desc);
    at::Tensor gx, gw;
    if (input_grad) {
      RECORD_FUNCTION("pix2pix::convolution", convolution_args(gy, key));
      Result out(dst_sizes(key), p.dst_plain, p.forward_pd.dst_desc());
      execute(p.forward, p.forward_pd.scratchpad_desc(),
              {{DNNL_ARG_SRC, wrap(src_desc, src)},
               {DNNL_ARG_WEIGHTS,
                wrap(p.forward_pd.weights_desc(), ctx->saved_data["weights"].toTensor())},
               {DNNL_ARG_DST, out.target()}});
      gx = out.finish(p);
    }
    if (weight_grad) {
      const auto& pd = p.backward_weights_pd;
      const at::Tensor s = relayout(p, src, src_desc, pd.src_desc());
      const at::Tensor dd = relayout(p, ctx->saved_data["diff_dst"].toTensor(),
                                     p.backward_data_pd.diff_dst_desc(), pd.diff_dst_desc());
      RECORD_FUNCTION("pix2pix::convolution_backward",
                      convolution_backward_args(meta(dst_sizes(key)), gy, key, false, true));
      Result out(weight_sizes(key), p.weights_plain, pd.diff_weights_desc());
      execute(p.backward_weights, pd.scratchpad_desc(),
              {{DNNL_ARG_SRC, wrap(pd.src_desc(), s)},
               {DNNL_ARG_DIFF_DST, wrap(pd.diff_dst_desc(), dd)},
               {DNNL_ARG_DIFF_WEIGHTS, out.target()}});
      gw = out.finish(p);
    }
    return {gx, gw, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

Key make_key(const Dims& src, const at::Tensor& weight, const Dims& stride, const Dims& padding,
             const Dims& dilation) {
  if (src.size() != 4 || weight.dim() != 4 || stride.size() != 2 || padding.size() != 2 ||
      dilation.size() != 2)
    throw Error("convolution", "oneDNN path needs 2-D convolutions", ErrorKind::kRuntime);
  return {src[0],         src[1],         src[2],         src[3],     weight.size(0),
          weight.size(1), weight.size(2), weight.size(3), stride[0],  stride[1],
          padding[0],     padding[1],     dilation[0],    dilation[1]};
}

bool records(const at::Tensor& x, const at::Tensor& weight) {
  return at::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad());
}

}  // namespace

at::Tensor onednn_conv2d(const at::Tensor& x, const at::Tensor& weight, OnednnWeights& packed,
                         const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                         const std::vector<int64_t>& dilation) {
  if (x.size(1) != weight.size(1))
    throw Error("Conv2d",
                "input has " + std::to_string(x.size(1)) + " channels, the layer " +
                    std::to_string(weight.size(1)),
                ErrorKind::kRuntime);
  Key key = make_key(x.sizes().vec(), weight, stride, padding, dilation);
  const Dims dst = dst_sizes(key);
  if (dst[2] < 1 || dst[3] < 1)
    throw Error("Conv2d", "input too small for the kernel", ErrorKind::kRuntime);
  const bool record = records(x, weight);
  return Conv2dFunction::apply(x, weight, &packed, std::move(key), record,
                               record && x.requires_grad());
}

at::Tensor onednn_conv_transpose2d(const at::Tensor& x, const at::Tensor& weight,
                                   OnednnWeights& packed, const std::vector<int64_t>& stride,
                                   const std::vector<int64_t>& padding,
                                   const std::vector<int64_t>& output_padding) {
  if (x.dim() != 4 || x.size(1) != weight.size(0))
    throw Error("ConvTranspose2d",
                "input has " + std::to_string(x.size(1)) + " channels, the layer " +
                    std::to_string(weight.size(0)),
                ErrorKind::kRuntime);
  // The output is the convolution's input: (in - 1) * stride - 2 padding + kernel + output
  // padding a side.
  Dims y = {x.size(0), weight.size(1), 0, 0};
  for (int i = 0; i < 2; ++i)
    y[2 + i] =
        (x.size(2 + i) - 1) * stride[i] - 2 * padding[i] + weight.size(2 + i) + output_padding[i];
  Key key = make_key(y, weight, stride, padding, {1, 1});
  const Dims back = dst_sizes(key);
  if (y[2] < 1 || y[3] < 1 || back[2] != x.size(2) || back[3] != x.size(3))
    throw Error("ConvTranspose2d", "output padding must be smaller than the stride",
                ErrorKind::kRuntime);
  const bool record = records(x, weight);
  return ConvTranspose2dFunction::apply(x, weight, &packed, std::move(key), record,
                                        record && x.requires_grad());
}

}  // namespace pix2pix::detail
