// Convolutions called on oneDNN directly (ComputeOptions::onednn_direct), in bfloat16 (where the
// CPU has it) and float32 (everywhere): forward and every gradient equal libtorch's convolution
// of the same layer, weights are repacked after every change but never under a graph still
// waiting for backward, and gradients of gradients (the WGAN-GP penalty) still flow.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "models/convolution.h"
#include "pix2pix/models/compute.h"
#include "pix2pix/train/optim.h"
#include "test_util.h"

namespace pix2pix {
namespace {

using test::made_by;

double relative_error(const at::Tensor& a, const at::Tensor& b) {
  const double scale = std::max(1.0, b.abs().max().item<double>());
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() / scale;
}

ComputeOptions bf16(bool direct) {
  ComputeOptions compute;
  compute.precision = Precision::kBFloat16;
  compute.matmul_max_side = compute.matmul_max_side_transposed = 0;  // every layer on oneDNN
  compute.onednn_direct = direct;
  return compute;
}

// Float32 with every layer on oneDNN: transposed layers in the gradient form, no matrix products.
ComputeOptions fp32(bool direct) {
  ComputeOptions compute;
  compute.transposed = TransposedConv::kGradient;
  compute.matmul_max_side_float32 = compute.matmul_max_side_transposed = 0;
  compute.onednn_direct = direct;
  return compute;
}

// The tests below run in both precisions; bfloat16 only where the CPU has it.
class OnednnDirect : public ::testing::TestWithParam<Precision> {
 protected:
  void SetUp() override {
    if (GetParam() == Precision::kBFloat16) PIX2PIX_SKIP_WITHOUT_BF16();
  }
  ComputeOptions compute(bool direct) const {
    return GetParam() == Precision::kBFloat16 ? bf16(direct) : fp32(direct);
  }
  // Sets a bfloat16 layer's working copy as the one Adam keeps.
  void follow(Adam& adam, detail::Conv2d& conv) const {
    if (GetParam() == Precision::kBFloat16)
      adam.set_bfloat16_copy(conv->weight, conv->bf16_weight());
  }
};

std::string precision_name(const ::testing::TestParamInfo<Precision>& info) {
  return info.param == Precision::kBFloat16 ? "Bf16" : "Float32";
}

struct Case {
  bool transposed;
  int64_t in, out, kernel, stride, padding, output_padding, dilation, batch, height, width;
  bool bias;
};

// A U-Net down layer (8 -> 16 on 32x32) or up layer (16 -> 8 on 16x16).
Case down_or_up(bool transposed) {
  return transposed ? Case{true, 16, 8, 4, 2, 1, 0, 1, 1, 16, 16, false}
                    : Case{false, 8, 16, 4, 2, 1, 0, 1, 1, 32, 32, false};
}

// A layer of `c`'s shape with fixed weights, computing as `compute`.
struct Layer {
  detail::Conv2d conv{nullptr};
  detail::ConvTranspose2d transposed{nullptr};
  explicit Layer(const Case& c) {
    torch::manual_seed(5);
    if (c.transposed)
      transposed = detail::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(c.in, c.out, c.kernel)
                                               .stride(c.stride)
                                               .padding(c.padding)
                                               .output_padding(c.output_padding)
                                               .bias(c.bias));
    else
      conv = detail::Conv2d(torch::nn::Conv2dOptions(c.in, c.out, c.kernel)
                                .stride(c.stride)
                                .padding(c.padding)
                                .dilation(c.dilation)
                                .bias(c.bias));
  }
  at::Tensor& weight() { return conv ? conv->weight : transposed->weight; }
  torch::nn::Module& module() {
    return conv ? static_cast<torch::nn::Module&>(*conv) : *transposed;
  }
  at::Tensor operator()(const at::Tensor& x, const ComputeOptions& compute) {
    if (conv) {
      conv->compute = compute;
      return conv->forward(x);
    }
    transposed->compute = compute;
    return transposed->forward(x);
  }
};

// The pix2pix networks' layer kinds, for the comparisons with libtorch below.
const std::vector<Case>& layer_cases() {
  static const std::vector<Case> cases = {
      {false, 3, 16, 4, 2, 1, 0, 1, 1, 64, 64, true},     // first U-Net / PatchGAN layer
      {false, 16, 32, 4, 2, 1, 0, 1, 1, 32, 32, false},   // U-Net down layer
      {false, 32, 1, 4, 1, 1, 0, 1, 1, 18, 18, true},     // PatchGAN's last layer: stride 1
      {false, 64, 128, 4, 1, 1, 0, 1, 1, 16, 16, false},  // PatchGAN's stride-1 layer
      {false, 16, 32, 3, 1, 1, 0, 1, 2, 12, 10, true},    // stride 1, batch 2, non-square
      {false, 8, 12, 3, 1, 1, 0, 2, 2, 20, 28, false},    // dilation 2, batch 2, non-square
      {false, 6, 8, 7, 1, 0, 0, 1, 1, 30, 30, true},      // ResNet's 7x7 (after padding)
      {true, 32, 16, 4, 2, 1, 0, 1, 1, 16, 16, false},    // U-Net up layer
      {true, 16, 3, 4, 2, 1, 0, 1, 2, 32, 24, true},      // outermost up layer, batch 2
      {true, 16, 8, 3, 2, 1, 1, 1, 1, 20, 20, false},     // ResNet's up layer: output padding
      {true, 32, 16, 4, 1, 1, 0, 1, 1, 12, 12, false},    // transposed, stride 1 (bf16: flipped)
  };
  return cases;
}

std::string describe(const Case& c) {
  return std::string(c.transposed ? "transposed " : "") + std::to_string(c.in) + "->" +
         std::to_string(c.out) + " k" + std::to_string(c.kernel) + " s" + std::to_string(c.stride) +
         " d" + std::to_string(c.dilation) + " batch " + std::to_string(c.batch) + " " +
         std::to_string(c.height) + "x" + std::to_string(c.width);
}

// The layer of `c` run on libtorch's convolution, then on the direct calls (`compute(direct)`),
// from the same input and output gradient: for each, {output, input grad, parameter grads}.
std::vector<std::vector<at::Tensor>> libtorch_and_direct(const Case& c,
                                                         ComputeOptions (*compute)(bool)) {
  Layer layer(c);
  const at::Tensor x0 = torch::rand({c.batch, c.in, c.height, c.width}) * 2 - 1;
  at::Tensor gy;
  std::vector<std::vector<at::Tensor>> results;
  for (bool direct : {false, true}) {
    for (auto& p : layer.module().parameters()) p.mutable_grad() = at::Tensor();
    const at::Tensor x = x0.clone().requires_grad_();
    const at::Tensor y = layer(x, compute(direct));
    EXPECT_EQ(made_by(y, "Conv2dFunction") || made_by(y, "ConvTranspose2dFunction"), direct);
    if (!gy.defined()) gy = torch::rand_like(y) * 2 - 1;
    y.backward(gy);
    std::vector<at::Tensor> result = {y, x.grad()};
    for (auto& p : layer.module().parameters()) result.push_back(p.grad());
    results.push_back(result);
  }
  return results;
}

// The direct calls run the kernels libtorch's bfloat16 convolution runs: the same output, input
// gradient, weight gradient (bfloat16) and bias gradient, for the pix2pix networks' layer kinds.
// Stride-1 layers with outputs under 32 a side (a transposed layer's input) run channels-last on
// oneDNN's brgemm kernel, which sums in another order: equal there within one bfloat16 rounding.
TEST(OnednnConvolution, EqualsLibtorchBf16ForwardAndBackward) {
  PIX2PIX_SKIP_WITHOUT_BF16();
  for (const auto& c : layer_cases()) {
    SCOPED_TRACE(describe(c));
    const auto results = libtorch_and_direct(c, bf16);
    for (size_t i = 0; i < results[0].size(); ++i) {
      SCOPED_TRACE("tensor " + std::to_string(i) + " (0 output, 1 input grad, 2 weight grad)");
      ASSERT_TRUE(results[1][i].defined());
      EXPECT_EQ(results[1][i].scalar_type(), results[0][i].scalar_type());
      EXPECT_EQ(results[1][i].sizes(), results[0][i].sizes());
      // (the convolution's output is a transposed layer's input)
      const bool channels_last =
          c.stride == 1 && (c.transposed ? c.height : results[0][0].size(2)) < 32;
      EXPECT_LT(relative_error(results[1][i], results[0][i]), channels_last ? 8e-3 : 1e-6);
      EXPECT_GT(results[0][i].abs().max().item<double>(), 1e-3);  // real data, not zeros
    }
  }
}

// Float32: the same kernels as libtorch's convolution where libtorch runs oneDNN (4x4 kernels,
// batches over 1): bit for bit without a bias, within one rounding with one (added after the
// sum, where libtorch's kernel adds it inside). libtorch takes its own kernel for small 3x3
// layers at batch 1: there the sums' order differs (within float rounding).
TEST(OnednnConvolution, EqualsLibtorchFloat32ForwardAndBackward) {
  for (const auto& c : layer_cases()) {
    SCOPED_TRACE(describe(c));
    const auto results = libtorch_and_direct(c, fp32);
    const bool libtorch_on_onednn = c.kernel > 3 || c.batch > 1;
    for (size_t i = 0; i < results[0].size(); ++i) {
      SCOPED_TRACE("tensor " + std::to_string(i) + " (0 output, 1 input grad, 2 weight grad)");
      ASSERT_TRUE(results[1][i].defined());
      EXPECT_EQ(results[1][i].scalar_type(), at::kFloat);
      EXPECT_EQ(results[1][i].sizes(), results[0][i].sizes());
      EXPECT_GT(results[0][i].abs().max().item<double>(), 1e-3);  // real data, not zeros
      if (libtorch_on_onednn && !c.bias)
        EXPECT_TRUE(torch::equal(results[1][i], results[0][i]));
      else
        EXPECT_LT(relative_error(results[1][i], results[0][i]), 1e-5);
    }
  }
}

// Packed weights follow the weight (or its working copy): an optimiser step (which rewrites it in
// place) is seen by the next forward, in training and in inference.
TEST_P(OnednnDirect, FollowsEveryOptimiserStep) {
  const Case c = {false, 8, 16, 4, 2, 1, 0, 1, 1, 32, 32, false};
  Layer direct(c), reference(c);
  const at::Tensor x = torch::rand({1, 8, 32, 32});
  Adam adam(direct.conv->parameters(), {});
  follow(adam, direct.conv);
  for (int step = 0; step < 3; ++step) {
    const at::Tensor y = direct(x, compute(true));
    {
      torch::NoGradGuard no_grad;
      reference.conv->weight.copy_(direct.conv->weight);
      EXPECT_TRUE(torch::equal(y, reference(x, compute(false))));
      EXPECT_TRUE(torch::equal(direct(x, compute(true)), y));  // inference, same packed weights
    }
    y.square().mean().backward();
    adam.step();
  }
}

// Stride-1 layers with small outputs take their input gradient as a forward convolution with
// the weights flipped and transposed, packed once per change: after every optimiser step the
// input gradient is still libtorch's (within one bfloat16 rounding: the kernels sum in another
// order).
TEST(OnednnConvolution, FlippedInputGradientFollowsEveryOptimiserStep) {
  PIX2PIX_SKIP_WITHOUT_BF16();
  const Case c = {false, 32, 64, 4, 1, 1, 0, 1, 1, 16, 16, false};  // the PatchGAN's stride-1 layer
  Layer direct(c), reference(c);
  const at::Tensor x0 = torch::rand({1, 32, 16, 16}) * 2 - 1;
  AdamOptions large_steps;
  large_steps.lr = 0.02;  // each step changes the input gradient far beyond the tolerance
  Adam adam(direct.conv->parameters(), large_steps);
  adam.set_bfloat16_copy(direct.conv->weight, direct.conv->bf16_weight());
  at::Tensor previous;
  for (int step = 0; step < 3; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const at::Tensor x = x0.clone().requires_grad_(), x_reference = x0.clone().requires_grad_();
    const at::Tensor y = direct(x, bf16(true));
    {
      torch::NoGradGuard no_grad;
      reference.conv->weight.copy_(direct.conv->weight);
    }
    const at::Tensor gy = torch::rand_like(y) * 2 - 1;
    reference(x_reference, bf16(false)).backward(gy);
    y.backward(gy);
    EXPECT_GT(x_reference.grad().abs().max().item<double>(), 1e-3);
    EXPECT_LT(relative_error(x.grad(), x_reference.grad()), 8e-3);
    if (previous.defined()) EXPECT_GT(relative_error(x.grad(), previous), 0.05);
    previous = x.grad();
    adam.step();
  }
}

// A graph still waiting for its backward keeps the packed weights of its forward: the layer
// packs the next step's weights into a new buffer, and the old graph's input gradient is that
// of the weights it ran with (libtorch's own convolution would refuse this backward instead).
// bfloat16 only: a float32 layer's graph saves the weight itself, whose change in place autograd
// refuses, as libtorch's.
TEST(OnednnConvolution, PendingGraphKeepsItsWeights) {
  PIX2PIX_SKIP_WITHOUT_BF16();
  for (bool transposed : {false, true}) {
    SCOPED_TRACE(transposed ? "transposed" : "convolution");
    const Case c = down_or_up(transposed);
    Layer layer(c);
    at::Tensor& weight = layer.weight();
    const at::Tensor x0 = torch::rand({1, c.in, c.height, c.width});
    auto input_grad = [&](bool direct, const at::Tensor& gy) {
      const at::Tensor x = x0.clone().requires_grad_();
      layer(x, bf16(direct)).backward(gy);
      return x.grad();
    };
    const at::Tensor x = x0.clone().requires_grad_();
    const at::Tensor y = layer(x, bf16(true));
    const at::Tensor gy = torch::rand_like(y);
    const at::Tensor expected = input_grad(false, gy);
    {
      torch::NoGradGuard no_grad;
      weight.mul_(-1);
    }
    const at::Tensor changed = layer(x0, bf16(true));  // packs the new weights
    EXPECT_FALSE(torch::equal(changed, y));
    y.backward(gy);
    EXPECT_TRUE(torch::equal(x.grad(), expected));
  }
}

// Gradients of gradients (the WGAN-GP penalty differentiates D's input gradient) equal those of
// libtorch's convolution.
TEST_P(OnednnDirect, DoubleBackwardMatchesLibtorch) {
  for (bool transposed : {false, true}) {
    SCOPED_TRACE(transposed ? "transposed" : "convolution");
    const Case c = down_or_up(transposed);
    Layer layer(c);
    const at::Tensor x0 = torch::rand({1, c.in, c.height, c.width});
    std::vector<at::Tensor> weight_grads;
    for (bool direct : {false, true}) {
      for (auto& p : layer.module().parameters()) p.mutable_grad() = at::Tensor();
      const at::Tensor x = x0.clone().requires_grad_();
      const at::Tensor y = layer(x, compute(direct)).to(at::kFloat);
      const at::Tensor gx =
          torch::autograd::grad({y.square().sum()}, {x}, {}, /*retain_graph=*/true,
                                /*create_graph=*/true)[0];
      gx.square().sum().backward();
      const at::Tensor& weight = layer.weight();
      ASSERT_TRUE(weight.grad().defined());
      weight_grads.push_back(weight.grad().to(at::kFloat));
    }
    EXPECT_GT(weight_grads[0].abs().max().item<double>(), 1e-3);
    EXPECT_LT(relative_error(weight_grads[1], weight_grads[0]), 1e-6);
  }
}

// Only the gradients a graph can ask for are prepared: with the weight frozen (the
// discriminator during the generator's step) the input gradient still equals libtorch's and the
// weight gets none; with the input fixed (a network's first layer) the weight gradient equals
// libtorch's.
TEST_P(OnednnDirect, FrozenWeightOrFixedInput) {
  for (bool transposed : {false, true}) {
    SCOPED_TRACE(transposed ? "transposed" : "convolution");
    const Case c = down_or_up(transposed);
    Layer layer(c);
    at::Tensor& weight = layer.weight();
    const at::Tensor x0 = torch::rand({1, c.in, c.height, c.width}) * 2 - 1;
    for (bool frozen : {true, false}) {
      SCOPED_TRACE(frozen ? "weight frozen" : "input fixed");
      weight.requires_grad_(!frozen);
      std::vector<at::Tensor> grads;  // libtorch, direct
      at::Tensor gy;
      for (bool direct : {false, true}) {
        weight.mutable_grad() = at::Tensor();
        const at::Tensor x = frozen ? x0.clone().requires_grad_() : x0;
        const at::Tensor y = layer(x, compute(direct));
        if (!gy.defined()) gy = torch::rand_like(y) * 2 - 1;
        y.backward(gy);
        EXPECT_EQ(weight.grad().defined(), !frozen);
        grads.push_back(frozen ? x.grad() : weight.grad());
      }
      ASSERT_TRUE(grads[1].defined());
      EXPECT_GT(grads[0].abs().max().item<double>(), 1e-3);
      EXPECT_LT(relative_error(grads[1], grads[0]), 1e-6);
    }
    weight.requires_grad_(true);
  }
}

// Primitives are kept for a bounded number of geometries (translating images of many sizes must
// not grow memory without end); a geometry evicted and met again, even by a graph made before
// the eviction, computes as before.
TEST_P(OnednnDirect, PrimitiveCacheIsBounded) {
  const Case c = {false, 8, 16, 4, 2, 1, 0, 1, 1, 32, 32, false};
  Layer layer(c);
  detail::set_onednn_primitive_capacity(2);
  const at::Tensor x0 = torch::rand({1, 8, 32, 32});
  const at::Tensor x = x0.clone().requires_grad_();
  const at::Tensor y = layer(x, compute(true));  // a graph on 32x32, its backward pending
  std::vector<at::Tensor> outputs;
  for (int64_t side : {24, 40, 48, 56}) {
    outputs.push_back(layer(torch::ones({1, 8, side, side}), compute(true)));
    EXPECT_LE(detail::onednn_primitive_count(), 2u);
  }
  const at::Tensor gy = torch::rand_like(y);
  y.backward(gy);  // 32x32's primitives were evicted: made again
  EXPECT_LE(detail::onednn_primitive_count(), 2u);
  detail::set_onednn_primitive_capacity(detail::kOnednnPrimitiveCapacity);
  const at::Tensor x_reference = x0.clone().requires_grad_();
  layer(x_reference, compute(false)).backward(gy);
  EXPECT_LT(relative_error(x.grad(), x_reference.grad()), 1e-6);
  EXPECT_TRUE(torch::equal(outputs[0], layer(torch::ones({1, 8, 24, 24}), compute(true))));
}

// Several threads may run the same layer at once (each call brings its own scratch memory), also
// when they meet it before its weights are packed (the first requests to a server).
TEST_P(OnednnDirect, ConcurrentInferenceAgrees) {
  const Case c = {false, 16, 32, 4, 2, 1, 0, 1, 1, 64, 64, false};
  Layer layer(c), reference(c);
  layer.conv->compute = compute(true);
  const at::Tensor x = torch::rand({1, 16, 64, 64});
  torch::NoGradGuard no_grad;
  const at::Tensor expected = reference(x, compute(true));
  std::vector<at::Tensor> results(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < results.size(); ++t)
    threads.emplace_back([&, t] {
      torch::NoGradGuard guard;
      for (int i = 0; i < 5; ++i) results[t] = layer.conv->forward(x);
    });
  for (auto& thread : threads) thread.join();
  for (const auto& r : results) EXPECT_TRUE(torch::equal(r, expected));
}

INSTANTIATE_TEST_SUITE_P(Precisions, OnednnDirect,
                         ::testing::Values(Precision::kBFloat16, Precision::kFloat32),
                         precision_name);

}  // namespace
}  // namespace pix2pix
