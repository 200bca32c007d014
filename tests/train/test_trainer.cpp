// The training step: bit-for-bit parity with the PyTorch reference's step, frozen D during the G
// step, ablations, and that training on one pair drives the L1 loss down.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "pix2pix/io/pytorch_import.h"
#include "pix2pix/models/compute.h"
#include "pix2pix/models/init.h"
#include "pix2pix/train/trainer.h"
#include "test_util.h"

namespace pix2pix {
namespace {

// How far our final weights and buffers (G and D) are from the reference's.
struct Difference {
  double max = 0;     ///< largest |ours - reference| (0: bit for bit)
  int64_t over = 0;   ///< elements differing by more than 1e-5
  int64_t total = 0;  ///< elements compared
};

// Runs `steps` steps of the reference (reference_step.py --trace: it saves weights and inputs,
// reseeds with seed + 1, trains) and ours from the same start with `compute`; checks the last
// step's losses and returns how far the final weights and buffers of G and D are.
Difference difference_to_reference(int steps, const ComputeOptions& compute,
                                   double loss_d_tolerance) {
  const std::string dir = test::temp_dir();
  const int seed = 4;
  auto trace = test::run_python(
      test::shared_dir() +
      "/bench/reference_step.py --netG unet_128 --size 128 --threads 1 --seed " +
      std::to_string(seed) + " --steps " + std::to_string(steps) + " --trace " + dir);
  EXPECT_EQ(trace.exit_code, 0) << trace.output;
  if (trace.exit_code != 0) return {1e9, 1, 1};

  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  GeneratorOptions g_options;
  g_options.net = "unet_128";
  DiscriminatorOptions d_options;
  auto generator = make_generator(g_options);
  auto discriminator = make_discriminator(d_options);
  load_state_dict(*generator, read_state_dict(dir + "/init_G.pth"), "init_G.pth");
  load_state_dict(*discriminator, read_state_dict(dir + "/init_D.pth"), "init_D.pth");
  set_compute(*generator, compute);
  set_compute(*discriminator, compute);
  const StateDict inputs = read_state_dict(dir + "/inputs.pt");
  EXPECT_EQ(inputs.size(), 2u);
  Pix2PixStep step(generator, discriminator, {}, {}, {});
  torch::manual_seed(seed + 1);
  StepStats stats;
  for (int i = 0; i < steps; ++i) stats = step.step(inputs[0].second, inputs[1].second);
  at::set_num_threads(threads);

  Difference difference;
  for (const auto& [file, module] : std::vector<std::pair<std::string, torch::nn::Module*>>{
           {"final_G.pth", generator.get()}, {"final_D.pth", discriminator.get()}}) {
    const StateDict expected = read_state_dict(dir + "/" + file);
    const StateDict ours = module_state_dict(*module);
    EXPECT_EQ(expected.size(), ours.size());
    for (size_t i = 0; i < std::min(ours.size(), expected.size()); ++i) {
      EXPECT_EQ(ours[i].first, expected[i].first);
      const at::Tensor diffs =
          (ours[i].second.to(at::kDouble) - expected[i].second.to(at::kDouble)).abs();
      const double diff = diffs.max().item<double>();
      if (diff > difference.max)
        std::cout << "[ parity ] " << file << " " << ours[i].first << " max diff " << diff << "\n";
      difference.max = std::max(difference.max, diff);
      difference.over += diffs.gt(1e-5).sum().item<int64_t>();
      difference.total += diffs.numel();
    }
  }
  std::ifstream losses_file(dir + "/losses.json");
  auto losses = nlohmann::json::parse(losses_file);
  // The reference reports float32 losses; ours are their terms in double.
  EXPECT_NEAR(stats.g_gan + 100.0 * stats.g_l1, losses["loss_G"].get<double>(), 1e-5);
  EXPECT_NEAR(0.5 * (stats.d_fake + stats.d_real), losses["loss_D"].get<double>(),
              loss_d_tolerance);
  return difference;
}

// From the same weights, inputs and seed, our step with libtorch's transposed convolutions
// (TransposedConv::kNative) gives the reference's weights bit for bit.
TEST(TrainerReference, StepsAreBitwiseEqualToReference) {
  if (!test::have_python_torch()) GTEST_SKIP() << "needs /usr/bin/python3 with torch";
  const Difference d =
      difference_to_reference(3, {Precision::kFloat32, TransposedConv::kNative, 8}, 1e-7);
  EXPECT_EQ(d.max, 0.0);
}

// The default compute settings (transposed convolutions as matrix products on small maps and as
// convolution gradients on larger ones, the 2x2 down convolution as a matrix product) change
// only float rounding: the step's losses equal the reference's within 1e-5 and the weights after
// the step are within 1e-5 of the reference's except where a gradient is rounding noise. Adam's
// first step moves every weight by about +-lr whatever the gradient's size, so a gradient whose
// sign is noise moves its weight by up to 2 lr = 4e-4 (measured: 60 of 44.6M values; 42 before
// the 2x2 down convolution became a matrix product; 5875 when the 8x8 transposed layer used the
// gradient form too; the reference against itself on 2 threads instead of 1: 33). Over more steps
// any rounding change grows: the reference on 2 threads instead of 1 ends 5 steps 0.12 apart in a
// batch-norm running variance, ours with the gradient form 0.16.
TEST(TrainerReference, DefaultStepIsWithinRoundingOfReference) {
  if (!test::have_python_torch()) GTEST_SKIP() << "needs /usr/bin/python3 with torch";
  const Difference d = difference_to_reference(1, ComputeOptions{}, 1e-6);
  std::cout << "[ parity ] " << d.over << " of " << d.total << " values differ by more than 1e-5"
            << " (max " << d.max << ")\n";
  EXPECT_LT(static_cast<double>(d.over), 1e-3 * static_cast<double>(d.total));
  EXPECT_LE(d.max, 2 * AdamOptions{}.lr + 1e-6);
}

std::pair<std::shared_ptr<Generator>, std::shared_ptr<Discriminator>> small_models(bool dropout) {
  torch::manual_seed(0);
  GeneratorOptions g;
  g.net = "unet";
  g.num_downs = 5;
  g.ngf = 8;
  g.dropout = dropout;
  DiscriminatorOptions d;
  d.ndf = 8;
  auto generator = make_generator(g);
  auto discriminator = make_discriminator(d);
  init_weights(*generator);
  init_weights(*discriminator);
  return {generator, discriminator};
}

TEST(Trainer, DiscriminatorIsFrozenDuringTheGeneratorStep) {
  auto [generator, discriminator] = small_models(false);
  Pix2PixStep step(generator, discriminator, {}, {}, {});
  const auto a = torch::rand({1, 3, 32, 32}) * 2 - 1, b = torch::rand({1, 3, 32, 32}) * 2 - 1;
  const StateDict before = module_state_dict(*discriminator);
  std::vector<at::Tensor> d_before;
  for (const auto& [name, t] : before) d_before.push_back(t.clone());
  StepStats stats = step.step(a, b);
  // D moved exactly once (its own step); its gradients are those of D's loss only, and it is
  // trainable again afterwards.
  for (const auto& p : discriminator->parameters()) EXPECT_TRUE(p.requires_grad());
  bool changed = false;
  const StateDict after = module_state_dict(*discriminator);
  for (size_t i = 0; i < after.size(); ++i) changed |= !torch::equal(after[i].second, d_before[i]);
  EXPECT_TRUE(changed);
  EXPECT_GT(stats.d_real, 0);
  EXPECT_GT(stats.d_fake, 0);
  EXPECT_GE(stats.d_accuracy_real, 0);
  EXPECT_LE(stats.d_accuracy_real, 1);
}

// The non-finite guard: a NaN in the input makes both losses NaN; neither network is updated,
// and weights, batch-norm statistics and optimiser moments stay exactly as they were.
TEST(Trainer, NonFiniteStepIsSkippedAndChangesNothing) {
  auto [generator, discriminator] = small_models(false);
  Pix2PixStep step(generator, discriminator, {}, {}, {});
  const auto a = torch::rand({1, 3, 32, 32}) * 2 - 1, b = torch::rand({1, 3, 32, 32}) * 2 - 1;
  StepStats first = step.step(a, b);
  EXPECT_FALSE(first.skipped_g || first.skipped_d);
  auto snapshot = [&] {
    std::vector<at::Tensor> all;
    for (auto* module : {static_cast<torch::nn::Module*>(generator.get()),
                         static_cast<torch::nn::Module*>(discriminator.get())})
      for (const auto& [name, t] : module_state_dict(*module)) all.push_back(t.clone());
    for (auto* optimizer : {&step.optimizer_g(), step.optimizer_d()})
      for (const auto& [name, t] : optimizer->state()) all.push_back(t.clone());
    return all;
  };
  const std::vector<at::Tensor> before = snapshot();
  at::Tensor poisoned = a.clone();
  poisoned[0][1][5][7] = std::numeric_limits<float>::quiet_NaN();
  StepStats stats = step.step(poisoned, b);
  EXPECT_TRUE(stats.skipped_g);
  EXPECT_TRUE(stats.skipped_d);
  const std::vector<at::Tensor> after = snapshot();
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i)
    EXPECT_TRUE(torch::equal(before[i], after[i])) << "tensor " << i << " changed";
  EXPECT_FALSE(step.step(a, b).skipped_g);  // and training goes on
}

TEST(Trainer, OverfittingOnePairDrivesL1Down) {
  auto [generator, discriminator] = small_models(false);
  AdamOptions adam;
  adam.lr = 1e-3;
  Pix2PixStep step(generator, discriminator, {}, adam, adam);
  torch::manual_seed(3);
  // A learnable mapping: the target is the negative of the input.
  // 64 x 64 keeps the bottleneck at 2 x 2 (batch norm of a 1 x 1 map at batch 1 is zero).
  // A smooth image (the 8-filter U-Net cannot memorise pixel noise), target its negative.
  const auto a = torch::nn::functional::interpolate(torch::rand({1, 3, 8, 8}) * 2 - 1,
                                                    torch::nn::functional::InterpolateFuncOptions()
                                                        .size(std::vector<int64_t>{64, 64})
                                                        .mode(torch::kBilinear)
                                                        .align_corners(false)),
             b = -a;
  const double first = step.step(a, b).g_l1;
  double last = first;
  for (int i = 0; i < 150; ++i) last = step.step(a, b).g_l1;
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
}

// Gradient accumulation over 2 batches of 1 gives the gradients of one batch of 2 (instance
// norm and no dropout: nothing mixes or randomises samples).
TEST(Trainer, AccumulationEqualsTheLargerBatch) {
  auto build = [] {
    torch::manual_seed(0);
    GeneratorOptions g;
    g.net = "unet";
    g.num_downs = 5;
    g.ngf = 8;
    g.norm = Norm::kInstance;
    g.dropout = false;
    DiscriminatorOptions d;
    d.ndf = 8;
    d.norm = Norm::kInstance;
    auto generator = make_generator(g);
    auto discriminator = make_discriminator(d);
    init_weights(*generator);
    init_weights(*discriminator);
    return std::make_pair(generator, discriminator);
  };
  torch::manual_seed(9);
  const auto a = torch::rand({2, 3, 64, 64}) * 2 - 1, b = torch::rand({2, 3, 64, 64}) * 2 - 1;
  auto [g1, d1] = build();
  auto [g2, d2] = build();
  Pix2PixStep whole(g1, d1, {}, {}, {});
  Pix2PixStep accumulated(g2, d2, {}, {}, {});
  const StepStats s1 = whole.step(a, b);
  const StepStats s2 = accumulated.step(
      {{a.narrow(0, 0, 1), b.narrow(0, 0, 1)}, {a.narrow(0, 1, 1), b.narrow(0, 1, 1)}});
  EXPECT_NEAR(s1.g_l1, s2.g_l1, 1e-6);
  EXPECT_NEAR(s1.d_real, s2.d_real, 1e-6);
  EXPECT_NEAR(s1.g_gan, s2.g_gan, 1e-5);
  // The gradients the optimisers used (left in place until the next step's zero_grad).
  for (auto [m1, m2] :
       {std::make_pair<torch::nn::Module*, torch::nn::Module*>(g1.get(), g2.get()),
        std::make_pair<torch::nn::Module*, torch::nn::Module*>(d1.get(), d2.get())}) {
    auto p1 = m1->parameters(), p2 = m2->parameters();
    for (size_t i = 0; i < p1.size(); ++i)
      EXPECT_TRUE(torch::allclose(p1[i].grad(), p2[i].grad(), 1e-4, 1e-6))
          << i << ": max diff " << (p1[i].grad() - p2[i].grad()).abs().max().item<float>();
  }
}

TEST(Trainer, AblationsAndPenalty) {
  auto [generator, discriminator] = small_models(true);
  ObjectiveOptions l1_only;
  l1_only.no_gan = true;
  Pix2PixStep no_gan(generator, nullptr, l1_only, {}, {});
  const auto a = torch::rand({2, 3, 32, 32}) * 2 - 1, b = torch::rand({2, 3, 32, 32}) * 2 - 1;
  StepStats stats = no_gan.step(a, b);
  EXPECT_EQ(stats.g_gan, 0);
  EXPECT_GT(stats.g_l1, 0);

  DiscriminatorOptions unconditional;
  unconditional.ndf = 8;
  unconditional.input_nc = 3;  // D sees only the output image
  ObjectiveOptions objective;
  objective.unconditional_d = true;
  objective.gan_mode = GanMode::kWgangp;
  objective.lambda_gp = 10;
  Pix2PixStep wgan(generator, make_discriminator(unconditional), objective, {}, {});
  stats = wgan.step(a, b);
  EXPECT_GT(stats.gradient_penalty, 0);
  EXPECT_TRUE(std::isfinite(stats.d_real));
}

}  // namespace
}  // namespace pix2pix
