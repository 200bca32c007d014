// libFuzzer target for the checkpoint reader (src/io/pytorch_import.cpp, src/io/unpickler.cpp):
// arbitrary bytes go through read_state_dict (zip and legacy torch.save formats). The documented
// contract is that every failure is a pix2pix::Error, so only that is caught: any other exception,
// a crash, a sanitizer report, a leak or a hang is a finding. Every tensor that comes back must lie
// inside its storage; its first and last bytes are read from instrumented code so that ASan sees an
// out-of-bounds view. Seeds: fuzz/corpus/checkpoint/. Run with scripts/fuzz.sh.
#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "fuzz_util.h"
#include "pix2pix/error.h"
#include "pix2pix/io/pytorch_import.h"

namespace {

void check_inside_storage(const at::Tensor& tensor) {
  if (!tensor.defined() || !tensor.device().is_cpu()) std::abort();
  if (tensor.numel() == 0) return;
  // Byte range [first, last] the tensor can reach through its sizes and strides.
  const int64_t element = static_cast<int64_t>(tensor.element_size());
  int64_t last = tensor.storage_offset();
  if (last < 0) std::abort();
  for (int64_t d = 0; d < tensor.dim(); ++d) {
    if (tensor.stride(d) < 0) std::abort();
    last += (tensor.size(d) - 1) * tensor.stride(d);
  }
  const int64_t first_byte = tensor.storage_offset() * element;
  const int64_t last_byte = (last + 1) * element - 1;
  if (last_byte >= static_cast<int64_t>(tensor.storage().nbytes())) std::abort();
  const auto* base = static_cast<const volatile uint8_t*>(tensor.storage().data());
  uint8_t sum = base[first_byte];
  sum += base[last_byte];
  volatile uint8_t sink = sum;
  (void)sink;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const pix2pix::fuzz::ScratchFile file("checkpoint");
  file.write(data, size);
  try {
    const pix2pix::StateDict dict = pix2pix::read_state_dict(file.path());
    for (const auto& entry : dict) check_inside_storage(entry.second);
  } catch (const pix2pix::Error&) {
  }
  return 0;
}
