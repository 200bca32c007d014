#include "models/onednn_convolution.h"

#if PIX2PIX_WITH_ONEDNN
#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>

#include <list>
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <unordered_map>
#include <utility>

#include "models/convolution.h"
#include "pix2pix/error.h"

namespace pix2pix::detail {

using dnnl::memory;

struct OnednnWeights::Packed {
  at::Tensor buffer;  ///< bytes in `desc`'s layout
  const void* source = nullptr;
  uint32_t version = 0;
  bool flipped = false;  ///< packed from the weight flipped and transposed (Primitives::flipped)
  memory::desc desc;
};

OnednnWeights::OnednnWeights() = default;
OnednnWeights::~OnednnWeights() = default;
OnednnWeights::OnednnWeights(const OnednnWeights&) {}
OnednnWeights& OnednnWeights::operator=(const OnednnWeights&) {
  const std::lock_guard<std::mutex> lock(mutex_);
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
  static std::mutex& mutex(OnednnWeights& w) { return w.mutex_; }
};

bool onednn_direct_applies(const at::Tensor& x, int64_t groups) {
  return groups == 1 && x.dim() == 4 && x.device().is_cpu() &&
         (x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kFloat);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using Dims = std::vector<int64_t>;

const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// One convolution's geometry and element type: input (src) sizes, weight sizes, stride,
// padding, dilation (4, 4, 2, 2, 2 numbers), then 1 for bfloat16 or 0 for float32. Everything
// else follows from it.
using Key = Dims;

Dims src_sizes(const Key& k) { return {k[0], k[1], k[2], k[3]}; }
Dims weight_sizes(const Key& k) { return {k[4], k[5], k[6], k[7]}; }
Dims stride_of(const Key& k) { return {k[8], k[9]}; }
Dims padding_of(const Key& k) { return {k[10], k[11]}; }
Dims dilation_of(const Key& k) { return {k[12], k[13]}; }
bool is_bf16(const Key& k) { return k[14] == 1; }
at::ScalarType scalar_type(const Key& k) { return is_bf16(k) ? at::kBFloat16 : at::kFloat; }
Dims dst_sizes(const Key& k) {
  Dims d = {k[0], k[4], 0, 0};
  for (int i = 0; i < 2; ++i)
    d[2 + i] = (k[2 + i] + 2 * k[10 + i] - k[12 + i] * (k[6 + i] - 1) - 1) / k[8 + i] + 1;
  return d;
}

// The three primitives of one convolution, with the layouts oneDNN chose for its element type
// on this machine (the plain layouts are libtorch's contiguous tensors).
struct Primitives {
  Key key;
  memory::desc src_plain, weights_plain, dst_plain;
  dnnl::convolution_forward::primitive_desc forward_pd;
  dnnl::convolution_backward_data::primitive_desc backward_data_pd;
  dnnl::convolution_backward_weights::primitive_desc backward_weights_pd;
  dnnl::convolution_forward forward;
  dnnl::convolution_backward_data backward_data;
  dnnl::convolution_backward_weights backward_weights;
  /// Whether the input gradient runs as a forward convolution of the output gradient with the
  /// weight flipped in space and transposed (C x O x kH x kW, plain `flipped_weights_plain`),
  /// padded by kernel - 1 - padding: `flipped_pd` and `flipped_forward`, used by
  /// backward_data_pass instead of the backward-data kernel.
  bool flipped = false;
  memory::desc flipped_weights_plain;
  dnnl::convolution_forward::primitive_desc flipped_pd;
  dnnl::convolution_forward flipped_forward;

  explicit Primitives(Key geometry) : key(std::move(geometry)) {
    using tag = memory::format_tag;
    const auto type = is_bf16(key) ? memory::data_type::bf16 : memory::data_type::f32;
    const Dims src = src_sizes(key), weights = weight_sizes(key), dst = dst_sizes(key);
    src_plain = memory::desc(src, type, tag::nchw);
    weights_plain = memory::desc(weights, type, tag::oihw);
    dst_plain = memory::desc(dst, type, tag::nchw);
    // Activations in oneDNN's blocked layout (its choice), except for stride-1 convolutions with
    // outputs under 32 a side (the PatchGAN's last two layers at 256x256): channels-last, where
    // oneDNN runs its faster brgemm kernel, whose sums may differ by one bfloat16 rounding
    // (docs/performance.md, "src/models/onednn_convolution.cpp"). Float32 keeps oneDNN's choice
    // everywhere: the layouts and kernels libtorch's conv2d runs, so the same numbers.
    const bool channels_last =
        is_bf16(key) && key[8] == 1 && key[9] == 1 && dst[2] < 32 && dst[3] < 32;
    const tag activations = channels_last ? tag::nhwc : tag::any;
    const memory::desc src_any(src, type, activations), weights_any(weights, type, tag::any),
        dst_any(dst, type, activations);
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
    // Stride 1, channels-last, dilation 1, at least 16 output channels (the PatchGAN's 256->512
    // layer): the input gradient as a forward convolution with the weights flipped, because
    // oneDNN's forward kernel (brgemm) is faster there than its backward-data kernel; results may
    // differ by one bfloat16 rounding (docs/performance.md, "src/models/onednn_convolution.cpp").
    flipped = channels_last && key[12] == 1 && key[13] == 1 && key[4] >= 16 &&
              padding[0] <= key[6] - 1 && padding[1] <= key[7] - 1;
    if (flipped) {
      const Dims flipped_weights = {weights[1], weights[0], weights[2], weights[3]};
      flipped_weights_plain = memory::desc(flipped_weights, type, tag::oihw);
      const Dims flipped_padding = {key[6] - 1 - padding[0], key[7] - 1 - padding[1]};
      flipped_pd = dnnl::convolution_forward::primitive_desc(
          dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, direct, dst_any,
                                          memory::desc(flipped_weights, type, tag::any), src_any,
                                          Dims{1, 1}, Dims{0, 0}, flipped_padding, flipped_padding),
          attr, cpu_engine());
      flipped_forward = dnnl::convolution_forward(flipped_pd);
    }
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

// Primitives are made once per geometry (creating one costs far more than a call) and kept for
// the most recently used geometries: training uses a few dozen, but translating images of many
// sizes would otherwise add a set (JIT code and all) for every new size, for good. A set evicted
// while a call still runs stays alive with that call.
struct PrimitiveCache {
  std::mutex mutex;
  size_t capacity = kOnednnPrimitiveCapacity;
  std::list<std::shared_ptr<const Primitives>> recent;  ///< most recently used first
  std::map<Key, std::list<std::shared_ptr<const Primitives>>::iterator> index;

  void trim() {
    while (recent.size() > capacity) {
      index.erase(recent.back()->key);
      recent.pop_back();
    }
  }
};

PrimitiveCache& primitive_cache() {
  static PrimitiveCache cache;
  return cache;
}

std::shared_ptr<const Primitives> primitives(const Key& key) {
  PrimitiveCache& cache = primitive_cache();
  const std::lock_guard<std::mutex> lock(cache.mutex);
  if (const auto found = cache.index.find(key); found != cache.index.end()) {
    cache.recent.splice(cache.recent.begin(), cache.recent, found->second);
    return cache.recent.front();
  }
  std::shared_ptr<const Primitives> made;
  try {
    made = std::make_shared<const Primitives>(key);
  } catch (const dnnl::error& e) {
    throw Error("convolution",
                std::string("oneDNN has no ") + (is_bf16(key) ? "bfloat16" : "float32") +
                    " convolution for this shape: " + e.what(),
                ErrorKind::kRuntime);
  }
  cache.recent.push_front(made);
  cache.index.emplace(key, cache.recent.begin());
  cache.trim();
  return made;
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

// A plain contiguous tensor of `sizes` (of `p`'s element type) that a primitive writes in layout
// `layout`: directly when that is the plain layout, else through a buffer reordered by finish().
struct Result {
  at::Tensor plain, buffer;
  memory::desc plain_desc, layout;
  Result(const Primitives& p, const Dims& sizes, const memory::desc& plain_layout,
         const memory::desc& written)
      : plain(at::empty(sizes, at::TensorOptions().dtype(scalar_type(p.key)))),
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

// The layer's weight or bfloat16 working copy `weight` (plain layout) in layout `to`, packed into
// `slot` when the copy changed since (storage, version or layout). A buffer still referenced
// elsewhere (saved by a graph) is left as it is and a new one made. With `flip`, the weight flipped
// in space and transposed (O x C -> C x O; `plain` then describes that tensor).
at::Tensor packed(const Primitives& p, std::unique_ptr<OnednnWeights::Packed>& slot,
                  const at::Tensor& weight, const memory::desc& plain, const memory::desc& to,
                  bool flip = false) {
  if (plain == to && !flip) return weight.detach();
  if (!slot) slot = std::make_unique<OnednnWeights::Packed>();
  OnednnWeights::Packed& w = *slot;
  if (w.buffer.defined() && w.source == weight.data_ptr() && w.version == weight._version() &&
      w.desc == to && w.flipped == flip)
    return w.buffer;
  if (!w.buffer.defined() || w.buffer.use_count() > 1 ||
      w.buffer.numel() != static_cast<int64_t>(to.get_size()))
    w.buffer = bytes(to);
  const at::Tensor source =
      flip ? weight.detach().flip({2, 3}).transpose(0, 1).contiguous() : weight;
  reorder(p, plain, source, to, w.buffer);
  w.source = weight.data_ptr();
  w.version = weight._version();
  w.desc = to;
  w.flipped = flip;
  return w.buffer;
}

// The layer's weights packed for the forward pass and for backward_data_pass.
at::Tensor forward_weights(const Primitives& p, OnednnWeights& layer, const at::Tensor& weight) {
  const std::lock_guard<std::mutex> lock(OnednnAccess::mutex(layer));
  return packed(p, OnednnAccess::forward(layer), weight, p.weights_plain,
                p.forward_pd.weights_desc());
}
at::Tensor backward_data_weights(const Primitives& p, OnednnWeights& layer,
                                 const at::Tensor& weight) {
  const std::lock_guard<std::mutex> lock(OnednnAccess::mutex(layer));
  if (p.flipped)
    return packed(p, OnednnAccess::backward_data(layer), weight, p.flipped_weights_plain,
                  p.flipped_pd.weights_desc(), /*flip=*/true);
  return packed(p, OnednnAccess::backward_data(layer), weight, p.weights_plain,
                p.backward_data_pd.weights_desc());
}

// `t` contiguous in the element type of the convolution `key`.
at::Tensor as_contiguous(const at::Tensor& t, const Key& key) {
  const at::ScalarType type = scalar_type(key);
  return t.scalar_type() == type ? t.contiguous() : t.to(type).contiguous();
}

// The arguments of the aten operations these calls stand for, for profilers and
// pix2pix::count_convolution_flops (only built while a RecordFunction callback is active).
at::Tensor meta(const Dims& sizes, const Key& key) {
  return at::empty(sizes, at::TensorOptions().device(at::kMeta).dtype(scalar_type(key)));
}
std::vector<c10::IValue> convolution_args(const at::Tensor& input, const Key& key) {
  return {input,           meta(weight_sizes(key), key),
          c10::IValue(),   stride_of(key),
          padding_of(key), dilation_of(key),
          false,           Dims{0, 0},
          int64_t{1}};
}
std::vector<c10::IValue> convolution_backward_args(const at::Tensor& grad_output,
                                                   const at::Tensor& input, const Key& key,
                                                   bool input_grad, bool weight_grad) {
  return {grad_output,
          input,
          meta(weight_sizes(key), key),
          c10::IValue(),
          stride_of(key),
          padding_of(key),
          dilation_of(key),
          false,
          Dims{0, 0},
          int64_t{1},
          c10::List<bool>({input_grad, weight_grad, false})};
}

// The three passes of the convolution `p`, shared by both functions below (a transposed
// convolution's passes are the convolution's with input and output gradient exchanged). Each
// takes its inputs in the layouts its primitive reads and returns a plain contiguous tensor.

// Runs the forward-convolution primitive `primitive` (descriptor `pd`) of the set `p` on src and
// weights in its layouts; the result is a plain tensor of `sizes` (layout `plain`).
at::Tensor run_forward(const Primitives& p, const dnnl::convolution_forward& primitive,
                       const dnnl::convolution_forward::primitive_desc& pd, const at::Tensor& src,
                       const at::Tensor& weights, const Dims& sizes, const memory::desc& plain) {
  Result dst(p, sizes, plain, pd.dst_desc());
  execute(primitive, pd.scratchpad_desc(),
          {{DNNL_ARG_SRC, wrap(pd.src_desc(), src)},
           {DNNL_ARG_WEIGHTS, wrap(pd.weights_desc(), weights)},
           {DNNL_ARG_DST, dst.target()}});
  return dst.finish(p);
}

// dst = conv(src, weights): src in forward_pd.src_desc(), weights packed for the forward.
at::Tensor forward_pass(const Primitives& p, const at::Tensor& src, const at::Tensor& weights) {
  return run_forward(p, p.forward, p.forward_pd, src, weights, dst_sizes(p.key), p.dst_plain);
}

// diff_src of conv(., weights) for diff_dst: diff_dst in backward_data_pd.diff_dst_desc(),
// weights from backward_data_weights.
at::Tensor backward_data_pass(const Primitives& p, const at::Tensor& diff_dst,
                              const at::Tensor& weights) {
  if (p.flipped)
    return run_forward(
        p, p.flipped_forward, p.flipped_pd,
        relayout(p, diff_dst, p.backward_data_pd.diff_dst_desc(), p.flipped_pd.src_desc()), weights,
        src_sizes(p.key), p.src_plain);
  const auto& pd = p.backward_data_pd;
  Result diff_src(p, src_sizes(p.key), p.src_plain, pd.diff_src_desc());
  execute(p.backward_data, pd.scratchpad_desc(),
          {{DNNL_ARG_DIFF_DST, wrap(pd.diff_dst_desc(), diff_dst)},
           {DNNL_ARG_WEIGHTS, wrap(pd.weights_desc(), weights)},
           {DNNL_ARG_DIFF_SRC, diff_src.target()}});
  return diff_src.finish(p);
}

// diff_weights of conv(src, .) for diff_dst, each given in the layout named with it.
at::Tensor backward_weights_pass(const Primitives& p, const at::Tensor& src,
                                 const memory::desc& src_layout, const at::Tensor& diff_dst,
                                 const memory::desc& diff_dst_layout) {
  const auto& pd = p.backward_weights_pd;
  const at::Tensor s = relayout(p, src, src_layout, pd.src_desc());
  const at::Tensor dd = relayout(p, diff_dst, diff_dst_layout, pd.diff_dst_desc());
  Result diff_weights(p, weight_sizes(p.key), p.weights_plain, pd.diff_weights_desc());
  execute(p.backward_weights, pd.scratchpad_desc(),
          {{DNNL_ARG_SRC, wrap(pd.src_desc(), s)},
           {DNNL_ARG_DIFF_DST, wrap(pd.diff_dst_desc(), dd)},
           {DNNL_ARG_DIFF_WEIGHTS, diff_weights.target()}});
  return diff_weights.finish(p);
}

// One call of either function: the layer's packed weights, the convolution's geometry, and
// which gradients its graph may ask for (nothing is saved when autograd does not record).
struct Call {
  OnednnWeights* packed;
  Key key;
  bool input_grad, weight_grad;
  bool records() const { return input_grad || weight_grad; }
};

// Saves what backward needs: x and the weight (as libtorch's convolution saves them; the
// fallback for gradients of gradients reads them), x in the kernels' layout for the weight
// gradient, and the weights packed for the pass that computes the input gradient (made by
// `input_grad_weights`).
template <typename Pack>
void save(AutogradContext* ctx, const Call& call, const at::Tensor& x, const at::Tensor& weight,
          const at::Tensor& x_in_layout, Pack input_grad_weights) {
  if (!call.records()) return;
  ctx->save_for_backward({x, weight});
  if (call.weight_grad) ctx->saved_data["x"] = x_in_layout;
  if (call.input_grad) ctx->saved_data["weights"] = input_grad_weights();
  ctx->saved_data["key"] = call.key;
}

// `gy` (plain) in the layout of the pass that runs first: `first` when the input gradient is
// wanted, else the weight gradient's `second`; the weight gradient reorders from there.
std::pair<at::Tensor, memory::desc> gradient_in_layout(const Primitives& p, const at::Tensor& gy,
                                                       const memory::desc& plain, bool input_grad,
                                                       const memory::desc& first,
                                                       const memory::desc& second) {
  const memory::desc& layout = input_grad ? first : second;
  return {relayout(p, gy, plain, layout), layout};
}

variable_list gradients(at::Tensor gx, at::Tensor gw) {
  return {std::move(gx), std::move(gw), at::Tensor()};
}

// y = conv2d(x, w): the forward pass; backward: the input gradient on the backward-data pass,
// the weight gradient on the backward-weights pass, both from one reorder of the output
// gradient, with x kept in the kernels' layout from the forward.
struct Conv2dFunction : torch::autograd::Function<Conv2dFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const Call& call) {
    const auto p = primitives(call.key);
    RECORD_FUNCTION("pix2pix::convolution", convolution_args(x, call.key));
    const at::Tensor src =
        relayout(*p, as_contiguous(x, call.key), p->src_plain, p->forward_pd.src_desc());
    const at::Tensor y = forward_pass(*p, src, forward_weights(*p, *call.packed, weight));
    save(ctx, call, x, weight, src,
         [&] { return backward_data_weights(*p, *call.packed, weight); });
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const Key key = ctx->saved_data["key"].toIntVector();
    const bool input_grad = ctx->needs_input_grad(0), weight_grad = ctx->needs_input_grad(1);
    const at::Tensor gy = as_contiguous(grad_outputs[0], key);
    if (at::GradMode::is_enabled()) {
      // A gradient that is itself differentiated (create_graph: the WGAN-GP penalty): aten's
      // differentiable operations on the saved inputs.
      const auto saved = ctx->get_saved_variables();
      auto [gx, gw, unused] = at::convolution_backward(
          gy, saved[0], saved[1], c10::nullopt, stride_of(key), padding_of(key), dilation_of(key),
          false, {0, 0}, 1, {input_grad, weight_grad, false});
      return gradients(gx, gw);
    }
    const auto p = primitives(key);
    RECORD_FUNCTION(
        "pix2pix::convolution_backward",
        convolution_backward_args(gy, meta(src_sizes(key), key), key, input_grad, weight_grad));
    const auto [diff_dst, layout] =
        gradient_in_layout(*p, gy, p->dst_plain, input_grad, p->backward_data_pd.diff_dst_desc(),
                           p->backward_weights_pd.diff_dst_desc());
    at::Tensor gx, gw;
    if (input_grad) gx = backward_data_pass(*p, diff_dst, ctx->saved_data["weights"].toTensor());
    if (weight_grad)
      gw = backward_weights_pass(*p, ctx->saved_data["x"].toTensor(), p->forward_pd.src_desc(),
                                 diff_dst, layout);
    return gradients(gx, gw);
  }
};

// y = conv_transpose2d(x, w) as the input gradient of conv2d(., w): the backward-data pass with
// x in the role of the output gradient; backward: the input gradient is the forward pass of gy,
// the weight gradient the backward-weights pass with gy as input and x as output gradient, both
// from one reorder of gy, with x kept in the kernels' layout from the forward.
struct ConvTranspose2dFunction : torch::autograd::Function<ConvTranspose2dFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const Call& call) {
    const auto p = primitives(call.key);
    RECORD_FUNCTION(
        "pix2pix::convolution_backward",
        convolution_backward_args(x, meta(src_sizes(call.key), call.key), call.key, true, false));
    const at::Tensor diff_dst =
        relayout(*p, as_contiguous(x, call.key), p->dst_plain, p->backward_data_pd.diff_dst_desc());
    const at::Tensor y =
        backward_data_pass(*p, diff_dst, backward_data_weights(*p, *call.packed, weight));
    save(ctx, call, x, weight, diff_dst, [&] { return forward_weights(*p, *call.packed, weight); });
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const Key key = ctx->saved_data["key"].toIntVector();
    const bool input_grad = ctx->needs_input_grad(0), weight_grad = ctx->needs_input_grad(1);
    const at::Tensor gy = as_contiguous(grad_outputs[0], key);
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
      return gradients(gx, gw);
    }
    const auto p = primitives(key);
    const auto [src, layout] =
        gradient_in_layout(*p, gy, p->src_plain, input_grad, p->forward_pd.src_desc(),
                           p->backward_weights_pd.src_desc());
    at::Tensor gx, gw;
    if (input_grad) {
      RECORD_FUNCTION("pix2pix::convolution", convolution_args(gy, key));
      gx = forward_pass(*p, src, ctx->saved_data["weights"].toTensor());
    }
    if (weight_grad) {
      RECORD_FUNCTION("pix2pix::convolution_backward",
                      convolution_backward_args(meta(dst_sizes(key), key), gy, key, false, true));
      gw = backward_weights_pass(*p, src, layout, ctx->saved_data["x"].toTensor(),
                                 p->backward_data_pd.diff_dst_desc());
    }
    return gradients(gx, gw);
  }
};

Key make_key(const Dims& src, const at::Tensor& weight, const Dims& stride, const Dims& padding,
             const Dims& dilation) {
  if (weight.scalar_type() != at::kBFloat16 && weight.scalar_type() != at::kFloat)
    throw Error("convolution", "oneDNN path needs bfloat16 or float32", ErrorKind::kRuntime);
  if (src.size() != 4 || weight.dim() != 4 || stride.size() != 2 || padding.size() != 2 ||
      dilation.size() != 2)
    throw Error("convolution", "oneDNN path needs 2-D convolutions", ErrorKind::kRuntime);
  return {src[0],         src[1],         src[2],
          src[3],         weight.size(0), weight.size(1),
          weight.size(2), weight.size(3), stride[0],
          stride[1],      padding[0],     padding[1],
          dilation[0],    dilation[1],    weight.scalar_type() == at::kBFloat16 ? 1 : 0};
}

// What the graph of a call on x and weight may ask for.
Call call_for(const at::Tensor& x, const at::Tensor& weight, OnednnWeights& packed, Key key) {
  const bool grad = at::GradMode::is_enabled();
  return {&packed, std::move(key), grad && x.requires_grad(), grad && weight.requires_grad()};
}

}  // namespace

void set_onednn_primitive_capacity(size_t capacity) {
  PrimitiveCache& cache = primitive_cache();
  const std::lock_guard<std::mutex> lock(cache.mutex);
  cache.capacity = capacity;
  cache.trim();
}

size_t onednn_primitive_count() {
  PrimitiveCache& cache = primitive_cache();
  const std::lock_guard<std::mutex> lock(cache.mutex);
  return cache.recent.size();
}

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
  return Conv2dFunction::apply(x, weight, call_for(x, weight, packed, std::move(key)));
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
  // The output is the convolution's input.
  Dims y = {x.size(0), weight.size(1), 0, 0};
  for (int i = 0; i < 2; ++i)
    y[2 + i] = transposed_output_side(x.size(2 + i), weight.size(2 + i), stride[i], padding[i],
                                      output_padding[i]);
  Key key = make_key(y, weight, stride, padding, {1, 1});
  const Dims back = dst_sizes(key);
  if (y[2] < 1 || y[3] < 1 || back[2] != x.size(2) || back[3] != x.size(3))
    throw Error("ConvTranspose2d", "output padding must be smaller than the stride",
                ErrorKind::kRuntime);
  return ConvTranspose2dFunction::apply(x, weight, call_for(x, weight, packed, std::move(key)));
}

}  // namespace pix2pix::detail

#else  // Built without oneDNN (PIX2PIX_WITH_ONEDNN=OFF): every convolution goes through libtorch.

#include "pix2pix/error.h"

namespace pix2pix::detail {

struct OnednnWeights::Packed {};
OnednnWeights::OnednnWeights() = default;
OnednnWeights::~OnednnWeights() = default;
OnednnWeights::OnednnWeights(const OnednnWeights&) {}
OnednnWeights& OnednnWeights::operator=(const OnednnWeights&) { return *this; }
bool onednn_direct_applies(const at::Tensor&, int64_t) { return false; }
void set_onednn_primitive_capacity(size_t) {}
size_t onednn_primitive_count() { return 0; }

namespace {
[[noreturn]] void unavailable() {
  throw Error("onednn", "this build has no direct oneDNN path (PIX2PIX_WITH_ONEDNN=OFF)",
              ErrorKind::kRuntime);
}
}  // namespace

at::Tensor onednn_conv2d(const at::Tensor&, const at::Tensor&, OnednnWeights&,
                         const std::vector<int64_t>&, const std::vector<int64_t>&,
                         const std::vector<int64_t>&) {
  unavailable();
}

at::Tensor onednn_conv_transpose2d(const at::Tensor&, const at::Tensor&, OnednnWeights&,
                                   const std::vector<int64_t>&, const std::vector<int64_t>&,
                                   const std::vector<int64_t>&) {
  unavailable();
}

}  // namespace pix2pix::detail

#endif
