// The fused Adam (bitwise equal to torch's Adam) and the learning-rate schedules' curves.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <functional>
#include <limits>
#include <utility>

#include "pix2pix/cpu.h"
#include "pix2pix/error.h"
#include "pix2pix/train/optim.h"
#include "train/adam_kernel.h"

namespace pix2pix {
namespace {

// Runs `steps` updates with the same random gradients through our Adam and torch's.
void expect_bitwise_equal_to_torch(const AdamOptions& options, int steps) {
  torch::manual_seed(0);
  // Sizes that exercise vector bodies and scalar tails, and one split over threads (several
  // parallel tasks of 65,536 elements and a ragged last one).
  std::vector<std::vector<int64_t>> shapes = {{64, 3, 4, 4}, {17}, {1}, {513, 7}, {300007}};
  std::vector<at::Tensor> ours, theirs;
  for (const auto& shape : shapes) {
    auto p = torch::randn(shape);
    ours.push_back(p.clone().requires_grad_(true));
    theirs.push_back(p.clone().requires_grad_(true));
  }
  Adam adam(ours, options);
  torch::optim::Adam reference(theirs, torch::optim::AdamOptions(options.lr)
                                           .betas({options.beta1, options.beta2})
                                           .eps(options.eps)
                                           .weight_decay(options.weight_decay));
  for (int step = 0; step < steps; ++step) {
    for (size_t i = 0; i < ours.size(); ++i) {
      auto grad = torch::randn(ours[i].sizes()) * (step + 1);
      ours[i].mutable_grad() = grad.clone();
      theirs[i].mutable_grad() = grad.clone();
    }
    if (step == 2) ours[1].mutable_grad() = at::Tensor(), theirs[1].mutable_grad() = at::Tensor();
    adam.step();
    reference.step();
  }
  for (size_t i = 0; i < ours.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_TRUE(torch::equal(ours[i], theirs[i]))
        << "max diff " << (ours[i] - theirs[i]).abs().max().item<float>();
  }
}

TEST(Adam, BitwiseEqualToTorchAdam) { expect_bitwise_equal_to_torch({}, 10); }

// The tensor-operation form, which GPUs run, checked on the CPU: the same numbers as torch's.
TEST(Adam, TensorFormBitwiseEqualToTorchAdam) {
  AdamOptions options;
  options.fused = false;
  expect_bitwise_equal_to_torch(options, 10);
  options.weight_decay = 0.01;
  options.beta1 = 0.9;
  expect_bitwise_equal_to_torch(options, 5);
}

// The tensor form also keeps a bfloat16 working copy equal to the rounded parameter.
TEST(Adam, TensorFormWritesTheBf16Copy) {
  torch::manual_seed(1);
  at::Tensor p = torch::randn({1000}).requires_grad_(true);
  at::Tensor fused_p = p.detach().clone().requires_grad_(true);
  AdamOptions options;
  options.fused = false;
  Adam tensor_form({p}, options), fused({fused_p});
  at::Tensor copy = p.detach().to(at::kBFloat16).contiguous();
  tensor_form.set_bfloat16_copy(p, copy);
  for (int step = 0; step < 3; ++step) {
    const at::Tensor grad = torch::randn({1000});
    p.mutable_grad() = grad.clone();
    fused_p.mutable_grad() = grad.clone();
    tensor_form.step();
    fused.step();
    EXPECT_TRUE(torch::equal(p, fused_p)) << "step " << step;
    EXPECT_TRUE(torch::equal(copy, p.detach().to(at::kBFloat16))) << "step " << step;
  }
}

TEST(Adam, ParametersMustShareOneDevice) {
  // A meta tensor stands in for a second device (no GPU needed).
  at::Tensor cpu = torch::zeros({3});
  at::Tensor meta = torch::empty({3}, at::TensorOptions().device(at::kMeta));
  EXPECT_THROW(Adam({cpu, meta}), Error);
}

// Adam's kernel is chosen from the CPU at run time; PIX2PIX_KERNELS=portable forces the
// portable one (CI runs the compute tests a second time so).
TEST(AdamKernel, ChosenFromTheCpu) {
  const bool avx2 = cpu_features().avx2_fma() && !portable_kernels_forced();
  EXPECT_EQ(detail::default_adam_kernel(),
            avx2 ? detail::AdamKernel::kAvx2Fma : detail::AdamKernel::kPortable);
  EXPECT_STREQ(detail::to_string(detail::default_adam_kernel()), avx2 ? "avx2_fma" : "portable");
}

// The portable form gives the AVX2 + FMA form's bits: float and bfloat16 gradients, weight
// decay, the bfloat16 copy, vector bodies and scalar tails.
TEST(AdamKernel, PortableEqualsAvx2FmaBitwise) {
  if (!cpu_features().avx2_fma())
    GTEST_SKIP() << "this CPU, " << cpu_features().describe()
                 << ", has no AVX2 + FMA: only the portable kernel runs here (Adam.* test it)";
  torch::manual_seed(9);
  for (const size_t n : {size_t{1}, size_t{7}, size_t{4099}, size_t{70001}}) {
    SCOPED_TRACE(n);
    const at::Tensor init = torch::randn({static_cast<int64_t>(n)});
    struct State {
      at::Tensor param, m, v, copy;
    };
    auto fresh = [&] {
      return State{init.clone(), torch::zeros_like(init), torch::zeros_like(init),
                   torch::empty_like(init, at::kBFloat16)};
    };
    State portable = fresh(), avx2 = fresh();
    auto run = [&](State& s, const at::Tensor& grad, const detail::AdamStep& hyper,
                   detail::AdamKernel kernel) {
      auto* copy = reinterpret_cast<uint16_t*>(s.copy.data_ptr<at::BFloat16>());
      if (grad.scalar_type() == at::kBFloat16)
        detail::adam_update(s.param.data_ptr<float>(),
                            reinterpret_cast<const uint16_t*>(grad.data_ptr<at::BFloat16>()),
                            s.m.data_ptr<float>(), s.v.data_ptr<float>(), n, hyper, copy, kernel);
      else
        detail::adam_update(s.param.data_ptr<float>(), grad.data_ptr<float>(),
                            s.m.data_ptr<float>(), s.v.data_ptr<float>(), n, hyper, copy, kernel);
    };
    for (int64_t step = 1; step <= 6; ++step) {
      at::Tensor grad = torch::randn({static_cast<int64_t>(n)}) * static_cast<double>(step);
      if (step % 2 == 0) grad = grad.to(at::kBFloat16);
      const detail::AdamStep hyper{2e-4, 0.5, 0.999, 1e-8, step > 3 ? 0.01 : 0.0, step};
      run(portable, grad, hyper, detail::AdamKernel::kPortable);
      run(avx2, grad, hyper, detail::AdamKernel::kAvx2Fma);
    }
    EXPECT_TRUE(torch::equal(portable.param, avx2.param));
    EXPECT_TRUE(torch::equal(portable.m, avx2.m));
    EXPECT_TRUE(torch::equal(portable.v, avx2.v));
    EXPECT_TRUE(torch::equal(portable.copy.view(at::kShort), avx2.copy.view(at::kShort)));
    EXPECT_FALSE(torch::equal(portable.param, init));
  }
}

TEST(Adam, BitwiseEqualWithWeightDecayAndOtherBetas) {
  AdamOptions options;
  options.lr = 1e-3;
  options.beta1 = 0.9;
  options.weight_decay = 1e-2;
  expect_bitwise_equal_to_torch(options, 6);
}

TEST(Adam, StateRoundTripContinuesIdentically) {
  torch::manual_seed(1);
  auto a = torch::randn({10, 10}).requires_grad_(true);
  auto b = a.detach().clone().requires_grad_(true);
  Adam first({a}), second({b});
  auto grad = torch::randn({10, 10});
  a.mutable_grad() = grad.clone();
  b.mutable_grad() = grad.clone();
  first.step();
  second.step();
  Adam resumed({b});
  resumed.load_state(second.state(), "state");
  a.mutable_grad() = grad.clone();
  b.mutable_grad() = grad.clone();
  first.step();
  resumed.step();
  EXPECT_TRUE(torch::equal(a, b));
  StateDict bad = first.state();
  bad[0].second = torch::zeros({3});
  EXPECT_THROW(resumed.load_state(bad, "state"), Error);
}

TEST(Adam, ZeroGradSetsToNone) {
  auto p = torch::randn({3}).requires_grad_(true);
  Adam adam({p});
  p.sum().backward();
  ASSERT_TRUE(p.grad().defined());
  adam.zero_grad();
  EXPECT_FALSE(p.grad().defined());
}

// bf16 training leaves bfloat16 gradients on float32 weights: the update equals the one for
// the same gradient widened to float32, bit for bit (and the non-finite guard reads them too).
TEST(Adam, Bf16GradientsEqualTheirFloat32Widening) {
  torch::manual_seed(4);
  const int64_t n = 200003;  // several parallel tasks
  auto a = torch::randn({n}).requires_grad_(true);
  auto b = a.detach().clone().requires_grad_(true);
  Adam ours({a}), widened({b});
  for (int step = 0; step < 4; ++step) {
    const at::Tensor grad = torch::randn({n}).to(at::kBFloat16);
    a.mutable_grad() = grad;
    b.mutable_grad() = grad.to(at::kFloat);
    ASSERT_TRUE(ours.gradients_finite());
    ours.step();
    widened.step();
  }
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, b.detach() * 0));  // moved
  a.mutable_grad() = torch::randn({n}).to(at::kBFloat16);
  a.mutable_grad()[n - 2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(ours.gradients_finite());
}

// bf16 training registers each convolution's bfloat16 working copy: every step rewrites it with
// the updated parameter rounded exactly as Tensor.to(kBFloat16) rounds (nearest even), bumps its
// version with the parameter's, and changes nothing in the update itself.
TEST(Adam, Bf16CopyEqualsTheRoundedParameterAfterEveryStep) {
  torch::manual_seed(5);
  const int64_t n = 300007;  // several parallel tasks and copy blocks, and a ragged end
  auto a = torch::randn({n}).requires_grad_(true);
  auto b = a.detach().clone().requires_grad_(true);
  // Values that sit exactly halfway between two bfloat16 numbers round to the even one.
  {
    torch::NoGradGuard no_grad;
    a.narrow(0, 0, 3).copy_(torch::tensor({1.00390625f, 1.01171875f, -1.00390625f}));
    b.narrow(0, 0, 3).copy_(a.narrow(0, 0, 3));
  }
  at::Tensor copy = a.detach().to(at::kBFloat16);
  Adam with_copy({a}), plain({b});
  with_copy.set_bfloat16_copy(a, copy);
  const auto copy_version = copy._version(), param_version = a._version();
  for (int step = 0; step < 3; ++step) {
    const at::Tensor grad = torch::randn({n}).to(at::kBFloat16);
    grad.narrow(0, 0, 3).zero_();  // the halfway values stay where they are
    a.mutable_grad() = grad;
    b.mutable_grad() = grad;
    with_copy.step();
    plain.step();
    ASSERT_TRUE(torch::equal(copy, a.detach().to(at::kBFloat16))) << "step " << step;
  }
  EXPECT_TRUE(torch::equal(a, b));  // the update is unchanged
  EXPECT_EQ(copy._version() - copy_version, a._version() - param_version);
  EXPECT_EQ(a._version() - param_version, 3u);
  EXPECT_TRUE(
      torch::equal(copy.narrow(0, 0, 3).to(at::kFloat), torch::tensor({1.0f, 1.015625f, -1.0f})));
  // A state restored from a checkpoint keeps the registration.
  Adam restored({a});
  restored.set_bfloat16_copy(a, copy);
  restored.load_state(with_copy.state(), "state");
  a.mutable_grad() = torch::randn({n}).to(at::kBFloat16);
  restored.step();
  EXPECT_TRUE(torch::equal(copy, a.detach().to(at::kBFloat16)));
}

TEST(Adam, Bf16CopyMustBelongAndFit) {
  auto a = torch::zeros({4, 3}).requires_grad_(true);
  auto other = torch::zeros({4, 3}).requires_grad_(true);
  Adam adam({a});
  EXPECT_THROW(adam.set_bfloat16_copy(other, other.detach().to(at::kBFloat16)), Error);
  EXPECT_THROW(adam.set_bfloat16_copy(a, torch::zeros({12}, at::kBFloat16)), Error);
  EXPECT_THROW(adam.set_bfloat16_copy(a, torch::zeros({4, 3})), Error);
  EXPECT_THROW(adam.set_bfloat16_copy(a, torch::zeros({3, 4}, at::kBFloat16).t()), Error);
  EXPECT_NO_THROW(adam.set_bfloat16_copy(a, torch::zeros({4, 3}, at::kBFloat16)));
}

// The non-finite guard sees a NaN or an infinity wherever it is (the check runs in parallel
// tasks over large gradients).
TEST(Adam, GradientsFiniteFindsNanAndInfinityAnywhere) {
  const int64_t n = 300007;
  auto small = torch::zeros({5}).requires_grad_(true);
  auto large = torch::zeros({n}).requires_grad_(true);
  Adam adam({small, large});
  small.mutable_grad() = torch::randn({5});
  large.mutable_grad() = torch::randn({n});
  EXPECT_TRUE(adam.gradients_finite());
  for (const int64_t at : {int64_t{0}, int64_t{70000}, n / 2, n - 1})
    for (const float bad :
         {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity()}) {
      SCOPED_TRACE("element " + std::to_string(at) + " = " + std::to_string(bad));
      large.mutable_grad() = torch::randn({n});
      large.mutable_grad()[at] = bad;
      EXPECT_FALSE(adam.gradients_finite());
    }
  large.mutable_grad() = at::Tensor();  // no gradient: nothing to check
  small.mutable_grad()[4] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(adam.gradients_finite());
}

// CPU seconds used by the calling thread and by the whole process so far.
std::pair<double, double> thread_and_process_cpu() {
  const auto seconds = [](const rusage& u) {
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
  };
  rusage thread{}, process{};
  getrusage(RUSAGE_THREAD, &thread);
  getrusage(RUSAGE_SELF, &process);
  return {seconds(thread), seconds(process)};
}

// The update and the gradient check are memory-bound passes split over the intra-op threads: with
// two threads, the other thread does about half the work (a build whose at::parallel_for compiles
// without OpenMP runs them on the calling thread alone, and takes twice as long in training).
TEST(Adam, StepAndGradientCheckRunOnEveryIntraOpThread) {
  const int previous = at::get_num_threads();
  at::set_num_threads(2);
  auto p = torch::randn({1 << 23}).requires_grad_(true);
  p.mutable_grad() = torch::randn({1 << 23});
  Adam adam({p});
  adam.step();  // allocates the moments
  const auto share_of_other_threads = [](const std::function<void()>& work) {
    const auto [thread0, process0] = thread_and_process_cpu();
    work();
    const auto [thread1, process1] = thread_and_process_cpu();
    const double caller = thread1 - thread0, others = (process1 - process0) - caller;
    return others / (others + caller);
  };
  const double step_share = share_of_other_threads([&] {
    for (int i = 0; i < 20; ++i) adam.step();
  });
  const double check_share = share_of_other_threads([&] {
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(adam.gradients_finite());
  });
  at::set_num_threads(previous);
  EXPECT_GT(step_share, 0.25);  // an even split gives 0.5, a serial pass 0
  EXPECT_GT(check_share, 0.25);
}

TEST(LrSchedule, LinearMatchesTheReferenceFormula) {
  LrSchedule schedule;  // 100 + 100 epochs
  EXPECT_DOUBLE_EQ(schedule.factor(1), 1.0);
  EXPECT_DOUBLE_EQ(schedule.factor(100), 1.0);
  EXPECT_DOUBLE_EQ(schedule.factor(101), 1.0 - 1.0 / 101.0);
  EXPECT_DOUBLE_EQ(schedule.factor(150), 1.0 - 50.0 / 101.0);
  EXPECT_DOUBLE_EQ(schedule.factor(200), 1.0 - 100.0 / 101.0);
  ScheduleOptions resumed;  // the reference's --epoch_count shifts nothing in the formula's value
  resumed.epoch_count = 51;
  EXPECT_DOUBLE_EQ(LrSchedule(resumed).factor(101), 1.0 - 1.0 / 101.0);
}

TEST(LrSchedule, StepCosinePlateau) {
  ScheduleOptions step;
  step.policy = LrPolicy::kStep;
  step.lr_decay_epochs = 50;
  LrSchedule s(step);
  EXPECT_DOUBLE_EQ(s.factor(50), 1.0);
  EXPECT_NEAR(s.factor(51), 0.1, 1e-12);
  EXPECT_NEAR(s.factor(101), 0.01, 1e-12);

  ScheduleOptions cosine;
  cosine.policy = LrPolicy::kCosine;
  LrSchedule c(cosine);
  EXPECT_DOUBLE_EQ(c.factor(1), 1.0);
  EXPECT_NEAR(c.factor(101), 0.5, 1e-12);
  EXPECT_NEAR(c.factor(201), 0.0, 1e-12);

  ScheduleOptions plateau;
  plateau.policy = LrPolicy::kPlateau;
  plateau.plateau_patience = 2;
  LrSchedule p(plateau);
  p.observe(1.0);
  p.observe(0.995);  // less than 1% better: a bad epoch
  p.observe(0.999);
  EXPECT_DOUBLE_EQ(p.factor(3), 1.0);
  p.observe(1.2);  // third bad epoch > patience 2: reduce
  EXPECT_DOUBLE_EQ(p.factor(4), 0.2);
  p.observe(0.5);
  EXPECT_DOUBLE_EQ(p.factor(5), 0.2);
  LrSchedule restored(plateau);
  restored.load_state(p.state());
  EXPECT_DOUBLE_EQ(restored.factor(5), 0.2);
}

TEST(LrSchedule, ParseNames) {
  EXPECT_EQ(parse_lr_policy("cosine"), LrPolicy::kCosine);
  EXPECT_THROW(parse_lr_policy("exponential"), Error);
}

}  // namespace
}  // namespace pix2pix
