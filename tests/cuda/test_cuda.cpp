// The networks, the training step, checkpoints and translation on an NVIDIA GPU (label `cuda`):
// against the CPU, against PyTorch eager on the same GPU (bench/eager_step.py) and against
// themselves (resume, tiling). Every test skips where libtorch sees no GPU (Debian's libtorch is
// CPU only); scripts/gpu-check.sh runs them on a lent GPU machine.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "pix2pix/device.h"
#include "pix2pix/infer/translator.h"
#include "pix2pix/io/pytorch_import.h"
#include "pix2pix/models/compute.h"
#include "pix2pix/models/discriminator.h"
#include "pix2pix/models/generator.h"
#include "pix2pix/models/init.h"
#include "pix2pix/train/step.h"
#include "pix2pix/train/trainer.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;

#define PIX2PIX_SKIP_WITHOUT_GPU()                                                     \
  if (cuda_device_count() == 0)                                                        \
  GTEST_SKIP() << (cuda_built() ? "libtorch sees no GPU"                               \
                                : "this libtorch has no CUDA (Debian's is CPU only): " \
                                  "scripts/gpu-check.sh builds against a CUDA one")

const c10::Device kGpu(c10::kCUDA, 0);

// float32 on the GPU as on the CPU: no TF32, cuDNN's default (not benchmarked) algorithms.
void exact_float32() {
  configure_device(kGpu, /*exact_float32=*/true);
  at::globalContext().setBenchmarkCuDNN(false);
}

// max |a - b| over max(1, max |b|): a relative bound for outputs of any scale.
double relative_difference(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.to(at::kCPU, at::kDouble), y = b.to(at::kCPU, at::kDouble);
  return (x - y).abs().max().item<double>() / std::max(1.0, y.abs().max().item<double>());
}

TEST(Cuda, NetworksForwardEqualTheCpu) {
  PIX2PIX_SKIP_WITHOUT_GPU();
  exact_float32();
  torch::manual_seed(0);
  GeneratorOptions g_options;  // unet_256, batch norm, as the paper
  auto generator = make_generator(g_options);
  auto discriminator = make_discriminator({});
  init_weights(*generator);
  init_weights(*discriminator);
  const at::Tensor x = torch::rand({2, 3, 256, 256}) * 2 - 1;
  torch::NoGradGuard no_grad;
  for (const bool train : {false, true}) {
    SCOPED_TRACE(train ? "train mode" : "eval mode");
    generator->train(train);
    discriminator->train(train);
    torch::manual_seed(1);  // dropout: the CPU's and the GPU's masks differ, so eval mode only
    const at::Tensor cpu_fake = generator->forward(x);
    const at::Tensor cpu_logits = discriminator->forward(at::cat({x, cpu_fake}, 1));
    generator->to(kGpu);
    discriminator->to(kGpu);
    const at::Tensor gpu_logits =
        discriminator->forward(at::cat({x.to(kGpu), cpu_fake.to(kGpu)}, 1));
    EXPECT_LT(relative_difference(gpu_logits, cpu_logits), 1e-4);
    if (!train) {
      const at::Tensor gpu_fake = generator->forward(x.to(kGpu));
      EXPECT_LT(relative_difference(gpu_fake, cpu_fake), 1e-4);
    }
    generator->to(at::kCPU);
    discriminator->to(at::kCPU);
  }
}

// The interpreter with a CUDA PyTorch: PIX2PIX_CUDA_PYTHON, else the lent machine's venv.
std::string cuda_python() {
  if (const char* python = std::getenv("PIX2PIX_CUDA_PYTHON")) return python;
  return fs::exists("/opt/torch/.venv/bin/python") ? "/opt/torch/.venv/bin/python" : "python3";
}

// From the same weights, inputs and seed, three steps of ours and of PyTorch eager on the GPU.
// Adam's first steps move each weight by about lr whatever its gradient's size, so a gradient
// whose sign is rounding noise moves a weight by up to 2 lr = 4e-4: a few such weights are
// allowed (the CPU parity test measured 60 of 44.6M), nothing else.
TEST(Cuda, ThreeStepsEqualPyTorchEager) {
  PIX2PIX_SKIP_WITHOUT_GPU();
  exact_float32();
  const std::string dir = test::temp_dir();
  const int seed = 4, steps = 3;
  const auto trace = test::run_command(
      cuda_python() + " " + test::source_dir() +
      "/bench/eager_step.py --netG unet_128 --size 128 --device cuda --seed " +
      std::to_string(seed) + " --steps " + std::to_string(steps) + " --trace " + dir + " 2>&1");
  ASSERT_EQ(trace.exit_code, 0) << trace.output;

  GeneratorOptions g_options;
  g_options.net = "unet_128";
  auto generator = make_generator(g_options);
  auto discriminator = make_discriminator({});
  load_state_dict(*generator, read_state_dict(dir + "/init_G.pth"), "init_G.pth");
  load_state_dict(*discriminator, read_state_dict(dir + "/init_D.pth"), "init_D.pth");
  generator->to(kGpu);
  discriminator->to(kGpu);
  const StateDict inputs = read_state_dict(dir + "/inputs.pt");
  ASSERT_EQ(inputs.size(), 2u);
  Pix2PixStep step(generator, discriminator, {}, {}, {});
  torch::manual_seed(seed + 1);
  StepStats stats;
  for (int i = 0; i < steps; ++i)
    stats = step.step(inputs[0].second.to(kGpu), inputs[1].second.to(kGpu));

  int64_t over = 0, total = 0;
  for (const auto& [file, module] : std::vector<std::pair<std::string, torch::nn::Module*>>{
           {"final_G.pth", generator.get()}, {"final_D.pth", discriminator.get()}}) {
    const StateDict expected = read_state_dict(dir + "/" + file);
    const StateDict ours = module_state_dict(*module);
    ASSERT_EQ(expected.size(), ours.size());
    for (size_t i = 0; i < ours.size(); ++i) {
      const at::Tensor diffs =
          (ours[i].second.to(at::kCPU, at::kDouble) - expected[i].second.to(at::kDouble)).abs();
      over += diffs.gt(1e-4).sum().item<int64_t>();
      total += diffs.numel();
      EXPECT_LT(diffs.max().item<double>(), 1e-3) << file << " " << ours[i].first;
    }
  }
  std::cout << "[ parity ] " << over << " of " << total << " values differ by more than 1e-4\n";
  EXPECT_LE(over, total / 100000);
  std::ifstream losses_file(dir + "/losses.json");
  const auto losses = nlohmann::json::parse(losses_file);
  EXPECT_NEAR(stats.g_gan + 100.0 * stats.g_l1, losses["loss_G"].get<double>(), 1e-4);
  EXPECT_NEAR(0.5 * (stats.d_fake + stats.d_real), losses["loss_D"].get<double>(), 1e-4);
}

TEST(Cuda, CheckpointRoundTripGpuFileCpuGpu) {
  PIX2PIX_SKIP_WITHOUT_GPU();
  const std::string dir = test::temp_dir();
  torch::manual_seed(0);
  GeneratorOptions options;
  options.net = "unet_128";
  auto on_gpu = make_generator(options);
  init_weights(*on_gpu);
  on_gpu->to(kGpu);
  write_state_dict(dir + "/G.pth", module_state_dict(*on_gpu));
  auto on_cpu = make_generator(options);
  load_state_dict(*on_cpu, read_state_dict(dir + "/G.pth"), "G.pth");
  auto back = make_generator(options);
  back->to(kGpu);
  load_state_dict(*back, module_state_dict(*on_cpu), "cpu");
  const StateDict a = module_state_dict(*on_gpu), b = module_state_dict(*on_cpu),
                  c = module_state_dict(*back);
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(a[i].first);
    EXPECT_TRUE(b[i].second.device().is_cpu());
    EXPECT_TRUE(c[i].second.device().is_cuda());
    EXPECT_TRUE(torch::equal(a[i].second.cpu(), b[i].second));
    EXPECT_TRUE(torch::equal(c[i].second.cpu(), b[i].second));
  }
}

// Deterministic algorithms on the GPU: 4 steps at once equal 2 steps, a resume and 2 more
// (weights, moments and the CUDA generator's state for dropout come back from the checkpoint).
TEST(Cuda, ResumeIsExact) {
  PIX2PIX_SKIP_WITHOUT_GPU();
  setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", 1);  // cuBLAS's deterministic mode needs it
  const std::string dir = test::temp_dir();
  const std::string data = test::small_synth_data(dir);
  auto options = [&](const std::string& name, int64_t steps) {
    TrainOptions o = test::small_train_options(data, dir, name);
    o.compute.device = kGpu;
    o.deterministic = true;
    o.max_steps = steps;
    o.validate = false;
    o.tensorboard = false;
    return o;
  };
  train(options("straight", 4));
  train(options("resumed", 2));
  TrainOptions resume = options("resumed", 4);
  resume.resume = true;
  train(resume);
  const StateDict a = read_state_dict(dir + "/runs/straight/checkpoints/latest_net_G.pth");
  const StateDict b = read_state_dict(dir + "/runs/resumed/checkpoints/latest_net_G.pth");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
}

// Tiles on the GPU: the whole image's output where the overlap covers the receptive field, and
// the CPU's output within float rounding.
TEST(Cuda, TiledTranslationEqualsWholeImage) {
  PIX2PIX_SKIP_WITHOUT_GPU();
  exact_float32();
  auto generator = test::small_eval_unet();
  const at::Tensor x = torch::rand({1, 3, 750, 1000}) * 2 - 1;
  const at::Tensor cpu_whole = Translator(generator).translate_tensor(x, "x");
  generator->to(kGpu);
  TranslateOptions tiled_options;
  tiled_options.tile = 384;
  tiled_options.overlap = 256;
  const at::Tensor whole = Translator(generator).translate_tensor(x, "x");
  const at::Tensor tiled = Translator(generator, tiled_options).translate_tensor(x, "x");
  EXPECT_TRUE(whole.device().is_cpu());
  EXPECT_LT((tiled - whole).abs().max().item<double>(), 1e-5);
  EXPECT_LT((whole - cpu_whole).abs().max().item<double>(), 1e-4);
}

TEST(Cuda, Bf16StepsHaveFiniteLossesAndLearn) {
  PIX2PIX_SKIP_WITHOUT_GPU();
  torch::manual_seed(0);
  GeneratorOptions g_options;
  g_options.net = "unet_128";
  auto generator = make_generator(g_options);
  auto discriminator = make_discriminator({});
  init_weights(*generator);
  init_weights(*discriminator);
  generator->to(kGpu);
  discriminator->to(kGpu);
  ComputeOptions compute;
  compute.device = kGpu;
  compute.precision = Precision::kBFloat16;
  set_compute(*generator, compute);
  set_compute(*discriminator, compute);
  Pix2PixStep step(generator, discriminator, {}, {}, {});
  const at::Tensor x = (torch::rand({1, 3, 128, 128}) * 2 - 1).to(kGpu);
  const at::Tensor y = (torch::rand({1, 3, 128, 128}) * 2 - 1).to(kGpu);
  const at::Tensor before = generator->parameters()[0].detach().clone();
  for (int i = 0; i < 3; ++i) {
    const StepStats stats = step.step(x, y);
    EXPECT_FALSE(stats.skipped_d || stats.skipped_g) << "step " << i;
    EXPECT_TRUE(std::isfinite(stats.g_gan + stats.g_l1 + stats.d_fake + stats.d_real));
  }
  EXPECT_FALSE(torch::equal(before, generator->parameters()[0].detach()));
}

}  // namespace
}  // namespace pix2pix
