#include "pix2pix/device.h"

#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/nn/module.h>

#include "pix2pix/error.h"

namespace pix2pix {

// hasCUDART: the CUDA runtime is linked (hasCUDA also needs a visible GPU).
bool cuda_built() { return at::globalContext().hasCUDART(); }

int64_t cuda_device_count() {
  return cuda_built() ? static_cast<int64_t>(torch::cuda::device_count()) : 0;
}

c10::Device parse_device(const std::string& name) {
  if (name == "cpu") return c10::Device(c10::kCPU);
  if (name == "auto")
    return cuda_device_count() > 0 ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  int64_t index = -1;
  if (name == "cuda") {
    index = 0;
  } else if (name.rfind("cuda:", 0) == 0 && name.size() > 5 && name.size() < 9 &&
             name.find_first_not_of("0123456789", 5) == std::string::npos) {
    index = std::stoll(name.substr(5));
  } else {
    throw Error::option("device", "'" + name + "' is not a device: auto, cpu, cuda or cuda:N");
  }
  if (!cuda_built())
    throw Error::option("device",
                        "'" + name +
                            "': this build of libtorch has no CUDA (Debian's libtorch is CPU "
                            "only); build against a CUDA libtorch (docs/gpu.md) or use cpu");
  const int64_t count = cuda_device_count();
  if (count == 0)
    throw Error::option("device", "'" + name +
                                      "': libtorch sees no GPU (check nvidia-smi and "
                                      "CUDA_VISIBLE_DEVICES); use cpu");
  if (index >= count)
    throw Error::option("device",
                        "'" + name + "': only " + std::to_string(count) +
                            " GPU(s) visible (cuda:0 to cuda:" + std::to_string(count - 1) + ")");
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

c10::Device device_of(const torch::nn::Module& module) {
  const auto parameters = module.parameters();
  return parameters.empty() ? c10::Device(c10::kCPU) : parameters[0].device();
}

std::string describe(const c10::Device& device) { return device.str(); }

void configure_device(const c10::Device& device, bool exact_float32) {
  if (!device.is_cuda()) return;
  // Benchmarking picks algorithms by timing: not with deterministic algorithms (exact resume).
  at::globalContext().setBenchmarkCuDNN(!at::globalContext().deterministicAlgorithms());
  at::globalContext().setAllowTF32CuBLAS(!exact_float32);
  at::globalContext().setAllowTF32CuDNN(!exact_float32);
}

}  // namespace pix2pix
