// GAN losses, gradient penalty and D accuracy against hand-computed values.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "pix2pix/error.h"
#include "pix2pix/train/losses.h"

namespace pix2pix {
namespace {

float value(const at::Tensor& t) { return t.item<float>(); }

TEST(Losses, VanillaIsBinaryCrossEntropyOnLogits) {
  EXPECT_NEAR(value(gan_loss(torch::zeros({1, 1, 30, 30}), true, GanMode::kVanilla)), std::log(2.0),
              1e-6);
  EXPECT_NEAR(value(gan_loss(torch::zeros({1, 1, 30, 30}), false, GanMode::kVanilla)),
              std::log(2.0), 1e-6);
  const auto logits = torch::tensor({2.0f, -1.0f});
  const double real = (std::log1p(std::exp(-2.0)) + std::log1p(std::exp(1.0))) / 2;
  const double fake = (std::log1p(std::exp(2.0)) + std::log1p(std::exp(-1.0))) / 2;
  EXPECT_NEAR(value(gan_loss(logits, true, GanMode::kVanilla)), real, 1e-6);
  EXPECT_NEAR(value(gan_loss(logits, false, GanMode::kVanilla)), fake, 1e-6);
}

TEST(Losses, LsganIsMeanSquaredErrorToOneAndZero) {
  const auto prediction = torch::tensor({0.5f, 2.0f});
  EXPECT_NEAR(value(gan_loss(prediction, true, GanMode::kLsgan)), (0.25 + 1.0) / 2, 1e-6);
  EXPECT_NEAR(value(gan_loss(prediction, false, GanMode::kLsgan)), (0.25 + 4.0) / 2, 1e-6);
}

TEST(Losses, WassersteinIsSignedMean) {
  const auto prediction = torch::tensor({1.0f, 3.0f});
  EXPECT_FLOAT_EQ(value(gan_loss(prediction, true, GanMode::kWgangp)), -2.0f);
  EXPECT_FLOAT_EQ(value(gan_loss(prediction, false, GanMode::kWgangp)), 2.0f);
}

TEST(Losses, GradientPenaltyOfALinearCritic) {
  // D(x) = 3 * sum(x) per sample: the gradient is 3 everywhere, its norm over 4 elements is 6,
  // so the penalty is (6 - 1)^2 = 25 per sample, times the weight, whatever the interpolation.
  auto critic = [](const at::Tensor& x) { return 3 * x.sum({1, 2, 3}); };
  auto generator = at::detail::createCPUGenerator(5);
  const auto real = torch::randn({2, 1, 2, 2}), fake = torch::randn({2, 1, 2, 2});
  const at::Tensor before = at::Tensor(at::detail::getDefaultCPUGenerator().get_state());
  at::Tensor penalty = gradient_penalty(critic, real, fake, 10.0, generator);
  EXPECT_NEAR(value(penalty), 250.0, 1e-3);
  // torch's default generator (dropout's) did not move.
  EXPECT_TRUE(torch::equal(at::Tensor(at::detail::getDefaultCPUGenerator().get_state()), before));
}

TEST(Losses, GradientPenaltyReachesCriticWeights) {
  torch::manual_seed(0);
  auto weight = torch::randn({1, 4}, torch::requires_grad());
  auto critic = [&](const at::Tensor& x) {
    return at::matmul(x.reshape({x.size(0), 4}), weight.t());
  };
  at::Tensor penalty =
      gradient_penalty(critic, torch::randn({3, 1, 2, 2}), torch::randn({3, 1, 2, 2}), 10.0,
                       at::detail::createCPUGenerator(1));
  penalty.backward();
  ASSERT_TRUE(weight.grad().defined());
  // d/dw 10 * (||w|| - 1)^2 = 20 * (||w|| - 1) * w / ||w||
  const auto norm = weight.detach().norm();
  const auto expected = 20 * (norm - 1) * weight.detach() / norm;
  EXPECT_TRUE(torch::allclose(weight.grad(), expected, 1e-4, 1e-5));
}

TEST(Losses, DiscriminatorAccuracy) {
  const auto logits = torch::tensor({1.0f, -1.0f, 2.0f, -3.0f});
  EXPECT_DOUBLE_EQ(discriminator_accuracy(logits, true, GanMode::kVanilla), 0.5);
  EXPECT_DOUBLE_EQ(
      discriminator_accuracy(torch::tensor({1.0f, 2.0f, 3.0f, -1.0f}), true, GanMode::kVanilla),
      0.75);
  EXPECT_DOUBLE_EQ(
      discriminator_accuracy(torch::tensor({1.0f, 2.0f, 3.0f, -1.0f}), false, GanMode::kVanilla),
      0.25);
  EXPECT_DOUBLE_EQ(discriminator_accuracy(torch::tensor({0.4f, 0.6f}), true, GanMode::kLsgan), 0.5);
}

TEST(Losses, ParseNames) {
  EXPECT_EQ(parse_gan_mode("lsgan"), GanMode::kLsgan);
  EXPECT_EQ(to_string(GanMode::kWgangp), "wgangp");
  EXPECT_THROW(parse_gan_mode("hinge"), Error);
}

}  // namespace
}  // namespace pix2pix
