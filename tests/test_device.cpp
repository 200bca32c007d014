// Devices: names, what a CPU-only libtorch answers for a GPU, and the CLI's --device on every
// command that runs a network. GPU behaviour itself is tested by tests/cuda/ (label `cuda`).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "pix2pix/device.h"
#include "pix2pix/error.h"
#include "pix2pix/models/generator.h"
#include "pix2pix/train/trainer.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;
using test::error_of;

// Runs `fn` and returns the Error's message (empty when nothing was thrown).
TEST(Device, ParsesCpuAndAuto) {
  EXPECT_EQ(parse_device("cpu"), c10::Device(c10::kCPU));
  const c10::Device automatic = parse_device("auto");
  if (cuda_device_count() > 0)
    EXPECT_EQ(automatic, c10::Device(c10::kCUDA, 0));
  else
    EXPECT_EQ(automatic, c10::Device(c10::kCPU));
  EXPECT_EQ(describe(c10::Device(c10::kCPU)), "cpu");
  EXPECT_EQ(describe(c10::Device(c10::kCUDA, 1)), "cuda:1");
}

TEST(Device, RejectsOtherNamesNamingTheField) {
  for (const std::string name : {"gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", "", "cuda:0:1"}) {
    SCOPED_TRACE(name);
    const std::string message = error_of([&] { parse_device(name); });
    EXPECT_NE(message.find("device"), std::string::npos) << message;
    EXPECT_NE(message.find("auto, cpu, cuda or cuda:N"), std::string::npos) << message;
  }
}

// Without CUDA (Debian's libtorch) or without a GPU, a GPU is refused with the reason; with
// GPUs, an index past them is.
TEST(Device, GpuIsRefusedWhereNoneCanRun) {
  const int64_t count = cuda_device_count();
  const std::string past = "cuda:" + std::to_string(count);
  const std::string message = error_of([&] { parse_device(past); });
  if (!cuda_built())
    EXPECT_NE(message.find("this build of libtorch has no CUDA"), std::string::npos) << message;
  else if (count == 0)
    EXPECT_NE(message.find("sees no GPU"), std::string::npos) << message;
  else
    EXPECT_NE(message.find("GPU(s) visible"), std::string::npos) << message;
  if (count == 0) {
    const std::string plain = error_of([] { parse_device("cuda"); });
    EXPECT_NE(plain.find("device"), std::string::npos) << plain;
  }
}

TEST(Device, DeviceOfAModuleIsWhereItsParametersAre) {
  GeneratorOptions options;
  options.net = "unet_32";
  options.ngf = 4;
  auto generator = make_generator(options);
  EXPECT_EQ(device_of(*generator), c10::Device(c10::kCPU));
  torch::nn::Module empty, elsewhere;
  EXPECT_EQ(device_of(empty), c10::Device(c10::kCPU));
  // A meta tensor stands in for a second device without a GPU.
  elsewhere.register_parameter("w", torch::empty({2}, at::TensorOptions().device(at::kMeta)));
  EXPECT_EQ(device_of(elsewhere), c10::Device(c10::kMeta));
}

// --device cpu trains here and the run records where it ran; each command that runs a network
// takes --device, and a GPU that cannot run is one line, exit 2, before anything is written.
TEST(Device, CommandsTakeTheDeviceAndRefuseAGpuTheyCannotUse) {
  const std::string dir = test::temp_dir();
  const std::string data = test::small_synth_data(dir);
  auto result =
      test::run_cli("train --data " + data + " --runs-dir " + dir +
                    "/runs --name cpu --netG unet --num-downs 6 --ngf 8 --ndf 8 --load-size 72 "
                    "--crop-size 64 --max-steps 1 --no-validate --device cpu");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const std::string run = dir + "/runs/cpu";
  std::ifstream options_file(run + "/options.json");
  EXPECT_EQ(nlohmann::json::parse(options_file)["options"]["device"], "cpu");
  std::ifstream model_file(run + "/model.txt");
  const std::string model((std::istreambuf_iterator<char>(model_file)),
                          std::istreambuf_iterator<char>());
  EXPECT_NE(model.find("device: cpu\n"), std::string::npos) << model;

  if (cuda_device_count() > 0) GTEST_SKIP() << "this machine has a GPU (tests/cuda covers it)";
  const std::string image = fs::directory_iterator(data + "/train")->path().string();
  for (const std::string& args : std::vector<std::string>{
           "train --data " + data + " --runs-dir " + dir + "/runs --name gpu --device cuda",
           "translate --weights " + run + " --out " + dir + "/out --device cuda:0 " + image,
           "serve --weights " + run + " --port 0 --device cuda",
           std::string("bench train --device cuda:0"), "bench infer --device cuda",
           "test --run " + run + " --device cuda"}) {
    SCOPED_TRACE(args);
    result = test::run_cli(args);
    EXPECT_EQ(result.exit_code, 2) << result.output;
    EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << result.output;
    EXPECT_NE(result.output.find("--device"), std::string::npos) << result.output;
    EXPECT_FALSE(fs::exists(dir + "/runs/gpu")) << "a run directory was written";
    EXPECT_FALSE(fs::exists(dir + "/out")) << "an output folder was written";
    EXPECT_FALSE(fs::exists(run + "/results")) << "a results folder was written";
  }
  result = test::run_cli("bench infer --device tpu");
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("'tpu' is not a device"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace pix2pix
