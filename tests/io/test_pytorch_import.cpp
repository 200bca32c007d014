// Tests for pytorch_import: round trips, interop with Python's torch.save/torch.load (skipped
// without /usr/bin/python3 + torch), module state_dict order, strict loading, and hostile or broken
// files, which must all end in a pix2pix::Error naming the file.
#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "pix2pix/error.h"
#include "pix2pix/io/pytorch_import.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;
using test::run_python;
using test::shell_quote;
using test::temp_dir;

// ---------------------------------------------------------------------------------------------
// Helpers

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// The message of the pix2pix::Error that `fn` throws; fails the test for anything else.
std::string error_of(const std::function<void()>& fn, ErrorKind expected_kind = ErrorKind::kInput) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), expected_kind) << e.what();
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected pix2pix::Error, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected pix2pix::Error, nothing thrown";
  return "";
}

#define EXPECT_CONTAINS(text, part)                          \
  EXPECT_NE(std::string(text).find(part), std::string::npos) \
      << "'" << (text) << "' lacks '" << (part) << "'"

// Reading `path` must fail with an Error that names the file.
std::string read_error(const std::string& path) {
  std::string message = error_of([&] { read_state_dict(path); });
  EXPECT_CONTAINS(message, path);
  return message;
}

// Hand-assembled pickles, for files torch.save would never write.
struct PickleBuilder {
  std::string bytes;

  PickleBuilder& op(unsigned char code) {
    bytes.push_back(static_cast<char>(code));
    return *this;
  }
  PickleBuilder& le(uint64_t value, int n) {
    for (int i = 0; i < n; ++i) bytes.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
    return *this;
  }
  PickleBuilder& proto() { return op(0x80).op(2); }
  PickleBuilder& stop() { return op('.'); }
  PickleBuilder& str(const std::string& text) {
    op('X').le(text.size(), 4);
    bytes += text;
    return *this;
  }
  PickleBuilder& integer(int64_t value) {
    if (value >= 0 && value < 256) return op('K').le(static_cast<uint64_t>(value), 1);
    return op(0x8a).le(8, 1).le(static_cast<uint64_t>(value), 8);  // LONG1, 8 bytes
  }
  PickleBuilder& global(const std::string& module, const std::string& name) {
    op('c');
    bytes += module + "\n" + name + "\n";
    return *this;
  }
  PickleBuilder& int_tuple(const std::vector<int64_t>& values) {
    op('(');
    for (int64_t v : values) integer(v);
    return op('t');
  }
  // Pushes _rebuild_tensor_v2(storage, offset, sizes, strides, False, OrderedDict()).
  PickleBuilder& tensor(const std::string& storage_class, const std::string& key, int64_t numel,
                        int64_t offset, const std::vector<int64_t>& sizes,
                        const std::vector<int64_t>& strides, bool legacy = false) {
    global("torch._utils", "_rebuild_tensor_v2").op('(');
    op('(').str("storage").global("torch", storage_class).str(key).str("cpu").integer(numel);
    if (legacy) op('N');
    op('t').op('Q');
    integer(offset).int_tuple(sizes).int_tuple(strides).op(0x89);
    global("collections", "OrderedDict").op(')').op('R');
    return op('t').op('R');
  }
  PickleBuilder& ordered_dict() { return global("collections", "OrderedDict").op(')').op('R'); }
};

// A zip laid out like torch.save's (PyTorchStreamWriter is the writer Python uses).
void write_torch_zip(const std::string& path,
                     const std::vector<std::pair<std::string, std::string>>& records) {
  caffe2::serialize::PyTorchStreamWriter writer(path);
  for (const auto& [name, data] : records) writer.writeRecord(name, data.data(), data.size());
  writer.writeEndOfFile();
}

std::string float_bytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

// A legacy (pre-1.6) torch.save file around `main_pickle`, with storages (key, numel, bytes).
std::string legacy_file(
    const std::string& main_pickle,
    const std::vector<std::tuple<std::string, int64_t, std::string>>& storages) {
  PickleBuilder magic;
  magic.proto().op(0x8a).le(10, 1);
  for (unsigned char b : {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19}) magic.op(b);
  magic.stop();
  PickleBuilder protocol;
  protocol.proto().op('M').le(1001, 2).stop();
  PickleBuilder sys_info;
  sys_info.proto().op('}').str("little_endian").op(0x88).op('s').stop();
  PickleBuilder keys;
  keys.proto().op(']').op('(');
  for (const auto& storage : storages) keys.str(std::get<0>(storage));
  keys.op('e').stop();
  std::string file = magic.bytes + protocol.bytes + sys_info.bytes + main_pickle + keys.bytes;
  for (const auto& [key, numel, bytes] : storages) {
    PickleBuilder count;
    count.le(static_cast<uint64_t>(numel), 8);
    file += count.bytes + bytes;
  }
  return file;
}

// {'w': tensor([[0, 1, 2], [3, 4, 5]]) viewed at offset 1 of a 7-float storage} in legacy format.
std::string small_legacy_file() {
  PickleBuilder main;
  main.proto().ordered_dict().op('(').str("w");
  main.tensor("FloatStorage", "k0", 7, 1, {2, 3}, {3, 1}, /*legacy=*/true);
  main.op('u').stop();
  return legacy_file(main.bytes, {{"k0", 7, float_bytes({-1, 0, 1, 2, 3, 4, 5})}});
}

std::vector<double> values_of(const at::Tensor& tensor) {
  at::Tensor flat = tensor.to(at::kDouble).flatten().contiguous();
  return std::vector<double>(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
}

std::string python_dtype(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return "torch.float32";
    case at::kLong:
      return "torch.int64";
    default:
      return c10::toString(type);
  }
}

std::vector<std::string> keys_of(const StateDict& dict) {
  std::vector<std::string> keys;
  for (const auto& item : dict) keys.push_back(item.first);
  return keys;
}

// Conv2d(2, 3, 3) + BatchNorm2d(3), as torch.nn.Sequential(...) in Python.
torch::nn::Sequential conv_bn() {
  torch::nn::Sequential model;
  model->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 3, 3)));
  model->push_back(torch::nn::BatchNorm2d(3));
  return model;
}

const std::vector<std::string> kConvBnKeys = {"0.weight",
                                              "0.bias",
                                              "1.weight",
                                              "1.bias",
                                              "1.running_mean",
                                              "1.running_var",
                                              "1.num_batches_tracked"};

// Runs a Python script (text) with the folder as argv[1]; the result must be exit status 0.
void run_python_script(const std::string& dir, const std::string& script) {
  const std::string path = dir + "/script.py";
  write_file(path, script);
  auto result = run_python(shell_quote(path) + " " + shell_quote(dir));
  ASSERT_EQ(result.exit_code, 0) << result.output;
}

#define SKIP_WITHOUT_PYTHON_TORCH() \
  if (!test::have_python_torch()) GTEST_SKIP() << "/usr/bin/python3 with torch not available"

// ---------------------------------------------------------------------------------------------
// Round trips

TEST(PytorchImport, RoundTripPreservesNamesOrderDtypesShapesValues) {
  const std::string dir = temp_dir();
  at::manual_seed(0);
  at::Tensor wide = at::randn({4, 5});
  StateDict dict = {
      {"z.weight", at::randn({3, 4})},
      {"a.bias", at::randn({3}, at::kDouble)},
      {"m.index", at::arange(-3, 9, at::kLong).reshape({3, 4})},
      {"bn.num_batches_tracked", at::scalar_tensor(int64_t{123456789012}, at::kLong)},
      {"half", at::randn({2, 2}).to(at::kBFloat16)},
      {"mask", at::randn({5}) > 0},
      {"bytes", at::arange(250, 256, at::kLong).to(at::kByte)},
      {"empty", at::empty({0, 3})},
      {"transposed", wide.t()},         // non-contiguous
      {"slice", wide.narrow(0, 1, 2)},  // offset into a bigger storage
  };
  const std::string path = dir + "/round.pth";
  write_state_dict(path, dict);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  const StateDict back = read_state_dict(path);
  ASSERT_EQ(keys_of(back), keys_of(dict));
  for (size_t i = 0; i < dict.size(); ++i) {
    SCOPED_TRACE(dict[i].first);
    EXPECT_EQ(back[i].second.scalar_type(), dict[i].second.scalar_type());
    EXPECT_EQ(back[i].second.sizes(), dict[i].second.sizes());
    EXPECT_TRUE(at::equal(back[i].second, dict[i].second));
    EXPECT_TRUE(back[i].second.is_contiguous());
  }
  // Rewriting what was read gives the same bytes: the writer is deterministic.
  write_state_dict(dir + "/again.pth", back);
  EXPECT_EQ(read_file(dir + "/again.pth"), read_file(path));
}

TEST(PytorchImport, WriteRejectsBadInputAndKeepsExistingFile) {
  const std::string dir = temp_dir();
  const std::string path = dir + "/keep.pth";
  write_file(path, "old contents");
  auto message = error_of([&] {
    write_state_dict(path, {{"a", at::ones({2})}, {"a", at::ones({2})}});
  });
  EXPECT_CONTAINS(message, "repeats key 'a'");
  message = error_of([&] { write_state_dict(path, {{"u", at::Tensor()}}); });
  EXPECT_CONTAINS(message, "'u'");
  EXPECT_EQ(read_file(path), "old contents");
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(PytorchImport, FailedWriteLeavesExistingFileIntact) {
  const std::string dir = temp_dir();
  // Missing folder: the temp file cannot be created.
  auto message = error_of(
      [&] {
        write_state_dict(dir + "/no/such/x.pth", {{"a", at::ones({2})}});
      },
      ErrorKind::kRuntime);
  EXPECT_CONTAINS(message, dir + "/no/such/x.pth");
  // A write that fails half way (a file-size limit, as a full disk): the old file stays, and no
  // temporary is left behind.
  const std::string path = dir + "/model.pth";
  write_file(path, "old contents");
  struct rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limited = saved;
  limited.rlim_cur = 2048;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limited), 0);
  message = error_of(
      [&] {
        write_state_dict(path, {{"a", at::ones({10000})}});
      },
      ErrorKind::kRuntime);
  ::setrlimit(RLIMIT_FSIZE, &saved);
  ::signal(SIGXFSZ, old_handler);
  EXPECT_CONTAINS(message, "write failed");
  EXPECT_CONTAINS(message, path);
  EXPECT_EQ(read_file(path), "old contents");
  for (const auto& entry : fs::directory_iterator(dir))
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
}

// ---------------------------------------------------------------------------------------------
// Modules

struct NetImpl : torch::nn::Module {
  NetImpl() {
    scale = register_parameter("scale", at::ones({1}));
    register_buffer("step", at::zeros({1}, at::kLong));
    body = register_module("body", conv_bn());
    torch::nn::Conv2d head_conv(torch::nn::Conv2dOptions(3, 1, 1).bias(false));
    head = register_module("head", head_conv);
  }
  at::Tensor scale;
  torch::nn::Sequential body{nullptr};
  torch::nn::Conv2d head{nullptr};
};
TORCH_MODULE(Net);

TEST(PytorchImport, ModuleStateDictFollowsPytorchOrder) {
  EXPECT_EQ(keys_of(module_state_dict(*conv_bn())), kConvBnKeys);
  // Pre-order: own parameters, own buffers, then children; a disabled bias is absent, as in
  // Python's state_dict() of the same module.
  const std::vector<std::string> expected = {"scale",
                                             "step",
                                             "body.0.weight",
                                             "body.0.bias",
                                             "body.1.weight",
                                             "body.1.bias",
                                             "body.1.running_mean",
                                             "body.1.running_var",
                                             "body.1.num_batches_tracked",
                                             "head.weight"};
  Net net;
  const StateDict dict = module_state_dict(*net);
  EXPECT_EQ(keys_of(dict), expected);
  // The tensors alias the module's memory but do not track gradients.
  EXPECT_FALSE(dict[0].second.requires_grad());
  EXPECT_EQ(dict[0].second.data_ptr(), net->scale.data_ptr());
}

TEST(PytorchImport, LoadStateDictCopiesAndChecksKeys) {
  at::manual_seed(1);
  auto source = conv_bn();
  auto target = conv_bn();
  StateDict dict = module_state_dict(*source);
  dict[6].second.fill_(42);  // num_batches_tracked
  load_state_dict(*target, dict, "ckpt.pth");
  const StateDict loaded = module_state_dict(*target);
  for (size_t i = 0; i < dict.size(); ++i) EXPECT_TRUE(at::equal(loaded[i].second, dict[i].second));

  // Missing key.
  StateDict missing(dict.begin() + 1, dict.end());
  auto message = error_of([&] { load_state_dict(*target, missing, "ckpt.pth"); });
  EXPECT_CONTAINS(message, "ckpt.pth: ");
  EXPECT_CONTAINS(message, "missing keys: 0.weight");
  // Unexpected key.
  StateDict extra = dict;
  extra.emplace_back("2.weight", at::ones({1}));
  message = error_of([&] { load_state_dict(*target, extra, "ckpt.pth"); });
  EXPECT_CONTAINS(message, "unexpected keys: 2.weight");
  // Shape mismatch names both shapes, in strict and non-strict mode, and copies nothing.
  StateDict wrong = dict;
  wrong[0].second = at::full({3, 2, 2, 2}, 7.0);
  wrong[1].second = at::full({3}, 9.0);
  const at::Tensor bias_before = module_state_dict(*target)[1].second.clone();
  for (bool strict : {true, false}) {
    message = error_of([&] { load_state_dict(*target, wrong, "ckpt.pth", strict); });
    EXPECT_CONTAINS(message, "0.weight (file [3, 2, 2, 2], model [3, 2, 3, 3])");
  }
  EXPECT_TRUE(at::equal(module_state_dict(*target)[1].second, bias_before));

  // A missing num_batches_tracked is tolerated and left as is.
  StateDict old_style(dict.begin(), dict.begin() + 6);
  old_style[1].second = at::full({3}, 5.0, at::kDouble);  // converted to the model's float
  load_state_dict(*target, old_style, "ckpt.pth");
  EXPECT_EQ(module_state_dict(*target)[6].second.item<int64_t>(), 42);
  EXPECT_TRUE(at::equal(module_state_dict(*target)[1].second, at::full({3}, 5.0)));

  // Non-strict: missing and unexpected keys are skipped, the rest is copied.
  StateDict partial = {{"1.bias", at::full({3}, 3.0)}, {"other", at::ones({2})}};
  load_state_dict(*target, partial, "ckpt.pth", /*strict=*/false);
  EXPECT_TRUE(at::equal(module_state_dict(*target)[3].second, at::full({3}, 3.0)));
}

// ---------------------------------------------------------------------------------------------
// Python interop

TEST(PytorchImport, ReadsPythonZipAndLegacyFiles) {
  SKIP_WITHOUT_PYTHON_TORCH();
  const std::string dir = temp_dir();
  run_python_script(dir, R"(
import json, sys, torch
d = sys.argv[1]
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3))
m(torch.randn(4, 2, 5, 5))  # moves the running stats and num_batches_tracked
sd = m.state_dict()
torch.save(sd, d + '/zip.pth')
torch.save(sd, d + '/legacy.pth', _use_new_zipfile_serialization=False)
json.dump([[k, str(v.dtype), list(v.shape), v.double().flatten().tolist()] for k, v in sd.items()],
          open(d + '/values.json', 'w'))
)");
  if (HasFatalFailure()) return;
  const auto expected = nlohmann::json::parse(read_file(dir + "/values.json"));
  for (const std::string name : {"zip.pth", "legacy.pth"}) {
    SCOPED_TRACE(name);
    const StateDict dict = read_state_dict(dir + "/" + name);
    ASSERT_EQ(dict.size(), expected.size());
    for (size_t i = 0; i < dict.size(); ++i) {
      EXPECT_EQ(dict[i].first, expected[i][0].get<std::string>());
      EXPECT_EQ(python_dtype(dict[i].second.scalar_type()), expected[i][1].get<std::string>());
      EXPECT_EQ(dict[i].second.sizes().vec(), expected[i][2].get<std::vector<int64_t>>());
      EXPECT_EQ(values_of(dict[i].second), expected[i][3].get<std::vector<double>>());
    }
    // The C++ twin of the module has exactly Python's keys and takes the weights strictly.
    auto model = conv_bn();
    EXPECT_EQ(keys_of(module_state_dict(*model)), keys_of(dict));
    load_state_dict(*model, dict, name);
    EXPECT_EQ(module_state_dict(*model)[6].second.item<int64_t>(), 1);
  }
}

TEST(PytorchImport, PythonLoadsWrittenFileStrictly) {
  SKIP_WITHOUT_PYTHON_TORCH();
  const std::string dir = temp_dir();
  at::manual_seed(3);
  auto model = conv_bn();
  StateDict dict = module_state_dict(*model);
  dict[4].second.copy_(at::randn({3}));  // running_mean
  dict[6].second.fill_(7);               // num_batches_tracked
  write_state_dict(dir + "/cpp.pth", dict);
  run_python_script(dir, R"(
import collections, json, sys, torch
d = sys.argv[1]
sd = torch.load(d + '/cpp.pth', weights_only=True)  # the restricted unpickler accepts it
assert type(sd) is collections.OrderedDict, type(sd)
m = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3))
m.load_state_dict(sd, strict=True)
json.dump([[k, v.double().flatten().tolist()] for k, v in m.state_dict().items()],
          open(d + '/values.json', 'w'))
)");
  if (HasFatalFailure()) return;
  const auto loaded = nlohmann::json::parse(read_file(dir + "/values.json"));
  ASSERT_EQ(loaded.size(), dict.size());
  for (size_t i = 0; i < dict.size(); ++i) {
    EXPECT_EQ(loaded[i][0].get<std::string>(), dict[i].first);
    EXPECT_EQ(loaded[i][1].get<std::vector<double>>(), values_of(dict[i].second)) << dict[i].first;
  }
}

TEST(PytorchImport, ReadsPythonViewsOfSharedStorage) {
  SKIP_WITHOUT_PYTHON_TORCH();
  const std::string dir = temp_dir();
  run_python_script(dir, R"(
import sys, torch
d = sys.argv[1]
big = torch.arange(24, dtype=torch.float32).reshape(6, 4)
obj = {'rows': big[2:5], 'col': big[:, 1], 'whole': big, 'scalar': big[3, 2]}
torch.save(obj, d + '/zip.pth')
torch.save(obj, d + '/legacy.pth', _use_new_zipfile_serialization=False)
)");
  if (HasFatalFailure()) return;
  const at::Tensor big = at::arange(24, at::kFloat).reshape({6, 4});
  for (const std::string name : {"zip.pth", "legacy.pth"}) {
    SCOPED_TRACE(name);
    StateDict dict = read_state_dict(dir + "/" + name);
    ASSERT_EQ(keys_of(dict), (std::vector<std::string>{"rows", "col", "whole", "scalar"}));
    EXPECT_TRUE(at::equal(dict[0].second, big.narrow(0, 2, 3)));
    EXPECT_TRUE(at::equal(dict[1].second, big.select(1, 1)));
    EXPECT_TRUE(at::equal(dict[2].second, big));
    EXPECT_EQ(dict[3].second.dim(), 0);
    EXPECT_EQ(dict[3].second.item<float>(), 14.0f);
    // Entries sharing a storage in the file do not share memory here.
    dict[2].second.fill_(-1);
    EXPECT_TRUE(at::equal(dict[0].second, big.narrow(0, 2, 3)));
  }
}

// ---------------------------------------------------------------------------------------------
// Broken and hostile files

TEST(PytorchImport, RejectsMissingEmptyAndRandomFiles) {
  const std::string dir = temp_dir();
  EXPECT_CONTAINS(read_error(dir + "/absent.pth"), "cannot open");
  EXPECT_CONTAINS(read_error(dir), "directory");
  ASSERT_EQ(::mkfifo((dir + "/fifo.pth").c_str(), 0600), 0);
  EXPECT_CONTAINS(read_error(dir + "/fifo.pth"), "not a regular file");
  write_file(dir + "/empty.pth", "");
  EXPECT_CONTAINS(read_error(dir + "/empty.pth"), "empty file");
  std::mt19937 rng(5);
  std::string noise(4096, '\0');
  for (char& c : noise) c = static_cast<char>(rng());
  noise[0] = 'x';
  write_file(dir + "/noise.pth", noise);
  EXPECT_CONTAINS(read_error(dir + "/noise.pth"), "neither a zip archive nor a legacy");
  // Random bytes behind each format's signature get past the first check.
  write_file(dir + "/noise_zip.pth", "PK\x03\x04" + noise);
  read_error(dir + "/noise_zip.pth");
  write_file(dir + "/noise_pickle.pth", "\x80\x02" + noise);
  read_error(dir + "/noise_pickle.pth");
}

TEST(PytorchImport, RejectsEveryTruncationOfAZipFile) {
  const std::string dir = temp_dir();
  const std::string path = dir + "/good.pth";
  write_state_dict(path,
                   {{"w", at::arange(12, at::kFloat)}, {"n", at::scalar_tensor(3, at::kLong)}});
  const std::string bytes = read_file(path);
  const std::string cut = dir + "/cut.pth";
  write_file(cut, bytes.substr(0, bytes.size() / 2));
  EXPECT_CONTAINS(read_error(cut), "zip");
  for (size_t n = 1; n < bytes.size(); n += 7) {
    write_file(cut, bytes.substr(0, n));
    read_error(cut);
  }
}

// Found by fuzz/fuzz_checkpoint_reader: these layouts made PyTorchStreamReader's constructor
// throw, which leaks its zip state (seen by scripts/sanitize.sh); they are now refused before it.
TEST(PytorchImport, RejectsZipsWithoutTorchSaveLayoutBeforeOpeningThem) {
  SKIP_WITHOUT_PYTHON_TORCH();
  const std::string dir = temp_dir();
  run_python_script(dir, R"(
import sys, zipfile
d = sys.argv[1]
def make(name, records):
    with zipfile.ZipFile(d + '/' + name, 'w') as z:
        for record, data in records:
            z.writestr(record, data)
make('flat.pth', [('data.pkl', b'}.'), ('version', b'3')])
make('other_folder_first.pth', [('other/x', b''), ('a/data.pkl', b'}.'), ('a/version', b'3')])
make('no_version.pth', [('a/data.pkl', b'}.')])
make('good.pth', [('a/data.pkl', b'}.'), ('a/version', b'3')])
)");
  if (HasFatalFailure()) return;
  EXPECT_CONTAINS(read_error(dir + "/flat.pth"), "has no data.pkl record");
  EXPECT_CONTAINS(read_error(dir + "/other_folder_first.pth"),
                  "first record 'other/x' is not in the folder of its data.pkl");
  EXPECT_CONTAINS(read_error(dir + "/no_version.pth"), "has no version record");
  EXPECT_TRUE(read_state_dict(dir + "/good.pth").empty());  // an empty dict: the layout is fine
}

TEST(PytorchImport, ReadsZip64Directory) {
  // Zip64 archives may leave the classic end record's fields at 0xFFFF...; the sizes then come
  // from the zip64 end record, which PyTorchStreamWriter always writes.
  const std::string dir = temp_dir();
  const std::string path = dir + "/z64.pth";
  write_state_dict(path, {{"w", at::arange(5, at::kFloat)}});
  std::string bytes = read_file(path);
  const size_t end_record = bytes.rfind(std::string("PK\x05\x06", 4));
  ASSERT_EQ(end_record, bytes.size() - 22);
  bytes.replace(end_record + 8, 12, std::string(12, '\xff'));
  write_file(path, bytes);
  const StateDict dict = read_state_dict(path);
  ASSERT_EQ(dict.size(), 1u);
  EXPECT_TRUE(at::equal(dict[0].second, at::arange(5, at::kFloat)));
}

TEST(PytorchImport, DetectsCorruptedWeightRecords) {
  // A flipped bit inside a weight record must not load silently (the zip checksums catch it).
  const std::string dir = temp_dir();
  const std::string path = dir + "/flip.pth";
  write_state_dict(path, {{"w", at::full({64}, 1.5f)}});
  std::string bytes = read_file(path);
  const std::string one_point_five("\x00\x00\xc0\x3f", 4);
  const size_t at = bytes.find(one_point_five);
  ASSERT_NE(at, std::string::npos);
  bytes[at + 2] = static_cast<char>(0xc1);
  write_file(path, bytes);
  EXPECT_CONTAINS(read_error(path), "zip record 'data/0' is corrupt (checksum mismatch)");
}

TEST(PytorchImport, RejectsEveryTruncationOfALegacyFile) {
  const std::string dir = temp_dir();
  const std::string path = dir + "/legacy.pth";
  const std::string bytes = small_legacy_file();
  write_file(path, bytes);
  const StateDict dict = read_state_dict(path);
  ASSERT_EQ(dict.size(), 1u);
  EXPECT_TRUE(at::equal(dict[0].second, at::arange(6, at::kFloat).reshape({2, 3})));
  for (size_t n = 1; n < bytes.size(); ++n) {
    write_file(path, bytes.substr(0, n));
    read_error(path);
  }
  write_file(path, bytes.substr(0, bytes.size() - 4));
  EXPECT_CONTAINS(read_error(path), "truncated");
}

TEST(PytorchImport, SurvivesCorruptedPickles) {
  // Random byte changes in a legacy file and in a zip's data.pkl either still read or end in an
  // Error; nothing crashes and nothing else escapes.
  const std::string dir = temp_dir();
  const std::string path = dir + "/fuzz.pth";
  const std::string legacy = small_legacy_file();
  PickleBuilder pickle;
  pickle.proto().ordered_dict().op('(').str("w");
  pickle.tensor("FloatStorage", "0", 3, 0, {3}, {1}).op('u').stop();
  std::mt19937 rng(11);
  int read_ok = 0;
  for (int round = 0; round < 600; ++round) {
    const bool zip = round % 2 == 1;
    std::string bytes = zip ? pickle.bytes : legacy;
    for (int flips = 1 + static_cast<int>(rng() % 3); flips > 0; --flips)
      bytes[rng() % bytes.size()] = static_cast<char>(rng());
    if (zip)
      write_torch_zip(path, {{"data.pkl", bytes}, {"data/0", float_bytes({1, 2, 3})}});
    else
      write_file(path, bytes);
    try {
      read_state_dict(path);
      ++read_ok;
    } catch (const Error& e) {
      EXPECT_CONTAINS(e.what(), path);
    }
  }
  EXPECT_LT(read_ok, 600);
}

TEST(PytorchImport, RefusesPickleThatNamesOtherGlobals) {
  const std::string dir = temp_dir();
  const std::string path = dir + "/evil.pth";
  PickleBuilder evil;
  evil.proto().global("os", "system").str("touch " + dir + "/pwned").op(0x85).op('R').stop();
  write_torch_zip(path, {{"data.pkl", evil.bytes}});
  EXPECT_CONTAINS(read_error(path), "refuses to load: the pickle names global 'os.system'");
  // The same in a legacy file, and via STACK_GLOBAL (protocol 4).
  write_file(path, legacy_file(evil.bytes, {}));
  EXPECT_CONTAINS(read_error(path), "'os.system'");
  PickleBuilder stack_global;
  stack_global.proto().str("builtins").str("eval").op(0x93).str("1").op(0x85).op('R').stop();
  write_torch_zip(path, {{"data.pkl", stack_global.bytes}});
  EXPECT_CONTAINS(read_error(path), "'builtins.eval'");
  EXPECT_FALSE(fs::exists(dir + "/pwned"));
}

TEST(PytorchImport, RefusesPythonPickleWithReduceToOsSystem) {
  SKIP_WITHOUT_PYTHON_TORCH();
  const std::string dir = temp_dir();
  run_python_script(dir, R"(
import os, pickle, sys, torch, zipfile
d = sys.argv[1]
torch.save({'w': torch.zeros(3)}, d + '/good.pth')
class Evil:
    def __reduce__(self):
        return (os.system, ('touch ' + d + '/pwned',))
payload = pickle.dumps(Evil(), protocol=2)
with zipfile.ZipFile(d + '/good.pth') as src, zipfile.ZipFile(d + '/evil.pth', 'w') as dst:
    for info in src.infolist():
        data = src.read(info.filename)
        dst.writestr(info.filename, payload if info.filename.endswith('/data.pkl') else data)
)");
  if (HasFatalFailure()) return;
  ASSERT_EQ(read_state_dict(dir + "/good.pth").size(), 1u);  // the layout itself is fine
  const std::string message = read_error(dir + "/evil.pth");
  EXPECT_CONTAINS(message, "refuses to load");
  EXPECT_CONTAINS(message, "system'");
  EXPECT_FALSE(fs::exists(dir + "/pwned"));
}

TEST(PytorchImport, RejectsSizesThatDoNotFit) {
  const std::string dir = temp_dir();
  const std::string path = dir + "/sizes.pth";
  auto zip_with = [&](int64_t numel, std::vector<int64_t> sizes, std::vector<int64_t> strides,
                      int64_t offset = 0) {
    PickleBuilder p;
    p.proto().ordered_dict().op('(').str("w");
    p.tensor("FloatStorage", "0", numel, offset, sizes, strides).op('u').stop();
    write_torch_zip(path, {{"data.pkl", p.bytes}, {"data/0", float_bytes({1, 2, 3})}});
  };
  zip_with(int64_t{1} << 60, {3}, {1});  // storage declared huge, record holds 12 bytes
  EXPECT_CONTAINS(read_error(path), "declares");
  zip_with(int64_t{1} << 62, {3}, {1});  // numel * 4 overflows int64
  EXPECT_CONTAINS(read_error(path), "impossible size");
  zip_with(3, {int64_t{1} << 40, 2}, {1, 1});  // view far past the storage
  EXPECT_CONTAINS(read_error(path), "reaches past");
  zip_with(3, {int64_t{1} << 40, int64_t{1} << 40}, {0, 0});  // 2^80 elements from one
  EXPECT_CONTAINS(read_error(path), "too many elements");
  zip_with(3, {2}, {1}, 2);
  EXPECT_CONTAINS(read_error(path), "reaches past");
  zip_with(3, {3}, {1});  // the same file with fitting sizes reads
  EXPECT_TRUE(at::equal(read_state_dict(path)[0].second, at::arange(1, 4, at::kFloat)));
  zip_with(3, {2, 3}, {0, 1});  // an expanded tensor stays a view instead of growing
  EXPECT_TRUE(
      at::equal(read_state_dict(path)[0].second, at::arange(1, 4, at::kFloat).expand({2, 3})));

  // Legacy: a storage section declaring 2^58 floats (1 EiB) must not be allocated.
  PickleBuilder main;
  main.proto().ordered_dict().op('(').str("w");
  main.tensor("FloatStorage", "k", int64_t{1} << 58, 0, {3}, {1}, true).op('u').stop();
  write_file(path, legacy_file(main.bytes, {{"k", int64_t{1} << 58, float_bytes({1, 2, 3})}}));
  EXPECT_CONTAINS(read_error(path), "truncated");
  // ... nor one whose count disagrees with the pickle.
  write_file(path, legacy_file(main.bytes, {{"k", 3, float_bytes({1, 2, 3})}}));
  EXPECT_CONTAINS(read_error(path), "elements but the pickle declares");
}

TEST(PytorchImport, RejectsNonTensorValuesAndNonDicts) {
  const std::string dir = temp_dir();
  const std::string path = dir + "/odd.pth";
  PickleBuilder with_int;
  with_int.proto().op('}').str("epoch").integer(3).op('s').stop();
  write_torch_zip(path, {{"data.pkl", with_int.bytes}});
  EXPECT_CONTAINS(read_error(path), "entry 'epoch' is int, not a tensor");
  PickleBuilder list;
  list.proto().op(']').stop();
  write_torch_zip(path, {{"data.pkl", list.bytes}});
  EXPECT_CONTAINS(read_error(path), "holds a list, not a state_dict");
  // A list that contains itself (memo + append) is fine to hold, and still not a state_dict.
  PickleBuilder cycle;
  cycle.proto().op(']').op('q').le(0, 1).op('h').le(0, 1).op('a').stop();
  write_torch_zip(path, {{"data.pkl", cycle.bytes}});
  EXPECT_CONTAINS(read_error(path), "holds a list");
  PickleBuilder no_stop;
  no_stop.proto().op('}');
  write_torch_zip(path, {{"data.pkl", no_stop.bytes}});
  EXPECT_CONTAINS(read_error(path), "truncated pickle");
  write_torch_zip(path, {{"other.bin", "x"}});
  EXPECT_CONTAINS(read_error(path), "data.pkl");
}

TEST(PytorchImport, ReadsLibtorchTypeTaggedDicts) {
  // libtorch's own pickler wraps dicts in torch.jit._pickle.restore_type_tag(dict, type).
  const std::string dir = temp_dir();
  const std::string path = dir + "/tagged.pth";
  PickleBuilder p;
  p.proto().global("torch.jit._pickle", "restore_type_tag").op('}').op('(').str("w");
  p.tensor("FloatStorage", "0", 3, 0, {3}, {1}).op('u').str("Dict[str, Tensor]").op(0x86).op('R');
  p.stop();
  write_torch_zip(path, {{"data.pkl", p.bytes}, {"data/0", float_bytes({4, 5, 6})}});
  const StateDict dict = read_state_dict(path);
  ASSERT_EQ(dict.size(), 1u);
  EXPECT_TRUE(at::equal(dict[0].second, at::arange(4, 7, at::kFloat)));
}

}  // namespace
}  // namespace pix2pix
