#include "pix2pix/trainer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <fmt/core.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "detail/atomic_file.h"
#include "detail/convolution.h"
#include "pix2pix/cpu.h"
#include "pix2pix/error.h"
#include "pix2pix/image_io.h"
#include "pix2pix/pytorch_import.h"
#include "pix2pix/report.h"
#include "pix2pix/sync_batch_norm.h"
#include "pix2pix/tensorboard.h"
#include "pix2pix/threads.h"

namespace pix2pix {

namespace {

void set_requires_grad(torch::nn::Module& module, bool requires_grad) {
  for (auto& p : module.parameters()) p.requires_grad_(requires_grad);
}

// The gradients to average over the ranks, in float32 (bf16 training leaves convolution weight
// gradients in bfloat16; the sum over ranks is taken in float32, as in one process).
std::vector<at::Tensor> gradients(torch::nn::Module& module) {
  std::vector<at::Tensor> grads;
  for (auto& p : module.parameters()) {
    if (!p.grad().defined()) continue;
    if (p.grad().scalar_type() != at::kFloat) p.mutable_grad() = p.grad().to(at::kFloat);
    grads.push_back(p.mutable_grad());
  }
  return grads;
}

// Averages a step's host statistics over the ranks; `values` gains nothing, loses nothing.
void average(Communicator* communicator, std::vector<double*> values) {
  if (!communicator || communicator->world_size() == 1) return;
  at::Tensor packed = at::empty({static_cast<int64_t>(values.size())}, at::kDouble);
  for (size_t i = 0; i < values.size(); ++i) packed[static_cast<int64_t>(i)] = *values[i];
  communicator->all_reduce_mean({packed});
  for (size_t i = 0; i < values.size(); ++i)
    *values[i] = packed[static_cast<int64_t>(i)].item<double>();
}

}  // namespace

Pix2PixStep::Pix2PixStep(std::shared_ptr<Generator> generator,
                         std::shared_ptr<Discriminator> discriminator, ObjectiveOptions objective,
                         AdamOptions adam_g, AdamOptions adam_d, uint64_t penalty_seed)
    : generator_(std::move(generator)),
      discriminator_(std::move(discriminator)),
      objective_(objective),
      optimizer_g_(generator_->parameters(), adam_g),
      penalty_generator_(at::detail::createCPUGenerator(penalty_seed)) {
  if (!objective_.no_gan) {
    if (!discriminator_) throw Error("Pix2PixStep", "a discriminator is needed unless no_gan");
    optimizer_d_ = std::make_unique<Adam>(discriminator_->parameters(), adam_d);
  }
  // bf16 training: each step also rewrites the convolutions' bfloat16 working copies, in the
  // same pass, instead of the layers casting every weight again on their next forward.
  for (auto& [weight, copy] : detail::bf16_working_copies(*generator_))
    optimizer_g_.set_bfloat16_copy(weight, copy);
  if (optimizer_d_)
    for (auto& [weight, copy] : detail::bf16_working_copies(*discriminator_))
      optimizer_d_->set_bfloat16_copy(weight, copy);
}

void Pix2PixStep::set_communicator(std::shared_ptr<Communicator> communicator) {
  communicator_ = std::move(communicator);
  pix2pix::set_communicator(*generator_, communicator_);
  if (discriminator_) pix2pix::set_communicator(*discriminator_, communicator_);
}

void Pix2PixStep::set_learning_rates(double lr_g, double lr_d) {
  optimizer_g_.set_lr(lr_g);
  if (optimizer_d_) optimizer_d_->set_lr(lr_d);
}

at::Tensor Pix2PixStep::discriminate(const at::Tensor& real_a, const at::Tensor& image) {
  return discriminator_->forward(objective_.unconditional_d ? image : at::cat({real_a, image}, 1));
}

StepStats Pix2PixStep::step(const at::Tensor& real_a, const at::Tensor& real_b) {
  return step({{real_a, real_b}});
}

StepStats Pix2PixStep::step(const std::vector<std::pair<at::Tensor, at::Tensor>>& batches) {
  if (batches.empty()) throw Error("Pix2PixStep", "no batch to train on", ErrorKind::kRuntime);
  StepStats stats;
  const size_t count = batches.size();
  // With several micro-batches every loss is divided by their number, so the summed gradients
  // are those of their mean; with one, nothing is divided (the reference's exact operations).
  auto share = [count](const at::Tensor& loss) {
    return count == 1 ? loss : loss / static_cast<double>(count);
  };
  const double n = static_cast<double>(count);
  // Batch-norm statistics change in every forward pass; kept to undo a non-finite step.
  using Saved = std::vector<std::pair<at::Tensor, at::Tensor>>;
  auto save_buffers = [](torch::nn::Module& module) {
    Saved saved;
    for (auto& buffer : module.buffers()) saved.emplace_back(buffer, buffer.clone());
    return saved;
  };
  auto restore_buffers = [](Saved& saved) {
    at::NoGradGuard no_grad;
    for (auto& [buffer, copy] : saved) buffer.copy_(copy);
  };
  Saved g_buffers = save_buffers(*generator_);
  Saved d_buffers = discriminator_ ? save_buffers(*discriminator_) : Saved{};
  generator_->train();
  std::vector<at::Tensor> fakes;
  for (const auto& batch : batches) fakes.push_back(generator_->forward(batch.first));

  if (!objective_.no_gan) {
    // D: fake and real pairs in two separate passes (one concatenated batch would mix their
    // batch-norm statistics; DESIGN.md section 5).
    discriminator_->train();
    optimizer_d_->zero_grad();
    for (size_t k = 0; k < count; ++k) {
      const at::Tensor& real_a = batches[k].first;
      const at::Tensor& real_b = batches[k].second;
      at::Tensor pred_fake = discriminate(real_a, fakes[k].detach());
      at::Tensor pred_real = discriminate(real_a, real_b);
      at::Tensor loss_d_fake = gan_loss(pred_fake, false, objective_.gan_mode);
      at::Tensor loss_d_real = gan_loss(pred_real, true, objective_.gan_mode);
      at::Tensor loss_d = 0.5 * (loss_d_fake + loss_d_real);
      if (objective_.lambda_gp > 0) {
        auto input = [&](const at::Tensor& image) {
          return objective_.unconditional_d ? image : at::cat({real_a, image}, 1);
        };
        at::Tensor penalty = gradient_penalty(
            [&](const at::Tensor& x) { return discriminator_->forward(x); }, input(real_b),
            input(fakes[k].detach()), objective_.lambda_gp, penalty_generator_);
        loss_d = loss_d + penalty;
        stats.gradient_penalty += penalty.item<double>() / n;
      }
      share(loss_d).backward();
      stats.d_fake += loss_d_fake.item<double>() / n;
      stats.d_real += loss_d_real.item<double>() / n;
      stats.d_accuracy_fake += discriminator_accuracy(pred_fake, false, objective_.gan_mode) / n;
      stats.d_accuracy_real += discriminator_accuracy(pred_real, true, objective_.gan_mode) / n;
    }
    // Data parallel: mean gradients and losses. A non-finite value on any rank becomes a
    // non-finite mean on every rank, so all ranks skip (or take) the update together.
    if (communicator_) {
      communicator_->all_reduce_mean(gradients(*discriminator_));
      average(communicator_.get(), {&stats.d_fake, &stats.d_real, &stats.gradient_penalty,
                                    &stats.d_accuracy_fake, &stats.d_accuracy_real});
    }
    if (std::isfinite(stats.d_fake + stats.d_real + stats.gradient_penalty) &&
        optimizer_d_->gradients_finite()) {
      optimizer_d_->step();
    } else {
      stats.skipped_d = true;
      optimizer_d_->zero_grad();
    }
  }

  // G: fool D (frozen: no weight gradients are computed for it) and stay close to the target.
  optimizer_g_.zero_grad();
  if (!objective_.no_gan) set_requires_grad(*discriminator_, false);
  try {
    for (size_t k = 0; k < count; ++k) {
      const at::Tensor& real_a = batches[k].first;
      const at::Tensor& real_b = batches[k].second;
      at::Tensor loss_g;
      at::Tensor loss_l1;
      if (objective_.no_gan) {
        loss_l1 = (fakes[k] - real_b).abs().mean();
        loss_g = objective_.lambda_l1 * loss_l1;
      } else {
        at::Tensor pred_fake = discriminate(real_a, fakes[k]);
        at::Tensor loss_g_gan = gan_loss(pred_fake, true, objective_.gan_mode);
        loss_l1 = (fakes[k] - real_b).abs().mean();  // after D's pass, in the reference's order
        loss_g = loss_g_gan + objective_.lambda_l1 * loss_l1;
        stats.g_gan += loss_g_gan.item<double>() / n;
      }
      share(loss_g).backward();
      stats.g_l1 += loss_l1.item<double>() / n;
    }
  } catch (...) {
    if (discriminator_) set_requires_grad(*discriminator_, true);
    throw;
  }
  if (communicator_) {
    communicator_->all_reduce_mean(gradients(*generator_));
    average(communicator_.get(), {&stats.g_gan, &stats.g_l1});
  }
  if (std::isfinite(stats.g_gan + stats.g_l1) && optimizer_g_.gradients_finite()) {
    optimizer_g_.step();
  } else {
    stats.skipped_g = true;
    optimizer_g_.zero_grad();
  }
  if (!objective_.no_gan) set_requires_grad(*discriminator_, true);
  // D's statistics also move in the G pass, so any skipped update (or statistics that overflowed)
  // restores both networks' buffers.
  auto finite = [](const Saved& saved) {
    for (const auto& [buffer, copy] : saved)
      if (buffer.is_floating_point() && !at::isfinite(buffer).all().item<bool>()) return false;
    return true;
  };
  // Rank 0's buffers everywhere (plain batch norm's running statistics differ per rank), before
  // the finiteness check so that it decides the same on every rank.
  if (communicator_ && communicator_->world_size() > 1) {
    std::vector<at::Tensor> buffers;
    for (const auto& [buffer, copy] : g_buffers) buffers.push_back(buffer);
    for (const auto& [buffer, copy] : d_buffers) buffers.push_back(buffer);
    communicator_->broadcast(buffers);
  }
  if (stats.skipped_d || stats.skipped_g || !finite(g_buffers) || !finite(d_buffers)) {
    restore_buffers(g_buffers);
    restore_buffers(d_buffers);
  }
  return stats;
}

}  // namespace pix2pix

// ---------------------------------------------------------------------------------------------
// The training loop and the run directory.

namespace pix2pix {

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

Json options_json(const TrainOptions& o) {
  const auto& g = o.generator;
  const auto& d = o.discriminator;
  const auto& t = o.transform;
  return Json{
      {"data", o.data},
      {"name", o.name},
      {"runs_dir", o.runs_dir},
      {"direction", to_string(o.direction)},
      {"netG", g.net},
      {"ngf", g.ngf},
      {"input_nc", g.input_nc},
      {"output_nc", g.output_nc},
      {"num_downs", g.num_downs},
      {"norm", to_string(g.norm)},
      {"dropout", g.dropout},
      {"upsampling", to_string(g.upsampling)},
      {"netD", d.net},
      {"ndf", d.ndf},
      {"n_layers_D", d.n_layers},
      {"norm_D", to_string(d.norm)},
      {"init_type", to_string(o.init.type)},
      {"init_gain", o.init.gain},
      {"gan_mode", to_string(o.objective.gan_mode)},
      {"lambda_l1", o.objective.lambda_l1},
      {"lambda_gp", o.objective.lambda_gp},
      {"no_gan", o.objective.no_gan},
      {"unconditional_d", o.objective.unconditional_d},
      {"lr", o.adam.lr},
      {"beta1", o.adam.beta1},
      {"beta2", o.adam.beta2},
      {"lr_d_ratio", o.lr_d_ratio},
      {"lr_policy", to_string(o.schedule.policy)},
      {"n_epochs", o.schedule.n_epochs},
      {"n_epochs_decay", o.schedule.n_epochs_decay},
      {"lr_decay_epochs", o.schedule.lr_decay_epochs},
      {"preprocess", to_string(t.preprocess)},
      {"load_size", t.load_size},
      {"crop_size", to_string(CropSize{t.crop_height, t.crop_width})},
      {"flip", t.flip},
      {"resize_filter", to_string(t.filter)},
      {"batch_size", o.loader.batch_size},
      {"workers", o.loader.workers},
      {"cache", o.loader.cache},
      {"seed", o.seed},
      {"max_steps", o.max_steps},
      {"print_every", o.print_every},
      {"sample_every", o.sample_every},
      {"save_every_steps", o.save_every_steps},
      {"save_every_epochs", o.save_every_epochs},
      {"validate", o.validate},
      {"init_G", o.init_g},
      {"init_D", o.init_d},
      {"deterministic", o.deterministic},
      {"accumulate", o.accumulate},
      {"max_nonfinite", o.max_nonfinite},
      {"precision", to_string(o.compute.precision)},
      {"transposed_conv", to_string(o.compute.transposed)},
      {"bf16_conv", o.compute.onednn_direct ? "direct" : "libtorch"},
      {"max_seconds", o.max_seconds},
      {"validate_first", o.validate_first},
      {"tensorboard", o.tensorboard},
      {"report", o.report},
      {"on_bad_file", to_string(o.on_bad_file)},
  };
}

at::Tensor scalar(int64_t value) { return at::scalar_tensor(value, at::kLong); }

// The G/D weights and everything else needed to continue exactly: optimiser moments, the epoch
// and step reached, torch's generator (dropout), the gradient-penalty generator, the schedule.
struct Checkpointer {
  std::string dir;
  std::string options_text;  ///< the run's resolved options (options_to_json), kept in the state
  int64_t batch_size = 1;    ///< per rank (the state's epoch_step, for older readers)
  bool writer = true;        ///< false on ranks other than 0: they write nothing

  void save(const std::string& prefix, Pix2PixStep& model) const {
    if (!writer) return;
    // Never a non-finite weight in a checkpoint (the guard skips such updates; this is the proof).
    auto check = [&](torch::nn::Module& module, const char* net) {
      for (const auto& [key, value] : module_state_dict(module))
        if (value.is_floating_point() && !at::isfinite(value).all().item<bool>())
          throw Error(dir + "/" + prefix + "_net_" + net + ".pth",
                      "not saved: '" + key + "' holds non-finite values", ErrorKind::kRuntime);
    };
    check(model.generator(), "G");
    if (model.discriminator()) check(*model.discriminator(), "D");
    write_state_dict(dir + "/" + prefix + "_net_G.pth", module_state_dict(model.generator()));
    if (model.discriminator())
      write_state_dict(dir + "/" + prefix + "_net_D.pth",
                       module_state_dict(*model.discriminator()));
  }

  // `epoch_samples`: samples of the epoch's order consumed by all ranks together, where a resume
  // continues with any number of ranks.
  void save_state(Pix2PixStep& model, const LrSchedule& schedule, int64_t epoch,
                  int64_t epoch_samples, int64_t global_step, double best_val_l1) const {
    if (!writer) return;
    save("latest", model);
    // The state holds the weights too, so that one atomic file is a consistent checkpoint: a
    // crash between the files above and this one cannot pair new weights with old moments.
    StateDict state;
    for (auto& [key, value] : module_state_dict(model.generator()))
      state.emplace_back("net_G." + key, value);
    if (model.discriminator())
      for (auto& [key, value] : module_state_dict(*model.discriminator()))
        state.emplace_back("net_D." + key, value);
    for (auto& [key, value] : model.optimizer_g().state())
      state.emplace_back("optimizer_G." + key, value);
    if (model.optimizer_d())
      for (auto& [key, value] : model.optimizer_d()->state())
        state.emplace_back("optimizer_D." + key, value);
    state.emplace_back("epoch", scalar(epoch));
    state.emplace_back("epoch_step", scalar(epoch_samples / batch_size));
    state.emplace_back("epoch_samples", scalar(epoch_samples));
    state.emplace_back("global_step", scalar(global_step));
    state.emplace_back("best_val_l1", at::scalar_tensor(best_val_l1, at::kDouble));
    state.emplace_back("torch_rng",
                       at::Tensor(at::detail::getDefaultCPUGenerator().get_state()).clone());
    state.emplace_back("penalty_rng", at::Tensor(model.penalty_generator().get_state()).clone());
    state.emplace_back("schedule", at::tensor(schedule.state(), at::kDouble));
    // The options as UTF-8 JSON bytes (Python: bytes(state["options"].numpy()).decode()), so the
    // state alone says how to continue the run.
    state.emplace_back("options", at::tensor(at::ArrayRef<uint8_t>(
                                      reinterpret_cast<const uint8_t*>(options_text.data()),
                                      options_text.size()))
                                      .clone());
    write_state_dict(dir + "/latest_state.pt", state);
  }
};

// Mean L1 and PSNR (8-bit scale: images in [0, 1]) of G in eval mode over a split.
// The next batch; a batch that fails to load goes to `on_bad`, which throws to stop or returns to
// go on with the following one.
std::optional<Batch> next_batch(Loader& loader, const std::function<void(const Error&)>& on_bad) {
  while (true) {
    try {
      return loader.next();
    } catch (const Error& error) {
      on_bad(error);
    }
  }
}

std::pair<double, double> evaluate(Generator& generator, Loader& loader,
                                   const std::function<void(const Error&)>& on_bad) {
  at::NoGradGuard no_grad;
  const bool was_training = generator.is_training();
  generator.eval();
  loader.start_epoch(0);
  double l1 = 0, psnr = 0;
  int64_t count = 0;
  while (auto batch = next_batch(loader, on_bad)) {
    at::Tensor fake = generator.forward(batch->input);
    for (int64_t i = 0; i < fake.size(0); ++i) {
      at::Tensor diff = (fake[i] - batch->target[i]);
      l1 += diff.abs().mean().item<double>();
      const double mse = (diff / 2).pow(2).mean().item<double>();
      psnr += 10.0 * std::log10(1.0 / std::max(mse, 1e-10));
      ++count;
    }
  }
  generator.train(was_training);
  return {l1 / std::max<int64_t>(count, 1), psnr / std::max<int64_t>(count, 1)};
}

// real_A | fake_B | real_B for the first sample of a batch, as an 8-bit image.
void write_sample(const std::string& path, Generator& generator, const Batch& batch) {
  at::NoGradGuard no_grad;
  at::Tensor fake = generator.forward(batch.input.narrow(0, 0, 1));
  auto rgb = [](at::Tensor t) { return t.size(0) == 1 ? t.repeat({3, 1, 1}) : t.narrow(0, 0, 3); };
  at::Tensor strip = at::cat({rgb(batch.input[0]), rgb(fake[0]), rgb(batch.target[0])}, 2);
  write_png(path, tensor_to_image(strip));
}

// Input | output | target strips of the first `count` images of a (validation) loader, stacked,
// with G in eval mode (no dropout: torch's random stream is left alone).
void write_epoch_sample(const std::string& path, Generator& generator, Loader& loader,
                        int64_t count, const std::function<void(const Error&)>& on_bad) {
  at::NoGradGuard no_grad;
  const bool was_training = generator.is_training();
  generator.eval();
  loader.start_epoch(0);
  auto rgb = [](at::Tensor t) { return t.size(0) == 1 ? t.repeat({3, 1, 1}) : t.narrow(0, 0, 3); };
  std::vector<at::Tensor> strips;
  while (static_cast<int64_t>(strips.size()) < count) {
    auto batch = next_batch(loader, on_bad);
    if (!batch) break;
    at::Tensor fake = generator.forward(batch->input);
    for (int64_t i = 0; i < fake.size(0) && static_cast<int64_t>(strips.size()) < count; ++i)
      strips.push_back(at::cat({rgb(batch->input[i]), rgb(fake[i]), rgb(batch->target[i])}, 2));
  }
  generator.train(was_training);
  if (!strips.empty()) write_png(path, tensor_to_image(at::cat(strips, 1)));
}

// Every numeric field of a metrics.jsonl row but its step, as TensorBoard scalars "kind/key".
void log_scalars(TensorBoardWriter* tensorboard, const Json& row) {
  if (!tensorboard) return;
  std::vector<std::pair<std::string, double>> values;
  const std::string kind = row.value("kind", std::string("train"));
  for (const auto& [key, value] : row.items())
    if (key != "step" && value.is_number())
      values.emplace_back(kind + "/" + key, value.get<double>());
  tensorboard->add_scalars(row.at("step").get<int64_t>(), values);
}

std::string format_seconds(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds);
  return fmt::format("{}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60);
}

}  // namespace

at::Generator& Pix2PixStep::penalty_generator() { return penalty_generator_; }

std::string options_to_json(const TrainOptions& options) {
  const Json values = options_json(options);
  const Json defaults = options_json(TrainOptions{});
  Json non_defaults = Json::array();
  for (const auto& [key, value] : values.items())
    if (key != "name" && key != "data" && defaults.at(key) != value) non_defaults.push_back(key);
  const CpuFeatures& cpu = cpu_features();
  return Json{{"options", values},
              {"non_defaults", non_defaults},
              {"cpu", {{"architecture", cpu.architecture}, {"features", cpu.names()}}}}
             .dump(2) +
         "\n";
}

std::string to_string(BadFilePolicy policy) {
  return policy == BadFilePolicy::kSkip ? "skip" : "fail";
}

BadFilePolicy parse_bad_file_policy(const std::string& name) {
  if (name == "fail") return BadFilePolicy::kFail;
  if (name == "skip") return BadFilePolicy::kSkip;
  throw Error("--on-bad-file", "unknown policy '" + name + "' (expected fail or skip)");
}

TrainResult train(const TrainOptions& options, const std::function<void(const std::string&)>& log) {
  // Data parallelism: rank 0 alone logs and writes the run directory (`writer`).
  Communicator* const communicator =
      options.communicator && options.communicator->world_size() > 1 ? options.communicator.get()
                                                                      : nullptr;
  const int rank = communicator ? communicator->rank() : 0;
  const int world_size = communicator ? communicator->world_size() : 1;
  const bool writer = rank == 0;
  auto say = [&](const std::string& line) {
    if (log && writer) log(line);
  };
  if (options.data.empty()) throw Error("--data", "a dataset folder is required");
  if (options.name.empty() || options.name.find('/') != std::string::npos)
    throw Error("--name", "'" + options.name + "' must be a plain folder name");
  validate(options.transform);
  const std::string run_dir = (fs::path(options.runs_dir) / options.name).string();
  const std::string checkpoint_dir = run_dir + "/checkpoints";
  const std::string state_path = checkpoint_dir + "/latest_state.pt";
  if (options.resume && !fs::exists(state_path))
    throw Error(run_dir, "nothing to resume: no checkpoints/latest_state.pt");
  if (!options.resume && fs::exists(checkpoint_dir) && !fs::is_empty(checkpoint_dir))
    throw Error(run_dir,
                "a run with checkpoints exists; use --resume to continue it or another --name");

  // Data first: a bad dataset fails before anything is written.
  DatasetOptions data_options;
  data_options.root = options.data;
  data_options.split = "train";
  data_options.direction = options.direction;
  data_options.input_nc = static_cast<int>(options.generator.input_nc);
  data_options.output_nc = static_cast<int>(options.generator.output_nc);
  auto train_set = std::make_shared<const Dataset>(data_options);
  std::shared_ptr<const Dataset> val_set;
  const fs::path root(options.data);
  if (options.validate && (fs::exists(root / "val") || fs::exists(root / "A" / "val"))) {
    DatasetOptions val_options = data_options;
    val_options.split = "val";
    val_set = std::make_shared<const Dataset>(val_options);
  }
  // The up-front scan (headers only): stop naming the bad files, or leave them out.
  TransformOptions val_transform = options.transform;
  val_transform.flip = false;
  std::vector<std::string> skipped_in_scan;
  auto scan = [&](std::shared_ptr<const Dataset>& set, const TransformOptions& transform) {
    if (!set) return;
    const std::vector<BadEntry> bad = scan_entries(*set, transform);
    if (bad.empty()) return;
    const std::string folder = (root / set->options().split).string();
    if (options.on_bad_file == BadFilePolicy::kFail) {
      std::string more;
      if (bad.size() > 1)
        more = fmt::format(" (and {} more bad file{} in {}; `pix2pix data check {}` lists them)",
                           bad.size() - 1, bad.size() > 2 ? "s" : "", folder, options.data);
      throw Error(bad.front().message + more + "; --on-bad-file skip trains without them");
    }
    std::vector<size_t> indices;
    for (const BadEntry& entry : bad) {
      indices.push_back(entry.index);
      skipped_in_scan.push_back(entry.message);
    }
    set = std::make_shared<const Dataset>(set->without(indices));
    if (set->size() == 0)
      throw Error(folder, "every file is bad (" + bad.front().message + ")");
  };
  scan(train_set, options.transform);
  scan(val_set, val_transform);

  // Models: seed, build G, build D, initialise G then D (the reference's order).
  at::manual_seed(options.seed);
  auto generator = make_generator(options.generator);
  DiscriminatorOptions d_options = options.discriminator;
  d_options.input_nc = options.objective.unconditional_d
                           ? options.generator.output_nc
                           : options.generator.input_nc + options.generator.output_nc;
  std::shared_ptr<Discriminator> discriminator;
  if (!options.objective.no_gan) discriminator = make_discriminator(d_options);
  init_weights(*generator, options.init);
  if (discriminator) init_weights(*discriminator, options.init);
  if (!options.init_g.empty())
    load_state_dict(*generator, read_state_dict(options.init_g), options.init_g);
  if (!options.init_d.empty()) {
    if (!discriminator) throw Error("--init-D", "there is no discriminator with --no-gan");
    load_state_dict(*discriminator, read_state_dict(options.init_d), options.init_d);
  }
  at::globalContext().setDeterministicAlgorithms(options.deterministic, /*warn_only=*/false);
  set_compute(*generator, options.compute);
  if (discriminator) set_compute(*discriminator, options.compute);
  const int64_t multiple = generator->size_multiple();
  if (has_crop(options.transform.preprocess) && (options.transform.crop_height % multiple != 0 ||
                                                 options.transform.crop_width % multiple != 0))
    throw Error("--crop-size",
                to_string(CropSize{options.transform.crop_height, options.transform.crop_width}) +
                    " cannot be used with " + generator->options().net +
                    ": sides must be multiples of " + std::to_string(multiple));

  AdamOptions adam_d = options.adam;
  adam_d.lr = options.adam.lr * options.lr_d_ratio;
  Pix2PixStep model(generator, discriminator, options.objective, options.adam, adam_d,
                    options.seed + 0x9e3779b97f4a7c15ULL);
  LrSchedule schedule(options.schedule);

  if (writer) {
    fs::create_directories(checkpoint_dir);
    fs::create_directories(run_dir + "/samples");
  }
  const Checkpointer checkpointer{checkpoint_dir, options_to_json(options),
                                  options.loader.batch_size, writer};
  int64_t start_epoch = options.schedule.epoch_count, global_step = 0;
  int64_t skip_samples = -1;  // where a resume continues in its epoch (samples of all ranks)
  int64_t skip_steps = 0;     // the same in batches of a single process (older states)
  double best_val_l1 = std::numeric_limits<double>::infinity();
  if (options.resume) {
    StateDict opt_g, opt_d, net_g, net_d;
    at::Tensor torch_rng, penalty_rng;
    std::string state_options;
    for (const auto& [key, value] : read_state_dict(state_path)) {
      if (key.rfind("net_G.", 0) == 0)
        net_g.emplace_back(key.substr(6), value);
      else if (key.rfind("net_D.", 0) == 0)
        net_d.emplace_back(key.substr(6), value);
      else if (key.rfind("optimizer_G.", 0) == 0)
        opt_g.emplace_back(key.substr(12), value);
      else if (key.rfind("optimizer_D.", 0) == 0)
        opt_d.emplace_back(key.substr(12), value);
      else if (key == "epoch")
        start_epoch = value.item<int64_t>();
      else if (key == "epoch_step")
        skip_steps = value.item<int64_t>();
      else if (key == "epoch_samples")
        skip_samples = value.item<int64_t>();
      else if (key == "global_step")
        global_step = value.item<int64_t>();
      else if (key == "best_val_l1")
        best_val_l1 = value.item<double>();
      else if (key == "torch_rng")
        torch_rng = value;
      else if (key == "penalty_rng")
        penalty_rng = value;
      else if (key == "options" && value.scalar_type() == at::kByte) {
        const at::Tensor bytes = value.contiguous();
        state_options.assign(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()),
                             static_cast<size_t>(bytes.numel()));
      }
      else if (key == "schedule") {
        at::Tensor s = value.to(at::kDouble).contiguous();
        schedule.load_state(
            std::vector<double>(s.data_ptr<double>(), s.data_ptr<double>() + s.numel()));
      }
    }
    // Weights from the state itself (older runs: from latest_net_*.pth beside it).
    if (net_g.empty()) net_g = read_state_dict(checkpoint_dir + "/latest_net_G.pth");
    load_state_dict(*generator, net_g, state_path);
    if (discriminator) {
      if (net_d.empty()) net_d = read_state_dict(checkpoint_dir + "/latest_net_D.pth");
      load_state_dict(*discriminator, net_d, state_path);
    }
    model.optimizer_g().load_state(opt_g, state_path);
    if (model.optimizer_d()) model.optimizer_d()->load_state(opt_d, state_path);
    if (!torch_rng.defined() || !penalty_rng.defined())
      throw Error(state_path, "incomplete training state (no generator states)");
    at::Generator default_generator = at::detail::getDefaultCPUGenerator();  // a handle
    default_generator.set_state(torch_rng);
    model.penalty_generator().set_state(penalty_rng);
    if (skip_samples < 0) skip_samples = skip_steps * options.loader.batch_size;
    // The run must continue with the options it started with, except those that only steer
    // logging, speed or the length of the run. The state's own copy of the options wins over
    // options.json (which older runs have alone).
    Json stored;
    if (!state_options.empty()) {
      try {
        stored = Json::parse(state_options).at("options");
      } catch (const std::exception&) {
        throw Error(state_path, "its stored options are not valid JSON");
      }
    } else {
      std::ifstream stored_file(run_dir + "/options.json");
      try {
        stored = Json::parse(stored_file).at("options");
      } catch (const std::exception&) {
        throw Error(run_dir + "/options.json", "missing or unreadable: cannot check --resume");
      }
    }
    const Json current = options_json(options);
    std::string changed;
    for (const auto& [key, value] : current.items()) {
      static const std::set<std::string> kMayChange = {"data",
                                                       "max_steps",
                                                       "print_every",
                                                       "sample_every",
                                                       "save_every_steps",
                                                       "save_every_epochs",
                                                       "workers",
                                                       "cache",
                                                       "n_epochs",
                                                       "n_epochs_decay",
                                                       "validate",
                                                       "max_nonfinite",
                                                       "precision",
                                                       "transposed_conv",
                                                       "bf16_conv",
                                                       "max_seconds",
                                                       "validate_first",
                                                       "tensorboard",
                                                       "report",
                                                       "on_bad_file"};
      if (kMayChange.count(key) || (stored.contains(key) && stored.at(key) == value)) continue;
      changed += (changed.empty() ? "" : ", ") + key + " (" +
                 (stored.contains(key) ? stored.at(key).dump() : "unset") + " -> " + value.dump() +
                 ")";
    }
    if (!changed.empty())
      throw Error(run_dir, "--resume with options that differ from the run's: " + changed);
    say(fmt::format("resuming {} at epoch {}, step {}", run_dir, start_epoch, global_step));
  } else if (writer) {
    detail::write_file_atomically(run_dir + "/options.json", options_to_json(options));
    detail::write_file_atomically(
        run_dir + "/model.txt",
        fmt::format(
            "generator {}: {} parameters\ndiscriminator {}: {} parameters, receptive field {}\n"
            "cpu: {}\n",
            generator->options().net, count_parameters(*generator), d_options.net,
            discriminator ? count_parameters(*discriminator) : 0,
            discriminator ? discriminator->receptive_field() : 0, cpu_features().describe()));
  }
  // The contract: torch's generator (dropout) is seeded right before the first step.
  if (!options.resume) at::manual_seed(options.seed);

  if (communicator) {
    // Every rank starts from rank 0's weights (fresh, --init-G/D or resumed), and draws its own
    // dropout and penalty noise (rank 0 keeps the single-process streams).
    std::vector<at::Tensor> state;
    for (const auto& [key, value] : module_state_dict(*generator)) state.push_back(value);
    if (discriminator)
      for (const auto& [key, value] : module_state_dict(*discriminator)) state.push_back(value);
    communicator->broadcast(state);
    if (rank > 0) {
      const uint64_t rank_seed =
          mix_seed(options.seed, static_cast<uint64_t>(rank), static_cast<uint64_t>(global_step));
      at::manual_seed(rank_seed);
      model.penalty_generator().set_current_seed(rank_seed + 0x9e3779b97f4a7c15ULL);
    }
  }
  model.set_communicator(communicator ? options.communicator : nullptr);

  LoaderOptions loader_options = options.loader;
  loader_options.seed = options.seed;
  loader_options.rank = rank;
  loader_options.world_size = world_size;
  Loader loader(train_set, options.transform, loader_options);
  if (world_size > 1 && loader.batches_per_epoch() == 0)
    throw Error(options.data, fmt::format("{} training pairs do not fill one batch of {} ranks x "
                                          "batch size {}",
                                          train_set->size(), world_size,
                                          options.loader.batch_size));
  std::unique_ptr<Loader> val_loader;
  if (val_set && writer) {
    LoaderOptions val_loader_options = loader_options;
    val_loader_options.shuffle = false;
    val_loader_options.drop_last = false;
    val_loader_options.rank = 0;
    val_loader_options.world_size = 1;
    val_loader = std::make_unique<Loader>(val_set, val_transform, val_loader_options);
  }

  std::ofstream metrics;
  if (writer) {
    metrics.open(run_dir + "/metrics.jsonl", std::ios::app);
    if (!metrics)
      throw Error(run_dir + "/metrics.jsonl", "cannot open for writing", ErrorKind::kRuntime);
  }
  auto append_row = [&](const Json& row) {
    if (writer) metrics << row.dump() << "\n" << std::flush;
  };
  const int64_t last_epoch = options.schedule.n_epochs + options.schedule.n_epochs_decay +
                             options.schedule.epoch_count - 1;
  if (options.accumulate < 1) throw Error("--accumulate", "must be at least 1");
  const int64_t steps_per_epoch =
      (loader.batches_per_epoch() + options.accumulate - 1) / options.accumulate;
  std::unique_ptr<TensorBoardWriter> tensorboard;
  if (options.tensorboard && writer) tensorboard = std::make_unique<TensorBoardWriter>(run_dir + "/tb");
  TrainResult result;
  const int64_t first_step = global_step;
  // Validation: a metrics row, TensorBoard scalars and the epoch's samples (of the same images).
  // Bad data files met while loading (the scan reads headers only): BadFilePolicy.
  int64_t epoch = start_epoch, epoch_step = 0;
  int64_t epoch_samples = 0;  // of the epoch's order, consumed by all ranks together
  auto bad_file = [&](const std::string& message) {
    ++result.bad_files;
    append_row(
        Json{{"kind", "bad_file"}, {"epoch", epoch}, {"step", global_step}, {"error", message}});
    say("skipping a bad file: " + message);
  };
  for (const std::string& message : skipped_in_scan) bad_file(message);
  // `resume_samples`: where a --resume continues (the failing batch again, or the validation).
  auto on_bad = [&](const Error& error, int64_t resume_samples) {
    // Another rank cannot know that this one left a batch out: the ranks would fall out of step.
    if (communicator)
      throw Error(error.what() + fmt::format(" (rank {} of {}: with several ranks a file that "
                                             "fails while training stops the run)",
                                             rank, world_size),
                  ErrorKind::kInput);
    if (options.on_bad_file == BadFilePolicy::kSkip) return bad_file(error.what());
    std::string saved;
    if (global_step > first_step) {
      checkpointer.save_state(model, schedule, epoch, resume_samples, global_step, best_val_l1);
      saved = fmt::format(" (at step {}; checkpoint saved: --resume --on-bad-file skip goes on "
                          "without it)",
                          global_step);
    }
    throw Error(error.what() + saved + (saved.empty() ? "; --on-bad-file skip trains without it" : ""),
                ErrorKind::kInput);
  };
  auto on_bad_val = [&](const Error& error) { on_bad(error, epoch_samples); };
  // Rank 0 validates; the others wait for its L1 (the schedule may depend on it) in the
  // broadcast, which they leave after --dist-timeout at most.
  auto validate_now = [&](int64_t epoch, int64_t step) {
    double val_l1 = 0;
    if (val_loader) {
      const auto [l1, val_psnr] = evaluate(*generator, *val_loader, on_bad_val);
      val_l1 = l1;
      const Json row{{"kind", "val"},
                     {"epoch", epoch},
                     {"step", step},
                     {"val_L1", val_l1},
                     {"val_PSNR", val_psnr}};
      append_row(row);
      log_scalars(tensorboard.get(), row);
      say(fmt::format("epoch {} validation: L1 {:.4f}  PSNR {:.2f} dB", epoch, val_l1, val_psnr));
      const std::string sample = fmt::format("{}/samples/epoch{:03d}.png", run_dir, epoch);
      write_epoch_sample(sample, *generator, *val_loader, 3, on_bad_val);
      if (tensorboard && fs::exists(sample)) tensorboard->add_png_file("samples/val", step, sample);
    }
    if (communicator) {
      const at::Tensor value = at::full({1}, val_l1, at::kDouble);
      communicator->broadcast({value});
      val_l1 = value.item<double>();
    }
    return val_l1;
  };
  // Whether any rank says yes (an interrupt or the time budget seen by one rank stops them all
  // at the same step).
  auto any_rank = [&](bool value) {
    return communicator ? communicator->all_reduce_max(value ? 1.0 : 0.0) > 0 : value;
  };
  if (options.validate_first && val_set && !options.resume)
    result.first_val_l1 = validate_now(start_epoch - 1, global_step);
  say(fmt::format("training {} on {} ({} pairs, {} batches per epoch), epochs {}..{}", run_dir,
                  options.data, train_set->size(), steps_per_epoch, start_epoch, last_epoch));
  result.run_dir = run_dir;
  const auto run_start = std::chrono::steady_clock::now();
  StepStats sum;
  int64_t in_interval = 0;
  double data_seconds = 0, step_seconds = 0;
  bool stop = false;
  int64_t nonfinite_in_row = 0;
  for (; epoch <= last_epoch && !stop; ++epoch) {
    const double lr = options.adam.lr * schedule.factor(epoch);
    model.set_learning_rates(lr, lr * options.lr_d_ratio);
    // Resuming mid-epoch: on from the first sample not trained on, whatever the world size then.
    epoch_samples = std::max<int64_t>(skip_samples, 0);
    skip_samples = 0;
    loader.start_epoch(epoch, epoch_samples);
    const int64_t global_batch = options.loader.batch_size * world_size;
    epoch_step = epoch_samples / global_batch;
    while (true) {
      if (options.max_steps > 0 && global_step >= options.max_steps) {
        stop = true;
        break;
      }
      int signal = options.interrupt != nullptr ? options.interrupt->load() : 0;
      if (communicator) signal = static_cast<int>(communicator->all_reduce_max(signal));
      if (signal != 0) {
        result.interrupted = signal;
        say(fmt::format("signal {}: stopping at step {} and saving a checkpoint",
                        result.interrupted, global_step));
        stop = true;
        break;
      }
      if (options.max_seconds > 0 &&
          any_rank(global_step > first_step &&
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start)
                           .count() >= options.max_seconds)) {
        stop = result.stopped_by_time = true;
        break;
      }
      auto t0 = std::chrono::steady_clock::now();
      std::vector<std::pair<at::Tensor, at::Tensor>> micro_batches;
      std::optional<Batch> batch;
      int64_t failed = 0;  // batches of this step that failed to load (skipped)
      while (static_cast<int64_t>(micro_batches.size()) < options.accumulate) {
        auto next = next_batch(loader, [&](const Error& error) {
          on_bad(error, epoch_samples);  // kFail: a resume retries this step's batches
          ++failed;
        });
        if (!next) break;
        micro_batches.emplace_back(next->input, next->target);
        batch = std::move(next);
      }
      epoch_step += failed;
      epoch_samples += failed * global_batch;
      if (micro_batches.empty()) break;
      if (!options.deterministic) adapt_threads();  // a fixed thread count keeps runs identical
      auto t1 = std::chrono::steady_clock::now();
      const StepStats stats = model.step(micro_batches);
      auto t2 = std::chrono::steady_clock::now();
      ++global_step;
      epoch_step += static_cast<int64_t>(micro_batches.size());
      epoch_samples += static_cast<int64_t>(micro_batches.size()) * global_batch;
      data_seconds += std::chrono::duration<double>(t1 - t0).count();
      step_seconds += std::chrono::duration<double>(t2 - t1).count();
      if (stats.skipped_d || stats.skipped_g) {
        // The non-finite guard skipped an update: log it, and give up after too many in a row.
        ++result.nonfinite_steps;
        ++nonfinite_in_row;
        append_row(Json{{"kind", "nonfinite"},
                        {"epoch", epoch},
                        {"step", global_step},
                        {"skipped_G", stats.skipped_g},
                        {"skipped_D", stats.skipped_d},
                        {"in_a_row", nonfinite_in_row}});
        say(fmt::format("step {}: non-finite loss or gradient in {}; update skipped ({} in a row)",
                        global_step,
                        stats.skipped_g && stats.skipped_d ? "G and D"
                        : stats.skipped_g                  ? "G"
                                                           : "D",
                        nonfinite_in_row));
        if (options.max_nonfinite > 0 && nonfinite_in_row >= options.max_nonfinite) {
          checkpointer.save_state(model, schedule, epoch, epoch_samples, global_step, best_val_l1);
          throw Error(run_dir,
                      fmt::format("{} steps in a row had a non-finite loss or gradient (last at "
                                  "step {}); stopped. checkpoints/ holds the last finite weights "
                                  "(a lower --lr may help)",
                                  nonfinite_in_row, global_step),
                      ErrorKind::kRuntime);
        }
        continue;
      }
      nonfinite_in_row = 0;
      sum.g_gan += stats.g_gan, sum.g_l1 += stats.g_l1, sum.d_real += stats.d_real;
      sum.d_fake += stats.d_fake, sum.gradient_penalty += stats.gradient_penalty;
      sum.d_accuracy_real += stats.d_accuracy_real, sum.d_accuracy_fake += stats.d_accuracy_fake;
      ++in_interval;
      if (global_step % std::max<int64_t>(options.print_every, 1) == 0) {
        const double n = static_cast<double>(in_interval);
        Json row{{"kind", "train"},
                 {"epoch", epoch},
                 {"step", global_step},
                 {"epoch_step", epoch_step},
                 {"G_GAN", sum.g_gan / n},
                 {"G_L1", sum.g_l1 / n},
                 {"D_real", sum.d_real / n},
                 {"D_fake", sum.d_fake / n},
                 {"D_acc_real", sum.d_accuracy_real / n},
                 {"D_acc_fake", sum.d_accuracy_fake / n},
                 {"GP", sum.gradient_penalty / n},
                 {"lr", lr},
                 {"step_s", step_seconds / n},
                 {"data_s", data_seconds / n},
                 {"bad_files", result.bad_files}};
        if (world_size > 1) row["world_size"] = world_size;  // the batch is world_size * batch
        append_row(row);
        log_scalars(tensorboard.get(), row);
        const double elapsed =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
        const int64_t total =
            options.max_steps > 0
                ? options.max_steps
                : (last_epoch - options.schedule.epoch_count + 1) * steps_per_epoch;
        const double rate = static_cast<double>(global_step - first_step) / std::max(elapsed, 1e-9);
        say(fmt::format(
            "epoch {} step {}/{}  G_GAN {:.3f} G_L1 {:.4f} D_real {:.3f} D_fake {:.3f} D_acc "
            "{:.0f}%/{:.0f}%  {:.2f} it/s  ETA {}",
            epoch, global_step, total, sum.g_gan / n, sum.g_l1 / n, sum.d_real / n, sum.d_fake / n,
            100 * sum.d_accuracy_real / n, 100 * sum.d_accuracy_fake / n, rate,
            format_seconds(std::min(static_cast<double>(std::max<int64_t>(0, total - global_step)) /
                                        std::max(rate, 1e-9),
                                    options.max_seconds > 0
                                        ? std::max(0.0, options.max_seconds - elapsed)
                                        : std::numeric_limits<double>::infinity()))));
        sum = StepStats{};
        in_interval = 0;
        data_seconds = step_seconds = 0;
      }
      if (writer && options.sample_every > 0 && global_step % options.sample_every == 0) {
        const std::string sample = fmt::format("{}/samples/step{:07d}.png", run_dir, global_step);
        write_sample(sample, *generator, *batch);
        if (tensorboard) tensorboard->add_png_file("samples/train", global_step, sample);
      }
      if (options.save_every_steps > 0 && global_step % options.save_every_steps == 0)
        checkpointer.save_state(model, schedule, epoch, epoch_samples, global_step, best_val_l1);
    }
    if (stop) {
      // Out of time: the run ends here, so it is validated here (the schedule is not stepped).
      if (result.stopped_by_time && val_set) {
        const double val_l1 = validate_now(epoch, global_step);
        result.last_val_l1 = val_l1;
        if (val_l1 < best_val_l1) {
          best_val_l1 = val_l1;
          checkpointer.save("best", model);
        }
      }
      // Stopped inside the epoch: the checkpoint continues it where it left off.
      checkpointer.save_state(model, schedule, epoch, epoch_samples, global_step, best_val_l1);
      if (options.report && writer) write_report(run_dir);
      break;
    }
    // End of the epoch: validation, schedule, checkpoints.
    if (val_set) {
      const double val_l1 = validate_now(epoch, global_step);
      schedule.observe(val_l1);
      result.last_val_l1 = val_l1;
      if (val_l1 < best_val_l1) {
        best_val_l1 = val_l1;
        checkpointer.save("best", model);
      }
    }
    if (options.save_every_epochs > 0 && epoch % options.save_every_epochs == 0)
      checkpointer.save(std::to_string(epoch), model);
    checkpointer.save_state(model, schedule, epoch + 1, 0, global_step, best_val_l1);
    if (options.report && writer) write_report(run_dir);
    if (options.max_seconds > 0 &&
        any_rank(std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start)
                     .count() >= options.max_seconds))
      stop = result.stopped_by_time = true;  // out of time at an epoch's end: nothing left to do
  }
  result.steps = global_step;
  result.epoch = std::min(epoch, last_epoch);
  // Every rank returns once rank 0's last checkpoint is written.
  if (communicator) communicator->barrier();
  return result;
}

}  // namespace pix2pix
