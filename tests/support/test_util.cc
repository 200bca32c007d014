#include "test_util.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "pix2pix/error.h"
#include "pix2pix/io/pytorch_import.h"
#include "pix2pix/models/compute.h"
#include "pix2pix/tools/synth.h"

namespace fs = std::filesystem;

namespace pix2pix::test {

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

CommandResult run_command(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("popen failed: " + command);
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    result.output.append(buffer.data(), n);
  int status = pclose(pipe);
  if (WIFEXITED(status))
    result.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    result.exit_code = 128 + WTERMSIG(status);
  return result;
}

std::string cli_path() { return PIX2PIX_CLI; }

CommandResult run_cli(const std::string& args) {
  return run_command(std::string(PIX2PIX_CLI) + " " + args);
}

std::string temp_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "misc";
  for (char& c : name)
    if (c == '/') c = '_';
  fs::path dir = fs::path(PIX2PIX_TEST_TMP) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

std::string shared_dir() { return PIX2PIX_SHARED_DIR; }

std::string source_dir() { return PIX2PIX_SOURCE_DIR; }

std::string example_translate() {
#ifdef PIX2PIX_EXAMPLE_TRANSLATE
  return PIX2PIX_EXAMPLE_TRANSLATE;
#else
  return "";
#endif
}

bool required(bool ok, const std::string& what) {
  const char* require = std::getenv("PIX2PIX_REQUIRE_REFERENCE");
  if (!ok && require != nullptr && std::string(require) == "1")
    ADD_FAILURE() << "PIX2PIX_REQUIRE_REFERENCE=1 and this test needs " << what
                  << " (scripts/setup.sh --test installs it; ../shared holds the data)";
  return ok;
}

bool have_python_torch() {
  static const bool ok = run_command("/usr/bin/python3 -c 'import torch, PIL'").exit_code == 0;
  return required(ok, "/usr/bin/python3 with torch and PIL");
}

std::string node_modules() {
  static const std::string dir = source_dir() + "/tests/node/node_modules";
  static const bool ok =
      run_command("cd " + shell_quote(dir + "/..") +
                  " && node -e \"require('onnxruntime-node'); require('playwright-core')\"")
          .exit_code == 0;
  return required(ok, "node with tests/node/node_modules (onnxruntime-node, playwright-core)") ? dir
                                                                                               : "";
}

std::string bf16_unavailable() {
  try {
    check_precision_supported(Precision::kBFloat16);
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

bool have_python_pil() {
  static const bool ok =
      run_command("/usr/bin/python3 -c 'import PIL.Image, numpy'").exit_code == 0;
  return required(ok, "/usr/bin/python3 with PIL and numpy");
}

std::string put_image(const std::string& root, const std::string& relative, const Image& image) {
  const fs::path path = fs::path(root) / relative;
  fs::create_directories(path.parent_path());
  write_png(path.string(), image);
  return path.string();
}

CommandResult run_python(const std::string& args) {
  return run_command("/usr/bin/python3 " + args);
}

bool made_by(const at::Tensor& y, const std::string& name, int depth) {
  std::vector<torch::autograd::Node*> level = {y.grad_fn().get()};
  for (int d = 0; d <= depth && !level.empty(); ++d) {
    std::vector<torch::autograd::Node*> next;
    for (auto* node : level) {
      if (!node) continue;
      if (node->name().find(name) != std::string::npos) return true;
      for (const auto& edge : node->next_edges()) next.push_back(edge.function.get());
    }
    level = std::move(next);
  }
  return false;
}

std::string small_synth_data(const std::string& dir) {
  const std::string data = dir + "/data";
  if (!fs::exists(data + "/train")) {
    SynthOptions synth;
    synth.train = 6;
    synth.val = 2;
    synth.test = 0;
    synth.size = 64;
    write_synth_dataset(data, synth);
  }
  return data;
}

TrainOptions small_train_options(const std::string& data, const std::string& dir,
                                 const std::string& name) {
  TrainOptions o;
  o.data = data;
  o.name = name;
  o.runs_dir = dir + "/runs";
  o.generator.net = "unet";
  o.generator.num_downs = 6;
  o.generator.ngf = 8;
  o.discriminator.ndf = 8;
  o.transform.load_size = 72;
  o.transform.crop_height = o.transform.crop_width = 64;
  return o;
}

std::vector<nlohmann::json> metrics_rows(const std::string& run, const std::string& kind) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(RunDirectory{run}.metrics());
  for (std::string line; std::getline(in, line);) {
    auto row = nlohmann::json::parse(line);
    if (kind.empty() || row["kind"] == kind) rows.push_back(row);
  }
  return rows;
}

std::shared_ptr<Generator> small_eval_unet(uint64_t seed) {
  torch::manual_seed(seed);
  GeneratorOptions options;
  options.net = "unet";
  options.num_downs = 5;
  options.ngf = 8;
  options.dropout = false;
  auto generator = make_generator(options);
  torch::NoGradGuard no_grad;
  for (auto& item : generator->named_buffers()) {
    if (item.key().find("running_mean") != std::string::npos) item.value().normal_(0, 0.2);
    if (item.key().find("running_var") != std::string::npos) item.value().uniform_(0.5, 1.5);
  }
  generator->eval();
  return generator;
}

void save_small_unet(const std::string& path, uint64_t seed) {
  torch::manual_seed(seed);
  GeneratorOptions options;
  options.net = "unet";
  options.num_downs = 5;
  options.ngf = 8;
  write_state_dict(path, module_state_dict(*make_generator(options)));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace pix2pix::test
