// Compute settings: transposed convolutions computed as convolution gradients equal
// ConvTranspose2d forward and backward; bfloat16 convolutions stay close to float32, keep float32
// master weights, train with finite losses, and refresh their cached inference weights.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "models/convolution.h"
#include "pix2pix/error.h"
#include "pix2pix/models/compute.h"
#include "pix2pix/models/discriminator.h"
#include "pix2pix/models/generator.h"
#include "pix2pix/models/init.h"
#include "pix2pix/train/losses.h"
#include "pix2pix/train/optim.h"
#include "pix2pix/train/trainer.h"
#include "test_util.h"

namespace pix2pix {
namespace {

using test::made_by;

// max |a - b| relative to the size of b (1 for values up to 1 in magnitude).
double relative_error(const at::Tensor& a, const at::Tensor& b) {
  const double scale = std::max(1.0, b.abs().max().item<double>());
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() / scale;
}

struct TransposedCase {
  int64_t in, out, kernel, stride, padding, output_padding, batch, height, width;
  bool bias;
};

TEST(ConvTransposeAsGradient, EqualsConvTranspose2dForwardAndBackward) {
  const std::vector<TransposedCase> cases = {
      {16, 8, 4, 2, 1, 0, 1, 8, 8, false},     // U-Net up layer
      {32, 3, 4, 2, 1, 0, 2, 16, 16, true},    // outermost U-Net layer (bias), batch 2
      {8, 4, 3, 2, 1, 1, 1, 12, 12, false},    // ResNet up layer (output padding)
      {6, 5, 4, 2, 1, 0, 1, 5, 9, true},       // odd, non-square sizes
      {4, 4, 3, 1, 1, 0, 3, 7, 7, true},       // stride 1
      {64, 32, 4, 2, 1, 0, 1, 32, 32, false},  // larger reductions
  };
  for (const auto& c : cases) {
    SCOPED_TRACE("in " + std::to_string(c.in) + " out " + std::to_string(c.out) + " kernel " +
                 std::to_string(c.kernel) + " side " + std::to_string(c.height) + "x" +
                 std::to_string(c.width) + (c.bias ? " bias" : ""));
    torch::manual_seed(1);
    auto options = torch::nn::ConvTranspose2dOptions(c.in, c.out, c.kernel)
                       .stride(c.stride)
                       .padding(c.padding)
                       .output_padding(c.output_padding)
                       .bias(c.bias);
    torch::nn::ConvTranspose2d native(options);
    detail::ConvTranspose2d gradient(options);
    {
      torch::NoGradGuard no_grad;
      gradient->weight.copy_(native->weight);
      if (c.bias) gradient->bias.copy_(native->bias.uniform_(-1, 1));
    }
    gradient->compute.transposed = TransposedConv::kGradient;
    const at::Tensor x0 = torch::rand({c.batch, c.in, c.height, c.width}) * 2 - 1;
    const at::Tensor x1 = x0.clone().requires_grad_(), x2 = x0.clone().requires_grad_();
    const at::Tensor y1 = native->forward(x1), y2 = gradient->forward(x2);
    ASSERT_EQ(y1.sizes(), y2.sizes());
    EXPECT_LT(relative_error(y2, y1), 1e-5);
    const at::Tensor gy = torch::rand_like(y1) * 2 - 1;
    y1.backward(gy);
    y2.backward(gy);
    EXPECT_LT(relative_error(x2.grad(), x1.grad()), 1e-5);
    EXPECT_LT(relative_error(gradient->weight.grad(), native->weight.grad()), 1e-5);
    if (c.bias) EXPECT_LT(relative_error(gradient->bias.grad(), native->bias.grad()), 1e-5);
    // Not trivially equal: the outputs are real data.
    EXPECT_GT(y1.abs().max().item<double>(), 0.01);
  }
}

TEST(ConvTransposeAsGradient, OnlyRequestedGradientsAreComputed) {
  const at::Tensor x = torch::rand({1, 4, 6, 6});
  const at::Tensor w = torch::rand({4, 2, 4, 4}).requires_grad_();
  detail::conv_transpose2d_as_gradient(x, w, {2, 2}, {1, 1}, {0, 0}).sum().backward();
  EXPECT_TRUE(w.grad().defined());
  EXPECT_FALSE(x.grad().defined());
}

struct MatmulCase {
  bool transposed;
  int64_t in, out, kernel, stride, padding, output_padding, batch, height, width;
  bool bias;
};

// bfloat16 convolutions on small maps run as im2col + a matrix product (ComputeOptions::
// matmul_max_side): forward and every gradient equal the float32 convolution within bfloat16
// rounding, and equal the oneDNN-convolution form of the same bfloat16 layer, with the products
// on this library's small-dimension kernels (ComputeOptions::small_products) and on oneDNN's
// matmul.
TEST(Compute, Bf16MatmulFormEqualsConvolutionForwardAndBackward) {
  PIX2PIX_SKIP_WITHOUT_BF16();
  const std::vector<MatmulCase> cases = {
      {false, 32, 16, 4, 2, 1, 0, 1, 8, 8, false},  // U-Net down layer
      {false, 16, 24, 4, 2, 1, 0, 2, 4, 4, true},   // batch 2, bias
      {false, 8, 8, 3, 1, 1, 0, 1, 5, 7, true},     // stride 1, non-square
      {false, 16, 16, 4, 2, 1, 0, 1, 2, 2, false},  // innermost: 1x1 output
      {true, 32, 16, 4, 2, 1, 0, 1, 4, 4, false},   // U-Net up layer
      {true, 16, 8, 4, 2, 1, 0, 3, 1, 1, false},    // innermost up layer, batch 3
      {true, 8, 4, 3, 2, 1, 1, 2, 3, 5, true},      // output padding, non-square, bias
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.transposed ? "transposed " : "") + "in " + std::to_string(c.in) +
                 " out " + std::to_string(c.out) + " side " + std::to_string(c.height) + "x" +
                 std::to_string(c.width) + " batch " + std::to_string(c.batch));
    torch::manual_seed(3);
    std::function<at::Tensor(const at::Tensor&, const ComputeOptions&)> run;
    std::vector<at::Tensor> parameters;
    detail::Conv2d conv(nullptr);
    detail::ConvTranspose2d transposed(nullptr);
    if (c.transposed) {
      transposed = detail::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(c.in, c.out, c.kernel)
                                               .stride(c.stride)
                                               .padding(c.padding)
                                               .output_padding(c.output_padding)
                                               .bias(c.bias));
      parameters = transposed->parameters();
      run = [&](const at::Tensor& x, const ComputeOptions& compute) {
        transposed->compute = compute;
        return transposed->forward(x);
      };
    } else {
      conv = detail::Conv2d(torch::nn::Conv2dOptions(c.in, c.out, c.kernel)
                                .stride(c.stride)
                                .padding(c.padding)
                                .bias(c.bias));
      parameters = conv->parameters();
      run = [&](const at::Tensor& x, const ComputeOptions& compute) {
        conv->compute = compute;
        return conv->forward(x);
      };
    }
    ComputeOptions fp32, onednn, matmul, onednn_matmul;
    fp32.transposed = TransposedConv::kNative;  // libtorch's own layers
    onednn.precision = matmul.precision = Precision::kBFloat16;
    onednn.matmul_max_side = onednn.matmul_max_side_transposed = 0;
    matmul.matmul_max_side = matmul.matmul_max_side_transposed = 64;
    onednn_matmul = matmul;
    onednn_matmul.small_products = false;
    const at::Tensor x0 = torch::rand({c.batch, c.in, c.height, c.width}) * 2 - 1;
    at::Tensor gy;
    std::vector<std::vector<at::Tensor>> results;  // per form: y, x grad, parameter grads
    for (const ComputeOptions* form : {&fp32, &onednn, &matmul, &onednn_matmul}) {
      for (auto& p : parameters) p.mutable_grad() = at::Tensor();
      const at::Tensor x = x0.clone().requires_grad_();
      const at::Tensor y = run(x, *form);
      // Which computation ran: a matrix product (the small-dimension kernels' or oneDNN's), or
      // oneDNN's convolution.
      EXPECT_EQ(made_by(y, "MmBackward0"), form == &onednn_matmul);
      EXPECT_EQ(made_by(y, "ProductFunction"), form == &matmul);
      if (!gy.defined()) gy = torch::rand_like(y) * 2 - 1;
      y.backward(gy);
      std::vector<at::Tensor> result = {y, x.grad()};
      for (auto& p : parameters) result.push_back(p.grad());
      results.push_back(result);
    }
    for (size_t i = 0; i < results[0].size(); ++i) {
      SCOPED_TRACE("tensor " + std::to_string(i) + " (0: output, 1: input gradient, 2: weight" +
                   " gradient, 3: bias gradient)");
      // The weight's gradient stays in bfloat16 (the optimiser reads it); so does the output of
      // a layer without a bias (the next layer takes it as it is); the rest is float32.
      EXPECT_EQ(results[2][i].scalar_type(),
                i == 2 || (i == 0 && !c.bias) ? at::kBFloat16 : at::kFloat);
      EXPECT_EQ(results[0][i].scalar_type(), at::kFloat);
      EXPECT_LT(relative_error(results[2][i], results[0][i]), 0.02);  // bf16 vs fp32
      EXPECT_LT(relative_error(results[2][i], results[1][i]), 0.02);  // matmul vs oneDNN form
      EXPECT_EQ(results[3][i].scalar_type(), results[2][i].scalar_type());
      EXPECT_LT(relative_error(results[3][i], results[0][i]), 0.02);
      EXPECT_LT(relative_error(results[2][i], results[3][i]), 0.02);  // kernels vs oneDNN matmul
    }
    EXPECT_GT(results[0][0].abs().max().item<double>(), 0.01);  // real data, not zeros
  }
}

std::shared_ptr<Generator> small_unet(Norm norm = Norm::kBatch, bool dropout = false) {
  torch::manual_seed(0);
  GeneratorOptions options;
  options.net = "unet";
  options.num_downs = 5;
  options.ngf = 8;
  options.norm = norm;
  options.dropout = dropout;
  auto generator = make_generator(options);
  init_weights(*generator);
  return generator;
}

// A whole generator, forward and weight gradients: the gradient form stays within float
// rounding of libtorch's transposed convolution.
TEST(Compute, GeneratorInGradientFormMatchesNative) {
  auto native = small_unet(), gradient = small_unet();
  EXPECT_EQ(set_compute(*native, {Precision::kFloat32, TransposedConv::kNative, 8}), 10);
  set_compute(*gradient, {Precision::kFloat32, TransposedConv::kGradient, 1});
  torch::manual_seed(2);
  const at::Tensor x = torch::rand({2, 3, 64, 64}) * 2 - 1;
  const at::Tensor y1 = native->forward(x), y2 = gradient->forward(x);
  EXPECT_LT(relative_error(y2, y1), 1e-5);
  EXPECT_FALSE(torch::equal(y1, y2));  // a different computation, not the same one
  y1.square().sum().backward();
  y2.square().sum().backward();
  const auto p1 = native->parameters(), p2 = gradient->parameters();
  for (size_t i = 0; i < p1.size(); ++i)
    EXPECT_LT(relative_error(p2[i].grad(), p1[i].grad()), 1e-4) << "parameter " << i;
}

// The default float32 settings (TransposedConv::kAuto): transposed convolutions on maps up to
// 8 pixels a side as a matrix product and col2im, larger ones in the gradient form, and
// convolutions on maps up to 2 pixels a side as im2col and a matrix product. Forward and weight
// gradients stay within float rounding of libtorch's convolutions, for a batch of two (samples
// side by side in the product).
TEST(Compute, GeneratorInAutoFormMatchesNative) {
  auto native = small_unet(), automatic = small_unet(), no_matmul = small_unet(),
       no_conv_matmul = small_unet();
  set_compute(*native, {Precision::kFloat32, TransposedConv::kNative});
  set_compute(*automatic, ComputeOptions{});
  ComputeOptions gradient_only;
  gradient_only.matmul_max_side_transposed = 0;
  set_compute(*no_matmul, gradient_only);
  ComputeOptions transposed_matmul_only;
  transposed_matmul_only.matmul_max_side_float32 = 0;
  set_compute(*no_conv_matmul, transposed_matmul_only);
  torch::manual_seed(2);
  const at::Tensor x = torch::rand({2, 3, 32, 32}) * 2 - 1;  // convolution inputs 32..2 a side,
                                                             // transposed ones 1..16
  const at::Tensor y1 = native->forward(x), y2 = automatic->forward(x);
  EXPECT_LT(relative_error(y2, y1), 1e-5);
  // Both matrix-product forms ran: without either (same weights) the rounding differs.
  EXPECT_FALSE(torch::equal(y2, no_matmul->forward(x)));
  EXPECT_FALSE(torch::equal(y2, no_conv_matmul->forward(x)));
  y1.square().sum().backward();
  y2.square().sum().backward();
  const auto p1 = native->parameters(), p2 = automatic->parameters();
  for (size_t i = 0; i < p1.size(); ++i)
    EXPECT_LT(relative_error(p2[i].grad(), p1[i].grad()), 1e-4) << "parameter " << i;
}

TEST(Compute, Bf16ConvolutionsStayCloseToFloat32) {
  PIX2PIX_SKIP_WITHOUT_BF16();
  for (const Upsampling up : {Upsampling::kTransposed, Upsampling::kResizeBilinear}) {
    torch::manual_seed(0);
    GeneratorOptions options;
    options.net = "resnet_6blocks";
    options.ngf = 8;
    options.dropout = false;
    options.upsampling = up;  // resize-bilinear: a reflection-padded convolution
    auto generator = make_generator(options);
    init_weights(*generator);
    generator->eval();
    torch::NoGradGuard no_grad;
    const at::Tensor x = torch::rand({1, 3, 32, 32}) * 2 - 1;
    const at::Tensor y32 = generator->forward(x);
    set_compute(*generator, {Precision::kBFloat16, TransposedConv::kAuto, 8});
    const at::Tensor y16 = generator->forward(x);
    EXPECT_EQ(y16.scalar_type(), at::kFloat);
    const double error = (y16 - y32).abs().max().item<double>();
    EXPECT_LT(error, 0.05) << to_string(up);
    EXPECT_GT(error, 0.0) << "bf16 computed nothing in bf16";
    for (const auto& p : generator->parameters()) EXPECT_EQ(p.scalar_type(), at::kFloat);
  }
}

// The bfloat16 copy used without autograd is remade when the weights change in place (an
// optimiser step), and not otherwise.
TEST(Compute, Bf16InferenceFollowsWeightUpdates) {
  PIX2PIX_SKIP_WITHOUT_BF16();
  auto generator = small_unet();
  set_compute(*generator, {Precision::kBFloat16, TransposedConv::kAuto, 8});
  const at::Tensor x = torch::rand({1, 3, 32, 32}) * 2 - 1;
  generator->eval();
  at::Tensor before, again;
  {
    torch::NoGradGuard no_grad;
    before = generator->forward(x);
    again = generator->forward(x);
  }
  EXPECT_TRUE(torch::equal(before, again));
  // One Adam step (raw writes into the parameters) must be seen by the next inference.
  Adam adam(generator->parameters(), {});
  generator->train();
  generator->forward(x).abs().mean().backward();
  adam.step();
  generator->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor after = generator->forward(x);
  EXPECT_FALSE(torch::equal(before, after));
  // A fresh network with the updated weights gives the same result as the cache.
  auto fresh = small_unet();
  {
    auto src = generator->named_parameters(), dst = fresh->named_parameters();
    for (const auto& item : src) dst[item.key()].copy_(item.value());
    auto src_b = generator->named_buffers(), dst_b = fresh->named_buffers();
    for (const auto& item : src_b) dst_b[item.key()].copy_(item.value());
  }
  set_compute(*fresh, {Precision::kBFloat16, TransposedConv::kAuto, 8});
  fresh->eval();
  EXPECT_TRUE(torch::equal(fresh->forward(x), after));
}

// bf16 training: a few steps of the full pix2pix step on a small net keep every loss finite,
// update the float32 master weights and drive the L1 term down on one pair.
TEST(Compute, Bf16TrainingStepKeepsFiniteLosses) {
  PIX2PIX_SKIP_WITHOUT_BF16();
  auto generator = small_unet(Norm::kBatch, true);
  torch::manual_seed(0);
  DiscriminatorOptions d_options;
  d_options.ndf = 8;
  auto discriminator = make_discriminator(d_options);
  init_weights(*discriminator);
  const ComputeOptions bf16{Precision::kBFloat16, TransposedConv::kAuto, 8};
  set_compute(*generator, bf16);
  set_compute(*discriminator, bf16);
  AdamOptions adam;
  adam.lr = 1e-3;
  Pix2PixStep step(generator, discriminator, {}, adam, adam);
  const at::Tensor a = torch::rand({1, 3, 64, 64}) * 2 - 1, b = -a;
  const at::Tensor w0 = generator->parameters()[0].clone();
  StepStats first = step.step(a, b), last = first;
  for (int i = 0; i < 20; ++i) {
    last = step.step(a, b);
    for (double v : {last.g_gan, last.g_l1, last.d_real, last.d_fake})
      ASSERT_TRUE(std::isfinite(v)) << "step " << i;
  }
  for (const auto& p : generator->parameters()) {
    EXPECT_EQ(p.scalar_type(), at::kFloat);
    EXPECT_TRUE(p.grad().defined());
    // Convolution weights (4-D) keep their bfloat16 gradients; biases and norms are float32.
    EXPECT_EQ(p.grad().scalar_type(), p.dim() == 4 ? at::kBFloat16 : at::kFloat);
  }
  EXPECT_FALSE(torch::equal(w0, generator->parameters()[0]));
  EXPECT_LT(last.g_l1, first.g_l1);
  // Adam rewrote every layer's working copy in its pass: each is still the same tensor and
  // current (equal to the rounded master weight) without a refresh.
  for (auto* net : {static_cast<torch::nn::Module*>(generator.get()),
                    static_cast<torch::nn::Module*>(discriminator.get())}) {
    const auto before = detail::bf16_working_copies(*net);
    ASSERT_FALSE(before.empty());
    step.step(a, b);
    const auto after = detail::bf16_working_copies(*net);
    ASSERT_EQ(after.size(), before.size());
    for (size_t i = 0; i < after.size(); ++i) {
      EXPECT_TRUE(after[i].second.is_same(before[i].second)) << "layer " << i;
      EXPECT_TRUE(torch::equal(after[i].second, after[i].first.detach().to(at::kBFloat16)))
          << "layer " << i;
    }
  }
}

// A bf16 weight used twice in one graph (the discriminator on fake and real pairs) gets the
// float32 sum of its two bfloat16 gradients, in a buffer the layer keeps from step to step
// (no weight-sized allocation per step); a further backward pass accumulates into it.
TEST(Compute, Bf16WeightUsedTwiceSumsInAReusedFloat32Buffer) {
  PIX2PIX_SKIP_WITHOUT_BF16();
  torch::manual_seed(0);
  detail::Conv2d conv(torch::nn::Conv2dOptions(8, 16, 4).stride(2).padding(1).bias(false));
  conv->compute.precision = Precision::kBFloat16;
  const auto gradient_of = [&](const at::Tensor& x, double scale) {
    conv->weight.mutable_grad() = at::Tensor();
    (conv->forward(x) * scale).sum().backward();
    EXPECT_EQ(conv->weight.grad().scalar_type(), at::kBFloat16);
    return conv->weight.grad().to(at::kFloat);
  };
  at::Tensor previous;  // kept alive, so a fresh allocation could not land at its address
  for (int step = 0; step < 2; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const at::Tensor x1 = torch::randn({1, 8, 16, 16}), x2 = torch::randn({1, 8, 16, 16});
    const at::Tensor expected = gradient_of(x1, 1.0) + gradient_of(x2, 3.0);
    conv->weight.mutable_grad() = at::Tensor();  // as Adam::zero_grad
    (conv->forward(x1).sum() + (conv->forward(x2) * 3.0).sum()).backward();
    const at::Tensor sum = conv->weight.grad();
    ASSERT_EQ(sum.scalar_type(), at::kFloat);
    EXPECT_TRUE(torch::equal(sum, expected));
    if (step > 0) EXPECT_EQ(sum.data_ptr(), previous.data_ptr());  // the same buffer
    previous = sum;
    const at::Tensor before = sum.clone();
    const at::Tensor third = gradient_of(x1, 0.5);
    conv->weight.mutable_grad() = sum;
    (conv->forward(x1) * 0.5).sum().backward();  // accumulation over a second backward pass
    EXPECT_TRUE(torch::equal(conv->weight.grad(), before + third));
    EXPECT_EQ(conv->weight.grad().data_ptr(), sum.data_ptr());
  }
}

// A working copy goes stale when its weight changes in place without it (a loaded checkpoint)
// and is refreshed on the next use; Adam keeps a registered copy current by itself.
TEST(Compute, Bf16WorkingCopyTracksInPlaceChanges) {
  PIX2PIX_SKIP_WITHOUT_BF16();
  detail::Conv2d conv(torch::nn::Conv2dOptions(4, 6, 3).padding(1).bias(false));
  conv->compute.precision = Precision::kBFloat16;
  const at::Tensor copy = conv->bf16_weight();
  const at::Tensor x = torch::randn({1, 4, 8, 8});
  {
    torch::NoGradGuard no_grad;
    conv->weight.mul_(2);  // as load_state_dict's copy_ would
  }
  EXPECT_FALSE(torch::equal(copy, conv->weight.detach().to(at::kBFloat16)));
  EXPECT_TRUE(torch::equal(conv->bf16_weight(), conv->weight.detach().to(at::kBFloat16)));
  EXPECT_TRUE(conv->bf16_weight().is_same(copy));  // refreshed in place
  Adam adam({conv->weight});
  adam.set_bfloat16_copy(conv->weight, copy);
  conv->forward(x).sum().backward();
  adam.step();
  const auto version = copy._version();
  EXPECT_TRUE(torch::equal(conv->bf16_weight(), conv->weight.detach().to(at::kBFloat16)));
  EXPECT_EQ(copy._version(), version);  // no refresh was needed
}

// bf16 activations flow between layers of every architecture: each generator, discriminator,
// normalisation, upsampling and GAN loss (with the WGAN-GP penalty's double backward) trains
// in bf16 with finite losses, float32 outputs and a float32 master weight update.
TEST(Compute, Bf16TrainsEveryArchitecture) {
  PIX2PIX_SKIP_WITHOUT_BF16();
  struct Case {
    std::string net_g;
    Upsampling upsampling;
    std::string net_d;
    Norm norm;
    GanMode gan;
    double lambda_gp;
  };
  std::vector<Case> cases;
  for (const Norm norm : {Norm::kBatch, Norm::kInstance, Norm::kNone})
    for (const std::string net_g : {"unet", "resnet_6blocks"}) {
      cases.push_back({net_g, Upsampling::kTransposed, "basic", norm, GanMode::kVanilla, 0});
      cases.push_back({net_g, Upsampling::kResizeNearest, "pixel", norm, GanMode::kLsgan, 0});
      cases.push_back({net_g, Upsampling::kResizeBilinear, "image", norm, GanMode::kWgangp, 10});
    }
  const ComputeOptions bf16{Precision::kBFloat16, TransposedConv::kAuto, 8};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.net_g + " " + to_string(c.upsampling) + " " + c.net_d + " " + to_string(c.norm) +
                 " " + to_string(c.gan));
    torch::manual_seed(0);
    GeneratorOptions g_options;
    g_options.net = c.net_g;
    g_options.num_downs = 5;
    g_options.ngf = 8;
    g_options.norm = c.norm;
    g_options.upsampling = c.upsampling;
    auto generator = make_generator(g_options);
    DiscriminatorOptions d_options;
    d_options.net = c.net_d;
    d_options.ndf = 8;
    d_options.norm = c.norm;
    auto discriminator = make_discriminator(d_options);
    init_weights(*generator);
    init_weights(*discriminator);
    set_compute(*generator, bf16);
    set_compute(*discriminator, bf16);
    ObjectiveOptions objective;
    objective.gan_mode = c.gan;
    objective.lambda_gp = c.lambda_gp;
    Pix2PixStep step(generator, discriminator, objective, {}, {});
    const at::Tensor a = torch::rand({2, 3, 32, 32}) * 2 - 1, b = -a;
    const at::Tensor w0 = generator->parameters()[0].detach().clone();
    for (int i = 0; i < 2; ++i) {
      const StepStats stats = step.step(a, b);
      for (double v : {stats.g_gan, stats.g_l1, stats.d_real, stats.d_fake, stats.gradient_penalty})
        ASSERT_TRUE(std::isfinite(v)) << "step " << i;
    }
    EXPECT_FALSE(torch::equal(w0, generator->parameters()[0]));
    generator->eval();
    torch::NoGradGuard no_grad;
    const at::Tensor fake = generator->forward(a);
    EXPECT_EQ(fake.scalar_type(), at::kFloat);
    EXPECT_EQ(fake.sizes(), b.sizes());
    EXPECT_EQ(discriminator->forward(at::cat({a, fake}, 1)).scalar_type(), at::kFloat);
  }
}

TEST(Compute, ParsesNames) {
  EXPECT_EQ(parse_precision("bf16"), Precision::kBFloat16);
  EXPECT_EQ(parse_precision("float32"), Precision::kFloat32);
  EXPECT_EQ(to_string(Precision::kBFloat16), "bf16");
  EXPECT_EQ(parse_transposed_conv("native"), TransposedConv::kNative);
  EXPECT_EQ(to_string(TransposedConv::kAuto), "auto");
  EXPECT_THROW(parse_precision("fp16"), Error);
  EXPECT_THROW(parse_transposed_conv("fast"), Error);
}

}  // namespace
}  // namespace pix2pix
