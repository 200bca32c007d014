// Run-time CPU features: detection against the kernel's view (/proc/cpuinfo), the mask that runs
// this CPU as a lesser one, bf16 refused before anything is written where the CPU lacks it,
// --precision auto, and the features recorded by train and bench.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "pix2pix/cpu.h"
#include "pix2pix/error.h"
#include "pix2pix/models/compute.h"
#include "pix2pix/threads.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;

// The flags of the first processor in /proc/cpuinfo ("flags" on x86, "Features" on arm64).
std::set<std::string> kernel_cpu_flags() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("flags", 0) != 0 && line.rfind("Features", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::set<std::string> flags;
    for (std::string word; words >> word;) flags.insert(word);
    return flags;
  }
  return {};
}

// A CLI command run as on a CPU with only `features` of this one's.
test::CommandResult run_cli_masked(const std::string& features, const std::string& args) {
  return test::run_command("PIX2PIX_CPU_FEATURES=" + features + " " + test::cli_path() + " " +
                           args + " 2>&1");
}

const char* kTinyNets =
    "--netG unet --num-downs 5 --ngf 8 --size 32 --steps 1 "
    "--warmup 0 --peak-seconds 0.01 --json";

TEST(CpuFeatures, AgreeWithTheKernelsView) {
  const std::set<std::string> flags = kernel_cpu_flags();
  if (flags.empty()) GTEST_SKIP() << "no /proc/cpuinfo flags here";
  const CpuFeatures f = detect_cpu_features();
#if defined(__x86_64__)
  EXPECT_EQ(f.architecture, "x86_64");
  EXPECT_EQ(f.avx2, flags.count("avx2") == 1);
  EXPECT_EQ(f.fma, flags.count("fma") == 1);
  EXPECT_EQ(f.avx512f, flags.count("avx512f") == 1);
  EXPECT_EQ(f.avx512bw, flags.count("avx512bw") == 1);
  EXPECT_EQ(f.avx512vl, flags.count("avx512vl") == 1);
  EXPECT_EQ(f.avx512_bf16, flags.count("avx512_bf16") == 1);
  if (!flags.count("amx_bf16")) EXPECT_FALSE(f.amx_bf16);
  EXPECT_FALSE(f.asimd || f.arm_bf16);
#elif defined(__aarch64__)
  EXPECT_EQ(f.architecture, "aarch64");
  EXPECT_EQ(f.asimd, flags.count("asimd") == 1);
  EXPECT_EQ(f.arm_bf16, flags.count("bf16") == 1);
#endif
  // The names listed are exactly the features present, and the summary shows them.
  for (const auto& name : f.names()) EXPECT_NE(f.describe().find(name), std::string::npos);
  EXPECT_EQ(f.bf16_arithmetic(), f.avx512_bf16 || f.amx_bf16 || f.arm_bf16);
}

TEST(CpuFeatures, DescribeNamesTheBaseline) {
  CpuFeatures f;
  f.architecture = "x86_64";
  EXPECT_EQ(f.describe(), "x86_64 (baseline)");
  f.avx2 = f.fma = true;
  EXPECT_EQ(f.names(), (std::vector<std::string>{"avx2", "fma"}));
  EXPECT_EQ(f.describe(), "x86_64 (avx2 fma)");
  EXPECT_TRUE(f.avx2_fma());
  EXPECT_FALSE(f.bf16_arithmetic());
  f.avx512_bf16 = true;
  EXPECT_TRUE(f.bf16_arithmetic());
  EXPECT_FALSE(f.avx512_bf16_kernels());  // needs AVX-512 F, BW and VL too
}

TEST(CpuFeatures, PrecisionAutoAndRefusalFollowTheCpu) {
  // bf16 runs only with the instructions (and oneDNN kernels for them: none for arm64 here).
  const bool bf16 = test::bf16_unavailable().empty();
  if (!cpu_features().bf16_arithmetic()) EXPECT_FALSE(bf16);
#if defined(__x86_64__)
  EXPECT_EQ(bf16, cpu_features().bf16_arithmetic());
#endif
  EXPECT_EQ(parse_precision("auto"), bf16 ? Precision::kBFloat16 : Precision::kFloat32);
  EXPECT_NO_THROW(check_precision_supported(Precision::kFloat32));
  if (bf16) {
    EXPECT_NO_THROW(check_precision_supported(Precision::kBFloat16));
  } else {
    EXPECT_THROW(check_precision_supported(Precision::kBFloat16), Error);
  }
}

// The done-when of issue 22: on a CPU without bfloat16 instructions (here made so with the mask),
// train --precision bf16 exits 2 with one line that says so and writes nothing.
TEST(CpuFeatures, TrainRefusesBf16WithoutBfloat16Instructions) {
  const std::string dir = test::temp_dir();
  fs::create_directories(dir + "/data/train");
  for (const std::string features : {"avx2,fma", "none"}) {
    SCOPED_TRACE(features);
    const auto result = run_cli_masked(features, "train --data " + dir + "/data --runs-dir " + dir +
                                                     "/runs --name bf16 --precision bf16");
    EXPECT_EQ(result.exit_code, 2) << result.output;
    EXPECT_NE(result.output.find("bfloat16 instructions"), std::string::npos) << result.output;
    EXPECT_NE(result.output.find("use fp32"), std::string::npos) << result.output;
    EXPECT_EQ(result.output.find("oneDNN"), std::string::npos) << result.output;
    EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << result.output;
    EXPECT_FALSE(fs::exists(dir + "/runs")) << "a run directory was written";
  }
}

TEST(CpuFeatures, UnknownMaskOrKernelChoiceIsRejected) {
  auto result = run_cli_masked("avx2,avx9000", "model --netG unet_128");
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("PIX2PIX_CPU_FEATURES: unknown feature 'avx9000'"),
            std::string::npos)
      << result.output;
  result = test::run_command("PIX2PIX_KERNELS=fastest " + test::cli_path() +
                             " model --netG unet_128 2>&1");
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("PIX2PIX_KERNELS"), std::string::npos) << result.output;
}

// A run records the CPU it trained on (options.json, model.txt); auto resolves to fp32 there.
TEST(CpuFeatures, TrainRecordsTheCpuAndResolvesAuto) {
  const std::string dir = test::temp_dir();
  ASSERT_EQ(test::run_cli("data synth --out " + dir + "/data --train 2 --val 0 --test 0 --size 64")
                .exit_code,
            0);
  const auto result = run_cli_masked(
      "avx2,fma", "train --data " + dir + "/data --runs-dir " + dir +
                      "/runs --name auto --netG unet --num-downs 6 --ngf 8 --ndf 8 --load-size 72 "
                      "--crop-size 64 --max-steps 1 --no-validate --precision auto");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::ifstream options_file(dir + "/runs/auto/options.json");
  const auto options = nlohmann::json::parse(options_file);
  EXPECT_EQ(options["options"]["precision"], "fp32");
  EXPECT_EQ(options["cpu"]["architecture"], cpu_features().architecture);
  CpuFeatures masked = detect_cpu_features();
  masked = CpuFeatures{masked.architecture, masked.avx2, masked.fma};
  EXPECT_EQ(options["cpu"]["features"].get<std::vector<std::string>>(), masked.names());
  std::ifstream model_file(dir + "/runs/auto/model.txt");
  const std::string model((std::istreambuf_iterator<char>(model_file)),
                          std::istreambuf_iterator<char>());
  EXPECT_NE(model.find("cpu: " + masked.describe()), std::string::npos) << model;
}

// bench reports the CPU; --precision auto falls back to fp32 where bf16 cannot run, and the bf16
// matmul peak is measured only where bf16 is real.
TEST(CpuFeatures, BenchReportsTheCpuAndResolvesAuto) {
  const auto masked =
      run_cli_masked("avx2,fma", std::string("bench infer --precision auto ") + kTinyNets);
  ASSERT_EQ(masked.exit_code, 0) << masked.output;
  const auto json = nlohmann::json::parse(masked.output.substr(masked.output.find('{')));
  EXPECT_EQ(json["precision"], "fp32");
  EXPECT_TRUE(json["matmul_peak_gflops_bf16"].is_null());
  EXPECT_GT(json["matmul_peak_gflops_fp32"].get<double>(), 0);
  const auto features = json["cpu_features"].get<std::vector<std::string>>();
  for (const auto& name : features) EXPECT_TRUE(name == "avx2" || name == "fma") << name;
  EXPECT_NE(json["cpu"].get<std::string>().find(cpu_features().architecture), std::string::npos);

  const auto native = test::run_cli(std::string("bench infer --precision auto ") + kTinyNets);
  ASSERT_EQ(native.exit_code, 0) << native.output;
  const auto native_json = nlohmann::json::parse(native.output.substr(native.output.find('{')));
  EXPECT_EQ(native_json["precision"], test::bf16_unavailable().empty() ? "bf16" : "fp32");
  EXPECT_EQ(native_json["cpu_features"].get<std::vector<std::string>>(), cpu_features().names());
}

// Beside as many busy processes as there are cores, adaptive threads drop to one; switched off,
// the thread count stays as set.
TEST(AdaptiveThreads, DropToOneBesideAFullLoad) {
  const int cores = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  if (cores < 2) GTEST_SKIP() << "one core: nothing to adapt";
  std::vector<pid_t> load;
  for (int i = 0; i < cores; ++i) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0)
      for (volatile unsigned spin = 0;; spin = spin + 1) {
      }
    load.push_back(pid);
  }
  const int before = at::get_num_threads();
  at::set_num_threads(cores);
  auto look_twice = [] {
    adapt_threads();
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    adapt_threads();
  };
  set_adaptive_threads(0);
  look_twice();
  const int when_off = at::get_num_threads();
  set_adaptive_threads(cores);
  look_twice();
  const int when_on = at::get_num_threads();
  set_adaptive_threads(0);
  for (const pid_t pid : load) kill(pid, SIGKILL);
  for (const pid_t pid : load) waitpid(pid, nullptr, 0);
  at::set_num_threads(before);
  EXPECT_EQ(when_off, cores);
  EXPECT_EQ(when_on, 1);
}

}  // namespace
}  // namespace pix2pix
