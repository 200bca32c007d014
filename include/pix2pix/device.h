// Where the networks run: the CPU, or an NVIDIA GPU through a CUDA build of libtorch. Everything
// that is not a network (data loading, image files, metrics' image comparisons) stays on the
// CPU; tensors cross once per batch. The CPU's hand-written kernels (cpu.h) are only chosen for
// CPU tensors, so a CUDA run uses libtorch's own operations throughout.
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace torch::nn {
class Module;
}

namespace pix2pix {

/// Parses a device name: "cpu", "cuda" (GPU 0), "cuda:N", or "auto" (the first GPU when this
/// libtorch has CUDA and sees one, else the CPU). Throws Error (field "device") for another name,
/// for a CUDA device when this libtorch is built without CUDA (Debian's is CPU only) or sees no
/// GPU, and for an index past the GPUs it sees: before anything is written.
c10::Device parse_device(const std::string& name);

/// Whether this libtorch was built with CUDA (whether or not a GPU is visible).
bool cuda_built();
/// How many GPUs this libtorch sees (0 without CUDA).
int64_t cuda_device_count();

/// Where `module`'s parameters are (its first parameter's device; the CPU when it has none).
c10::Device device_of(const torch::nn::Module& module);

/// One line for logs, run records and benchmark tables: "cpu" or "cuda:0".
std::string describe(const c10::Device& device);

/// Speed settings that apply to every CUDA network of the process: cuDNN picks its fastest
/// convolution algorithm per shape (cudnn.benchmark; not under deterministic algorithms) and
/// TF32 is allowed in matrix products and convolutions unless `exact_float32` (the tests'
/// numbers against the CPU are fp32). No-op on the CPU.
void configure_device(const c10::Device& device, bool exact_float32 = false);

}  // namespace pix2pix
