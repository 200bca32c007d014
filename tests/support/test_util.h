// Helpers shared by the test programs: temporary folders, running the CLI and the Python
// reference, locating ../shared.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "pix2pix/io/image_io.h"
#include "pix2pix/train/trainer.h"

namespace pix2pix::test {

/// Output and exit status of a finished command.
struct CommandResult {
  int exit_code = -1;  ///< the exit status, or 128 + signal number when killed by a signal
  std::string output;  ///< stdout and stderr together
};

/// Runs `command` through /bin/sh, capturing stdout and stderr.
CommandResult run_command(const std::string& command);

/// The built CLI's path (`build/pix2pix`).
std::string cli_path();

/// Runs the built CLI (`build/pix2pix`) with the given argument string.
CommandResult run_cli(const std::string& args);

/// A fresh, empty folder under build/test_tmp, unique to the calling test.
std::string temp_dir();

/// ../shared (the data sets and the PyTorch reference script).
std::string shared_dir();

/// The repository root (for tests/reference/*.py helpers).
std::string source_dir();

/// `ok`; where it is false and PIX2PIX_REQUIRE_REFERENCE=1 (CI sets it), also a failure of the
/// calling test naming `what`, so that a parity test skipped for a missing reference, package
/// or dataset cannot pass CI.
bool required(bool ok, const std::string& what);

/// The built examples/translate program; empty where examples are not built.
std::string example_translate();

/// True when /usr/bin/python3 can import torch (the reference tests need it).
bool have_python_torch();

/// tests/node/node_modules (scripts/setup.sh --test installs onnxruntime-node and
/// playwright-core there); empty, and a failure under PIX2PIX_REQUIRE_REFERENCE=1, when node or
/// the packages are missing.
std::string node_modules();

/// True when /usr/bin/python3 can import PIL and numpy (the Pillow parity tests need them).
bool have_python_pil();

/// Writes `image` as PNG to root/relative, creating folders (the name's extension may lie);
/// returns the path.
std::string put_image(const std::string& root, const std::string& relative, const Image& image);

/// Runs `/usr/bin/python3 <args>` and returns its result.
CommandResult run_python(const std::string& args);

/// Empty where this CPU computes in bfloat16 (pix2pix::cpu_features()); else why bf16 tests
/// cannot run here, naming the missing instructions.
std::string bf16_unavailable();

/// Skips the calling test where the CPU has no bfloat16 instructions (bf16_unavailable()).
#define PIX2PIX_SKIP_WITHOUT_BF16() \
  if (const std::string why = ::pix2pix::test::bf16_unavailable(); !why.empty()) GTEST_SKIP() << why

/// The synthetic dataset of the small training runs (64 x 64 halves, 6 train and 2 val pairs,
/// no test split) in dir/data, written unless it is there; returns dir/data.
std::string small_synth_data(const std::string& dir);

/// Options of a small training run on `data` in dir/runs/NAME: a U-Net down to 1 x 1 at 64 x 64
/// (num_downs 6, ngf 8), ndf 8, resize to 72 and crop 64; otherwise TrainOptions' defaults.
TrainOptions small_train_options(const std::string& data, const std::string& dir,
                                 const std::string& name);

/// The rows of RUN/metrics.jsonl whose "kind" is `kind` (empty: every row), in order.
std::vector<nlohmann::json> metrics_rows(const std::string& run, const std::string& kind = "");

/// Quotes a string for /bin/sh.
std::string shell_quote(const std::string& s);

/// True when an autograd node whose name contains `name` is among those within `depth` steps of
/// y's grad_fn (which computation made y).
bool made_by(const at::Tensor& y, const std::string& name, int depth = 6);

/// A small U-Net (num_downs 5, ngf 8: sides multiples of 32) from `seed`, without dropout, in eval
/// mode, its batch-norm running statistics moved off 0 and 1 so that they matter.
std::shared_ptr<Generator> small_eval_unet(uint64_t seed = 3);

/// Writes a small U-Net's state_dict (num_downs 5, ngf 8, initialised from `seed`) to `path`.
void save_small_unet(const std::string& path, uint64_t seed = 3);

/// The message of the pix2pix::Error that `f` throws, or "(no error)".
std::string error_of(const std::function<void()>& f);

}  // namespace pix2pix::test
