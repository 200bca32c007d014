// Weight initialisation: each distribution's statistics, biases and norm layers, determinism.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "pix2pix/error.h"
#include "pix2pix/models/discriminator.h"
#include "pix2pix/models/generator.h"
#include "pix2pix/models/init.h"

namespace pix2pix {
namespace {

struct Net : torch::nn::Module {
  Net() {
    conv =
        register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(64, 128, 4).bias(true)));
    up = register_module("up",
                         torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(128, 64, 4)));
    norm = register_module("norm", torch::nn::BatchNorm2d(256));
    linear = register_module("linear", torch::nn::Linear(512, 256));
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::ConvTranspose2d up{nullptr};
  torch::nn::BatchNorm2d norm{nullptr};
  torch::nn::Linear linear{nullptr};
};

TEST(Init, NormalUsesGainAsStdAndZeroBiases) {
  torch::manual_seed(0);
  Net net;
  init_weights(net, {InitType::kNormal, 0.02});
  EXPECT_NEAR(net.conv->weight.std().item<double>(), 0.02, 0.0005);
  EXPECT_NEAR(net.conv->weight.mean().item<double>(), 0.0, 0.0005);
  EXPECT_NEAR(net.up->weight.std().item<double>(), 0.02, 0.0005);
  EXPECT_EQ(net.conv->bias.abs().max().item<double>(), 0.0);
  EXPECT_EQ(net.linear->bias.abs().max().item<double>(), 0.0);
  EXPECT_NEAR(net.norm->weight.mean().item<double>(), 1.0, 0.01);
  EXPECT_NEAR(net.norm->weight.std().item<double>(), 0.02, 0.005);
  EXPECT_EQ(net.norm->bias.abs().max().item<double>(), 0.0);
}

TEST(Init, XavierKaimingOrthogonal) {
  torch::manual_seed(0);
  Net net;
  init_weights(net, {InitType::kXavier, 1.0});
  // Xavier normal: std = gain * sqrt(2 / (fan_in + fan_out)); conv 64->128 k4: 1024 and 2048.
  EXPECT_NEAR(net.conv->weight.std().item<double>(), std::sqrt(2.0 / (1024 + 2048)), 0.001);
  init_weights(net, {InitType::kKaiming, 0.02});
  // Kaiming normal, a = 0, fan_in: std = sqrt(2 / fan_in), gain unused.
  EXPECT_NEAR(net.conv->weight.std().item<double>(), std::sqrt(2.0 / 1024), 0.001);
  init_weights(net, {InitType::kOrthogonal, 0.5});
  // Rows of the flattened weight are orthogonal with norm = gain.
  auto w = net.linear->weight;  // 256 x 512
  auto gram = torch::matmul(w, w.t());
  EXPECT_TRUE(torch::allclose(gram, 0.25 * torch::eye(256), 1e-4, 1e-4));
}

TEST(Init, SameSeedSameWeights) {
  auto build = [] {
    torch::manual_seed(42);
    DiscriminatorOptions options;
    options.ndf = 8;
    auto d = make_discriminator(options);
    init_weights(*d);
    return d;
  };
  auto a = build(), b = build();
  auto pa = a->parameters(), pb = b->parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i]));
}

TEST(Init, ParseNames) {
  EXPECT_EQ(parse_init_type("orthogonal"), InitType::kOrthogonal);
  EXPECT_EQ(to_string(InitType::kXavier), "xavier");
  EXPECT_THROW(parse_init_type("uniform"), Error);
}

}  // namespace
}  // namespace pix2pix
