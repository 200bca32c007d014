#include "pix2pix/train/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fmt/core.h>

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "pix2pix/device.h"
#include "pix2pix/error.h"
#include "pix2pix/io/pytorch_import.h"
#include "pix2pix/train/trainer.h"
#include "train/train_options.h"

namespace pix2pix {

namespace {

using Json = nlohmann::json;

at::Tensor scalar(int64_t value) { return at::scalar_tensor(value, at::kLong); }

void append(StateDict& state, const std::string& prefix, const StateDict& part) {
  for (const auto& [key, value] : part) state.emplace_back(prefix + key, value);
}

// What latest_state.pt holds, by kind.
struct SavedState {
  StateDict net_g, net_d, opt_g, opt_d;
  RunPosition position;
  int64_t epoch_step = 0;  // older states: the position in batches of a single process
  bool has_samples = false;
  at::Tensor torch_rng, penalty_rng, cuda_rng, schedule;
  std::string options;  // the options the run started with (JSON), when the state has them
};

SavedState read_saved_state(const std::string& path) {
  SavedState s;
  s.position.epoch = -1;  // absent: the options' first epoch
  s.position.best_val_l1 = std::numeric_limits<double>::infinity();
  auto strip = [](const std::string& key, size_t n) { return key.substr(n); };
  for (const auto& [key, value] : read_state_dict(path)) {
    if (key.rfind("net_G.", 0) == 0)
      s.net_g.emplace_back(strip(key, 6), value);
    else if (key.rfind("net_D.", 0) == 0)
      s.net_d.emplace_back(strip(key, 6), value);
    else if (key.rfind("optimizer_G.", 0) == 0)
      s.opt_g.emplace_back(strip(key, 12), value);
    else if (key.rfind("optimizer_D.", 0) == 0)
      s.opt_d.emplace_back(strip(key, 12), value);
    else if (key == "epoch")
      s.position.epoch = value.item<int64_t>();
    else if (key == "epoch_step")
      s.epoch_step = value.item<int64_t>();
    else if (key == "epoch_samples")
      s.position.epoch_samples = value.item<int64_t>(), s.has_samples = true;
    else if (key == "global_step")
      s.position.global_step = value.item<int64_t>();
    else if (key == "best_val_l1")
      s.position.best_val_l1 = value.item<double>();
    else if (key == "torch_rng")
      s.torch_rng = value;
    else if (key == "penalty_rng")
      s.penalty_rng = value;
    else if (key == "cuda_rng")
      s.cuda_rng = value;
    else if (key == "schedule")
      s.schedule = value.to(at::kDouble).contiguous();
    else if (key == "options" && value.scalar_type() == at::kByte) {
      const at::Tensor bytes = value.contiguous();
      s.options.assign(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()),
                       static_cast<size_t>(bytes.numel()));
    }
  }
  if (!s.torch_rng.defined() || !s.penalty_rng.defined())
    throw Error(path, "incomplete training state (no generator states)");
  return s;
}

// The options the run started with: the state's own copy, else (older runs) options.json.
Json stored_options(const SavedState& state, const std::string& state_path,
                    const RunDirectory& run) {
  if (!state.options.empty()) {
    try {
      return Json::parse(state.options).at("options");
    } catch (const std::exception&) {
      throw Error(state_path, "its stored options are not valid JSON");
    }
  }
  std::ifstream file(run.options());
  try {
    return Json::parse(file).at("options");
  } catch (const std::exception&) {
    throw Error(run.options(), "missing or unreadable: cannot check the options of a `resume`");
  }
}

}  // namespace

Checkpointer::Checkpointer(RunDirectory run, std::string options_json, int64_t batch_size,
                           bool writer)
    : run_(std::move(run)),
      options_json_(std::move(options_json)),
      batch_size_(batch_size),
      writer_(writer) {}

void Checkpointer::save_weights(const std::string& prefix, Pix2PixStep& model) const {
  if (!writer_) return;
  auto check = [&](torch::nn::Module& module, const char* net) {
    for (const auto& [key, value] : module_state_dict(module))
      if (value.is_floating_point() && !at::isfinite(value).all().item<bool>())
        throw Error(run_.weights(prefix, net), "not saved: '" + key + "' holds non-finite values",
                    ErrorKind::kRuntime);
  };
  check(model.generator(), "G");
  if (model.discriminator()) check(*model.discriminator(), "D");
  write_state_dict(run_.weights(prefix, "G"), module_state_dict(model.generator()));
  if (model.discriminator())
    write_state_dict(run_.weights(prefix, "D"), module_state_dict(*model.discriminator()));
}

void Checkpointer::save_state(Pix2PixStep& model, const LrSchedule& schedule,
                              const RunPosition& position) const {
  if (!writer_) return;
  save_weights("latest", model);
  // The state holds the weights too, so that one atomic file is a consistent checkpoint: a
  // crash between the files above and this one cannot pair new weights with old moments.
  StateDict state;
  append(state, "net_G.", module_state_dict(model.generator()));
  if (model.discriminator()) append(state, "net_D.", module_state_dict(*model.discriminator()));
  append(state, "optimizer_G.", model.optimizer_g().state());
  if (model.optimizer_d()) append(state, "optimizer_D.", model.optimizer_d()->state());
  state.emplace_back("epoch", scalar(position.epoch));
  state.emplace_back("epoch_step", scalar(position.epoch_samples / batch_size_));
  state.emplace_back("epoch_samples", scalar(position.epoch_samples));
  state.emplace_back("global_step", scalar(position.global_step));
  state.emplace_back("best_val_l1", at::scalar_tensor(position.best_val_l1, at::kDouble));
  state.emplace_back("torch_rng",
                     at::Tensor(at::detail::getDefaultCPUGenerator().get_state()).clone());
  state.emplace_back("penalty_rng", at::Tensor(model.penalty_generator().get_state()).clone());
  // On a GPU dropout draws from that device's generator: its state too, for an exact resume.
  const at::Device device = device_of(model.generator());
  if (device.is_cuda())
    state.emplace_back(
        "cuda_rng", at::Tensor(at::globalContext().defaultGenerator(device).get_state()).clone());
  state.emplace_back("schedule", at::tensor(schedule.state(), at::kDouble));
  // The options as UTF-8 JSON bytes (Python: bytes(state["options"].numpy()).decode()), so the
  // state alone says how to continue the run.
  state.emplace_back(
      "options",
      at::tensor(at::ArrayRef<uint8_t>(reinterpret_cast<const uint8_t*>(options_json_.data()),
                                       options_json_.size()))
          .clone());
  write_state_dict(run_.state(), state);
}

RunPosition restore_checkpoint(const RunDirectory& run, const TrainOptions& options,
                               Pix2PixStep& model, LrSchedule& schedule) {
  const std::string state_path = run.state();
  SavedState state = read_saved_state(state_path);
  // Weights from the state itself (older runs: from latest_net_*.pth beside it).
  if (state.net_g.empty()) state.net_g = read_state_dict(run.weights("latest", "G"));
  load_state_dict(model.generator(), state.net_g, state_path);
  if (model.discriminator()) {
    if (state.net_d.empty()) state.net_d = read_state_dict(run.weights("latest", "D"));
    load_state_dict(*model.discriminator(), state.net_d, state_path);
  }
  model.optimizer_g().load_state(state.opt_g, state_path);
  if (model.optimizer_d()) model.optimizer_d()->load_state(state.opt_d, state_path);
  at::Generator default_generator = at::detail::getDefaultCPUGenerator();  // a handle
  default_generator.set_state(state.torch_rng);
  model.penalty_generator().set_state(state.penalty_rng);
  const at::Device device = device_of(model.generator());
  if (device.is_cuda() && state.cuda_rng.defined()) {
    at::Generator cuda_generator = at::globalContext().defaultGenerator(device);  // a handle
    cuda_generator.set_state(state.cuda_rng);
  }
  if (state.schedule.defined())
    schedule.load_state(
        std::vector<double>(state.schedule.data_ptr<double>(),
                            state.schedule.data_ptr<double>() + state.schedule.numel()));
  if (state.position.epoch < 0) state.position.epoch = options.schedule.epoch_count;
  if (!state.has_samples)
    state.position.epoch_samples = state.epoch_step * options.loader.batch_size;

  // The run must continue with the options it started with, except those that only steer
  // logging, speed or the length of the run.
  const Json stored = stored_options(state, state_path, run);
  std::string changed;
  for (const std::string& conflict :
       detail::resume_conflicts(stored, detail::options_json(options)))
    changed += (changed.empty() ? "" : ", ") + conflict;
  if (!changed.empty())
    throw Error(run.path, "`resume` with options that differ from the run's: " + changed);
  return state.position;
}

}  // namespace pix2pix
