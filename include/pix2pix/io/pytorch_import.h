// PyTorch state_dict files, read and written natively (no Python), and moving them in and out of
// torch::nn::Module objects. This is what makes the reference implementation's checkpoints
// (`latest_net_G.pth`) and ours interchangeable.
//
// Reading accepts Python's torch.save(model.state_dict()) in the zip format (torch >= 1.6) and in
// the legacy format (_use_new_zipfile_serialization=False), and files written by
// write_state_dict. The pickle inside is read by a restricted unpickler (src/io/unpickler.h)
// that only knows tensors and dicts, so a hostile file cannot run code. Writing produces the same
// zip layout and pickle as Python's torch.save of an OrderedDict, which torch.load accepts even
// with weights_only=True.
//
// To support another tensor kind or container, extend the allow-list in src/io/unpickler.cpp.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

namespace torch::nn {
class Module;
}  // namespace torch::nn

namespace pix2pix {

/// Ordered (name, tensor) pairs, in the order PyTorch's state_dict() gives them. at::Tensor is
/// torch::Tensor.
using StateDict = std::vector<std::pair<std::string, at::Tensor>>;

/// Reads a file written by Python torch.save(obj) where obj is a state_dict (OrderedDict or dict
/// of str -> Tensor), in the zip format (torch >= 1.6) or the legacy pre-1.6 format
/// (_use_new_zipfile_serialization=False). Also accepts files written by write_state_dict.
/// Tensors come back on the CPU, contiguous and owning their memory (a view saved by Python is
/// copied out of its storage; only a tensor with overlapping strides, such as an expanded one,
/// stays a view). Entries keep the file's order; a repeated key keeps its last value.
/// Throws Error(path, reason) for anything else: missing, truncated or corrupt files, pickles that
/// name globals other than tensors and dicts, non-tensor values, sizes that do not fit.
StateDict read_state_dict(const std::string& path);

/// Writes `dict` as a zip-format torch.save file of an OrderedDict that Python's torch.load
/// (also with weights_only=True) + module.load_state_dict(strict=True) accepts. Tensors are
/// moved to the CPU and made contiguous; supported dtypes: float, double, half, bfloat16, int64,
/// int32, int16, int8, uint8, bool, complex float/double. The file is written atomically
/// (`<path>.tmp`, fsync, rename): on failure an existing file at `path` is left intact.
/// Throws Error(path, reason) for an empty or repeated key or an unsupported tensor, and
/// Error(path, reason, ErrorKind::kRuntime) when the write itself fails.
void write_state_dict(const std::string& path, const StateDict& dict);

/// The module's parameters and buffers in PyTorch's state_dict order (for each module in
/// pre-order: own parameters, then own buffers; names joined with '.'), skipping undefined ones
/// (e.g. a disabled bias). The tensors are detached aliases of the module's own memory.
StateDict module_state_dict(const torch::nn::Module& module);

/// Copies `dict` into the module's parameters and buffers (no autograd; dtypes are converted as
/// Tensor::copy_ does). With `strict`, every key of the module must be present and no other key
/// may be; a missing "*.num_batches_tracked" is tolerated and left as is. Shapes must match in
/// either mode. On any mismatch nothing is copied and Error(source, reason) lists the missing and
/// unexpected keys and each shape mismatch with both shapes; `source` names the file (or other
/// origin) of `dict`.
void load_state_dict(torch::nn::Module& module, const StateDict& dict, const std::string& source,
                     bool strict = true);

}  // namespace pix2pix
