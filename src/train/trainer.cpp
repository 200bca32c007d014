#include "pix2pix/train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <fmt/core.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>

#include "io/atomic_file.h"
#include "names_table.h"
#include "pix2pix/cpu.h"
#include "pix2pix/device.h"
#include "pix2pix/error.h"
#include "pix2pix/io/image_io.h"
#include "pix2pix/io/pytorch_import.h"
#include "pix2pix/io/tensorboard.h"
#include "pix2pix/threads.h"
#include "pix2pix/train/checkpoint.h"
#include "train/train_options.h"

namespace pix2pix {

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using Batches = Pix2PixStep::Batches;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string format_seconds(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds);
  return fmt::format("{}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60);
}

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

// Mean L1 and PSNR (8-bit scale: images in [0, 1]) of G in eval mode over a split.
std::pair<double, double> evaluate(Generator& generator, Loader& loader,
                                   const std::function<void(const Error&)>& on_bad) {
  at::NoGradGuard no_grad;
  const bool was_training = generator.is_training();
  generator.eval();
  loader.start_epoch(0);
  double l1 = 0, psnr = 0;
  int64_t count = 0;
  const at::Device device = device_of(generator);
  while (auto batch = next_batch(loader, on_bad)) {
    at::Tensor fake = generator.forward(batch->input.to(device)).to(at::kCPU);
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

at::Tensor rgb(const at::Tensor& t) {
  return t.size(0) == 1 ? t.repeat({3, 1, 1}) : t.narrow(0, 0, 3);
}

// real_A | fake_B | real_B for the first sample of a batch, as an 8-bit image.
void write_sample(const std::string& path, Generator& generator, const at::Tensor& input,
                  const at::Tensor& target) {
  at::NoGradGuard no_grad;
  at::Tensor fake = generator.forward(input.narrow(0, 0, 1));
  at::Tensor strip = at::cat({rgb(input[0]), rgb(fake[0]), rgb(target[0])}, 2);
  write_png(path, tensor_to_image(strip.to(at::kCPU)));
}

// Input | output | target strips of the first `count` images of a (validation) loader, stacked,
// with G in eval mode (no dropout: torch's random stream is left alone).
void write_epoch_sample(const std::string& path, Generator& generator, Loader& loader,
                        int64_t count, const std::function<void(const Error&)>& on_bad) {
  at::NoGradGuard no_grad;
  const bool was_training = generator.is_training();
  generator.eval();
  loader.start_epoch(0);
  const at::Device device = device_of(generator);
  std::vector<at::Tensor> strips;
  while (static_cast<int64_t>(strips.size()) < count) {
    auto batch = next_batch(loader, on_bad);
    if (!batch) break;
    at::Tensor fake = generator.forward(batch->input.to(device)).to(at::kCPU);
    for (int64_t i = 0; i < fake.size(0) && static_cast<int64_t>(strips.size()) < count; ++i)
      strips.push_back(at::cat({rgb(batch->input[i]), rgb(fake[i]), rgb(batch->target[i])}, 2));
  }
  generator.train(was_training);
  if (!strips.empty()) write_png(path, tensor_to_image(at::cat(strips, 1)));
}

// RUN/metrics.jsonl: one row per line, flushed as written (the report reads it while training).
class MetricsFile : public RunLogger {
 public:
  explicit MetricsFile(const std::string& path) : out_(path, std::ios::app) {
    if (!out_) throw Error(path, "cannot open for writing", ErrorKind::kRuntime);
  }
  void metrics(const Json& row) override { out_ << row.dump() << "\n" << std::flush; }

 private:
  std::ofstream out_;
};

// RUN/tb/: every numeric field of a metrics row but its step as a scalar "kind/key", and the
// sample strips as images.
class TensorBoardLogger : public RunLogger {
 public:
  explicit TensorBoardLogger(const std::string& logdir) : writer_(logdir) {}
  void metrics(const Json& row) override {
    std::vector<std::pair<std::string, double>> values;
    const std::string kind = row.value("kind", std::string("train"));
    for (const auto& [key, value] : row.items())
      if (key != "step" && value.is_number())
        values.emplace_back(kind + "/" + key, value.get<double>());
    writer_.add_scalars(row.at("step").get<int64_t>(), values);
  }
  void sample(const std::string& tag, int64_t step, const std::string& png) override {
    if (fs::exists(png)) writer_.add_png_file(tag, step, png);
  }

 private:
  TensorBoardWriter writer_;
};

class LineLogger : public RunLogger {
 public:
  explicit LineLogger(std::function<void(const std::string&)> print) : print_(std::move(print)) {}
  void message(const std::string& line) override { print_(line); }

 private:
  std::function<void(const std::string&)> print_;
};

// Losses of the finite steps since the last train row, and the time of every step since then.
struct Interval {
  StepStats sum;
  int64_t steps = 0;
  double data_seconds = 0, step_seconds = 0;

  void add(const StepStats& s) {
    sum.g_gan += s.g_gan, sum.g_l1 += s.g_l1, sum.d_real += s.d_real, sum.d_fake += s.d_fake;
    sum.gradient_penalty += s.gradient_penalty;
    sum.d_accuracy_real += s.d_accuracy_real, sum.d_accuracy_fake += s.d_accuracy_fake;
    ++steps;
  }
  double mean(double total) const { return total / static_cast<double>(steps); }
};

// One training run, its steps named in the order run() takes them.
class Trainer {
 public:
  Trainer(const TrainOptions& options, const TrainContext& context);
  TrainResult run();

 private:
  void check_options();
  void prepare_data();
  void scan_for_bad_files(std::shared_ptr<const Dataset>& set, const TransformOptions& transform);
  void build_models();
  void start_or_restore();
  void write_run_record();
  void share_start_across_ranks();
  void make_loaders();
  void open_loggers();
  bool run_epoch();  // false: the run stops inside it
  bool stop_requested();
  std::optional<Batches> next_step_batches();
  void guard_nonfinite(const StepStats& stats);
  void log_interval();
  double validate(int64_t epoch);
  void end_epoch();
  void stop_early();
  void save_state() const;
  bool any_rank(bool value) const;  // whether any rank says yes
  // Samples one step's batch covers on all ranks together (per micro-batch).
  int64_t global_batch() const { return options_.loader.batch_size * world_size_; }

  // Reporting (rank 0 only).
  void say(const std::string& line) const;
  void row(const Json& row) const;
  void sample(const std::string& tag, int64_t step, const std::string& png) const;
  void saved() const;  // the run directory is complete up to the current step
  void bad_file(const std::string& message);
  void on_bad(const Error& error);

  const TrainOptions& options_;
  const TrainContext& context_;
  Communicator* communicator_ = nullptr;  // with more than one rank only
  int rank_ = 0, world_size_ = 1;
  bool writer_ = true;  // rank 0 writes the run directory and reports
  RunDirectory run_;
  std::vector<std::shared_ptr<RunLogger>> loggers_;

  std::shared_ptr<const Dataset> train_set_, val_set_;
  TransformOptions val_transform_;
  std::vector<std::string> skipped_in_scan_;
  std::shared_ptr<Generator> generator_;
  std::shared_ptr<Discriminator> discriminator_;
  DiscriminatorOptions d_options_;
  std::unique_ptr<Pix2PixStep> model_;
  std::unique_ptr<LrSchedule> schedule_;
  std::unique_ptr<Checkpointer> checkpointer_;
  std::unique_ptr<Loader> loader_, val_loader_;

  RunPosition position_;  // epoch, samples of it consumed, global step, best validation L1
  int64_t epoch_step_ = 0, first_step_ = 0, last_epoch_ = 0, steps_per_epoch_ = 0;
  int64_t nonfinite_in_row_ = 0;
  double lr_ = 0;  // G's learning rate in this epoch
  Interval interval_;
  Clock::time_point run_start_;
  TrainResult result_;
};

Trainer::Trainer(const TrainOptions& options, const TrainContext& context)
    : options_(options), context_(context) {
  if (context.communicator && context.communicator->world_size() > 1) {
    communicator_ = context.communicator.get();
    rank_ = communicator_->rank();
    world_size_ = communicator_->world_size();
  }
  writer_ = rank_ == 0;
  loggers_ = context.loggers;
  run_.path = run_directory(options);
}

TrainResult Trainer::run() {
  check_options();
  prepare_data();  // a bad dataset fails before anything is written
  build_models();
  start_or_restore();
  share_start_across_ranks();
  make_loaders();
  open_loggers();
  for (const std::string& message : skipped_in_scan_) bad_file(message);
  if (options_.validate_first && val_set_ && !options_.resume)
    result_.first_val_l1 = validate(position_.epoch - 1);
  say(fmt::format("training {} on {} ({} pairs, {} batches per epoch), epochs {}..{}", run_.path,
                  options_.data, train_set_->size(), steps_per_epoch_, position_.epoch,
                  last_epoch_));
  result_.run_dir = run_.path;
  run_start_ = Clock::now();
  while (position_.epoch <= last_epoch_) {
    if (!run_epoch()) {
      stop_early();
      break;
    }
    end_epoch();
    ++position_.epoch;
    if (options_.max_seconds > 0 && any_rank(seconds_since(run_start_) >= options_.max_seconds)) {
      result_.stopped_by_time = true;  // out of time at an epoch's end: nothing left to do
      break;
    }
  }
  if (interval_.steps > 0) {  // out of time at an epoch's end: the steps since the last row
    log_interval();
    saved();
  }
  result_.steps = position_.global_step;
  result_.epoch = std::min(position_.epoch, last_epoch_);
  if (communicator_) communicator_->barrier();  // every rank returns once rank 0 has saved
  return result_;
}

void Trainer::check_options() {
  if (options_.data.empty()) throw Error::option("data", "a dataset folder is required");
  if (options_.name.empty() || options_.name.find('/') != std::string::npos)
    throw Error::option("name", "'" + options_.name + "' must be a plain folder name");
  if (options_.accumulate < 1) throw Error::option("accumulate", "must be at least 1");
  pix2pix::validate(options_.transform);
  if (options_.resume && !fs::exists(run_.state()))
    throw Error(run_.path, "nothing to resume: no checkpoints/latest_state.pt");
  if (!options_.resume && fs::exists(run_.checkpoints()) && !fs::is_empty(run_.checkpoints()))
    throw Error(run_.path,
                "a run with checkpoints exists; use `resume` to continue it or another `name`");
}

void Trainer::prepare_data() {
  DatasetOptions data_options;
  data_options.root = options_.data;
  data_options.split = "train";
  data_options.direction = options_.direction;
  data_options.input_nc = static_cast<int>(options_.generator.input_nc);
  data_options.output_nc = static_cast<int>(options_.generator.output_nc);
  train_set_ = std::make_shared<const Dataset>(data_options);
  const fs::path root(options_.data);
  if (options_.validate && (fs::exists(root / "val") || fs::exists(root / "A" / "val"))) {
    DatasetOptions val_options = data_options;
    val_options.split = "val";
    val_set_ = std::make_shared<const Dataset>(val_options);
  }
  val_transform_ = options_.transform;
  val_transform_.flip = false;
  scan_for_bad_files(train_set_, options_.transform);
  scan_for_bad_files(val_set_, val_transform_);
}

// The up-front scan (headers only): stop naming the bad files, or leave them out.
void Trainer::scan_for_bad_files(std::shared_ptr<const Dataset>& set,
                                 const TransformOptions& transform) {
  if (!set) return;
  const std::vector<BadEntry> bad = scan_entries(*set, transform);
  if (bad.empty()) return;
  const std::string folder = (fs::path(options_.data) / set->options().split).string();
  if (options_.on_bad_file == BadFilePolicy::kFail) {
    std::string more;
    if (bad.size() > 1)
      more = fmt::format(" (and {} more bad file{} in {}; `check_dataset({})` lists them)",
                         bad.size() - 1, bad.size() > 2 ? "s" : "", folder, options_.data);
    throw Error(bad.front().message + more + "; `on_bad_file` skip trains without them");
  }
  std::vector<size_t> indices;
  for (const BadEntry& entry : bad) {
    indices.push_back(entry.index);
    skipped_in_scan_.push_back(entry.message);
  }
  set = std::make_shared<const Dataset>(set->without(indices));
  if (set->size() == 0) throw Error(folder, "every file is bad (" + bad.front().message + ")");
}

// Seed, build G, build D, initialise G then D (the reference's order), then the step.
void Trainer::build_models() {
  at::manual_seed(options_.seed);
  generator_ = make_generator(options_.generator);
  d_options_ = options_.discriminator;
  d_options_.input_nc = options_.objective.unconditional_d
                            ? options_.generator.output_nc
                            : options_.generator.input_nc + options_.generator.output_nc;
  if (!options_.objective.no_gan) discriminator_ = make_discriminator(d_options_);
  init_weights(*generator_, options_.init);
  if (discriminator_) init_weights(*discriminator_, options_.init);
  if (!options_.init_g.empty())
    load_state_dict(*generator_, read_state_dict(options_.init_g), options_.init_g);
  if (!options_.init_d.empty()) {
    if (!discriminator_) throw Error::option("init_D", "there is no discriminator with `no_gan`");
    load_state_dict(*discriminator_, read_state_dict(options_.init_d), options_.init_d);
  }
  at::globalContext().setDeterministicAlgorithms(options_.deterministic, /*warn_only=*/false);
  // Initialised on the CPU (the same weights on every device), then moved where they train.
  place(*generator_, options_.compute);
  if (discriminator_) place(*discriminator_, options_.compute);
  const int64_t multiple = generator_->size_multiple();
  const TransformOptions& t = options_.transform;
  if (has_crop(t.preprocess) && (t.crop_height % multiple != 0 || t.crop_width % multiple != 0))
    throw Error::option("crop_size", to_string(CropSize{t.crop_height, t.crop_width}) +
                                         " cannot be used with " + generator_->options().net +
                                         ": sides must be multiples of " +
                                         std::to_string(multiple));
  AdamOptions adam_d = options_.adam;
  adam_d.lr = options_.adam.lr * options_.lr_d_ratio;
  model_ =
      std::make_unique<Pix2PixStep>(generator_, discriminator_, options_.objective, options_.adam,
                                    adam_d, options_.seed + 0x9e3779b97f4a7c15ULL);
  schedule_ = std::make_unique<LrSchedule>(options_.schedule);
}

// A fresh run records its options and model; a resumed one continues from its checkpoint.
void Trainer::start_or_restore() {
  if (writer_) {
    fs::create_directories(run_.checkpoints());
    fs::create_directories(run_.samples());
  }
  checkpointer_ = std::make_unique<Checkpointer>(run_, options_to_json(options_),
                                                 options_.loader.batch_size, writer_);
  position_ =
      RunPosition{options_.schedule.epoch_count, 0, 0, std::numeric_limits<double>::infinity()};
  if (options_.resume) {
    position_ = restore_checkpoint(run_, options_, *model_, *schedule_);
    say(fmt::format("resuming {} at epoch {}, step {}", run_.path, position_.epoch,
                    position_.global_step));
  } else {
    write_run_record();
    at::manual_seed(options_.seed);  // the contract: dropout's stream starts at the first step
  }
  first_step_ = position_.global_step;
}

void Trainer::write_run_record() {
  if (!writer_) return;
  detail::write_file_atomically(run_.options(), options_to_json(options_));
  detail::write_file_atomically(
      run_.model_txt(),
      fmt::format(
          "generator {}: {} parameters\ndiscriminator {}: {} parameters, receptive field {}\n"
          "cpu: {}\ndevice: {}\n",
          generator_->options().net, count_parameters(*generator_), d_options_.net,
          discriminator_ ? count_parameters(*discriminator_) : 0,
          discriminator_ ? discriminator_->receptive_field() : 0, cpu_features().describe(),
          describe(options_.compute.device)));
}

// Every rank starts from rank 0's weights (fresh, --init-G/D or resumed), and draws its own
// dropout and penalty noise (rank 0 keeps the single-process streams).
void Trainer::share_start_across_ranks() {
  if (communicator_) {
    std::vector<at::Tensor> state;
    for (const auto& [key, value] : module_state_dict(*generator_)) state.push_back(value);
    if (discriminator_)
      for (const auto& [key, value] : module_state_dict(*discriminator_)) state.push_back(value);
    communicator_->broadcast(state);
    if (rank_ > 0) {
      const uint64_t rank_seed = mix_seed(options_.seed, static_cast<uint64_t>(rank_),
                                          static_cast<uint64_t>(position_.global_step));
      at::manual_seed(rank_seed);
      model_->penalty_generator().set_current_seed(rank_seed + 0x9e3779b97f4a7c15ULL);
    }
  }
  model_->set_communicator(communicator_ ? context_.communicator : nullptr);
}

void Trainer::make_loaders() {
  LoaderOptions loader_options = options_.loader;
  loader_options.seed = options_.seed;
  loader_options.rank = rank_;
  loader_options.world_size = world_size_;
  loader_ = std::make_unique<Loader>(train_set_, options_.transform, loader_options);
  if (world_size_ > 1 && loader_->batches_per_epoch() == 0)
    throw Error(options_.data,
                fmt::format("{} training pairs do not fill one batch of {} ranks x "
                            "batch size {}",
                            train_set_->size(), world_size_, options_.loader.batch_size));
  if (val_set_ && writer_) {  // rank 0 validates; the others wait for its result
    LoaderOptions val_options = loader_options;
    val_options.shuffle = false;
    val_options.drop_last = false;
    val_options.rank = 0;
    val_options.world_size = 1;
    val_loader_ = std::make_unique<Loader>(val_set_, val_transform_, val_options);
  }
  last_epoch_ = options_.schedule.n_epochs + options_.schedule.n_epochs_decay +
                options_.schedule.epoch_count - 1;
  steps_per_epoch_ = (loader_->batches_per_epoch() + options_.accumulate - 1) / options_.accumulate;
}

// The run's own loggers (metrics.jsonl, TensorBoard) come before the caller's.
void Trainer::open_loggers() {
  if (!writer_) return;
  std::vector<std::shared_ptr<RunLogger>> own;
  own.push_back(std::make_shared<MetricsFile>(run_.metrics()));
  if (options_.tensorboard) own.push_back(std::make_shared<TensorBoardLogger>(run_.tensorboard()));
  loggers_.insert(loggers_.begin(), own.begin(), own.end());
}

bool Trainer::run_epoch() {
  lr_ = options_.adam.lr * schedule_->factor(position_.epoch);
  model_->set_learning_rates(lr_, lr_ * options_.lr_d_ratio);
  // Resuming mid-epoch: on from the first sample not trained on, whatever the world size then.
  loader_->start_epoch(position_.epoch, position_.epoch_samples);
  epoch_step_ = position_.epoch_samples / global_batch();
  while (true) {
    if (stop_requested()) return false;
    const auto t0 = Clock::now();
    const std::optional<Batches> batches = next_step_batches();
    if (!batches) return true;
    if (!options_.deterministic) adapt_threads();  // a fixed thread count keeps runs identical
    const auto t1 = Clock::now();
    const StepStats stats = model_->step(*batches);
    const auto t2 = Clock::now();
    ++position_.global_step;
    epoch_step_ += static_cast<int64_t>(batches->size());
    position_.epoch_samples += static_cast<int64_t>(batches->size()) * global_batch();
    interval_.data_seconds += std::chrono::duration<double>(t1 - t0).count();
    interval_.step_seconds += std::chrono::duration<double>(t2 - t1).count();
    if (stats.skipped_d || stats.skipped_g) {
      guard_nonfinite(stats);
      continue;
    }
    nonfinite_in_row_ = 0;
    interval_.add(stats);
    const int64_t step = position_.global_step;
    if (step % std::max<int64_t>(options_.print_every, 1) == 0) log_interval();
    if (writer_ && options_.sample_every > 0 && step % options_.sample_every == 0) {
      const std::string png = fmt::format("{}/step{:07d}.png", run_.samples(), step);
      write_sample(png, *generator_, batches->back().first, batches->back().second);
      sample("samples/train", step, png);
    }
    if (options_.save_every_steps > 0 && step % options_.save_every_steps == 0) save_state();
  }
}

// Whether the run ends before the next step: max_steps reached, a signal, or out of time (any
// rank seeing a signal or the time budget stops them all at the same step).
bool Trainer::stop_requested() {
  if (options_.max_steps > 0 && position_.global_step >= options_.max_steps) return true;
  int signal = context_.interrupt != nullptr ? context_.interrupt->load() : 0;
  if (communicator_) signal = static_cast<int>(communicator_->all_reduce_max(signal));
  if (signal != 0) {
    result_.interrupted = signal;
    say(fmt::format("signal {}: stopping at step {} and saving a checkpoint", signal,
                    position_.global_step));
    return true;
  }
  if (options_.max_seconds > 0 && any_rank(position_.global_step > first_step_ &&
                                           seconds_since(run_start_) >= options_.max_seconds)) {
    result_.stopped_by_time = true;
    return true;
  }
  return false;
}

// The micro-batches of the next step (TrainOptions::accumulate); none: the epoch is over.
std::optional<Batches> Trainer::next_step_batches() {
  Batches batches;
  int64_t failed = 0;  // batches of this step that failed to load (skipped)
  while (static_cast<int64_t>(batches.size()) < options_.accumulate) {
    auto next = next_batch(*loader_, [&](const Error& error) {
      on_bad(error);  // kFail: a resume retries this step's batches
      ++failed;
    });
    if (!next) break;
    batches.emplace_back(next->input.to(options_.compute.device),
                         next->target.to(options_.compute.device));
  }
  epoch_step_ += failed;
  position_.epoch_samples += failed * global_batch();
  if (batches.empty()) return std::nullopt;
  return batches;
}

// The non-finite guard skipped an update: log it, and give up after too many in a row.
void Trainer::guard_nonfinite(const StepStats& stats) {
  ++result_.nonfinite_steps;
  ++nonfinite_in_row_;
  const int64_t step = position_.global_step;
  row(Json{{"kind", "nonfinite"},
           {"epoch", position_.epoch},
           {"step", step},
           {"skipped_G", stats.skipped_g},
           {"skipped_D", stats.skipped_d},
           {"in_a_row", nonfinite_in_row_}});
  say(fmt::format("step {}: non-finite loss or gradient in {}; update skipped ({} in a row)", step,
                  stats.skipped_g && stats.skipped_d ? "G and D"
                  : stats.skipped_g                  ? "G"
                                                     : "D",
                  nonfinite_in_row_));
  if (options_.max_nonfinite > 0 && nonfinite_in_row_ >= options_.max_nonfinite) {
    save_state();
    throw Error(run_.path,
                fmt::format("{} steps in a row had a non-finite loss or gradient (last at step "
                            "{}); stopped. checkpoints/ holds the last finite weights (a lower "
                            "`lr` may help)",
                            nonfinite_in_row_, step),
                ErrorKind::kRuntime);
  }
}

// A train row with the means since the last one, and the progress line.
void Trainer::log_interval() {
  const Interval& i = interval_;
  const StepStats& sum = i.sum;
  Json train_row{{"kind", "train"},
                 {"epoch", position_.epoch},
                 {"step", position_.global_step},
                 {"epoch_step", epoch_step_},
                 {"G_GAN", i.mean(sum.g_gan)},
                 {"G_L1", i.mean(sum.g_l1)},
                 {"D_real", i.mean(sum.d_real)},
                 {"D_fake", i.mean(sum.d_fake)},
                 {"D_acc_real", i.mean(sum.d_accuracy_real)},
                 {"D_acc_fake", i.mean(sum.d_accuracy_fake)},
                 {"GP", i.mean(sum.gradient_penalty)},
                 {"lr", lr_},
                 {"step_s", i.mean(i.step_seconds)},
                 {"data_s", i.mean(i.data_seconds)},
                 {"bad_files", result_.bad_files}};
  if (world_size_ > 1) train_row["world_size"] = world_size_;  // the batch is world_size * batch
  row(train_row);
  const double elapsed = seconds_since(run_start_);
  const int64_t total = options_.max_steps > 0
                            ? options_.max_steps
                            : (last_epoch_ - options_.schedule.epoch_count + 1) * steps_per_epoch_;
  const double rate =
      static_cast<double>(position_.global_step - first_step_) / std::max(elapsed, 1e-9);
  const double left =
      std::min(static_cast<double>(std::max<int64_t>(0, total - position_.global_step)) /
                   std::max(rate, 1e-9),
               options_.max_seconds > 0 ? std::max(0.0, options_.max_seconds - elapsed)
                                        : std::numeric_limits<double>::infinity());
  say(fmt::format(
      "epoch {} step {}/{}  G_GAN {:.3f} G_L1 {:.4f} D_real {:.3f} D_fake {:.3f} D_acc "
      "{:.0f}%/{:.0f}%  {:.2f} it/s  ETA {}",
      position_.epoch, position_.global_step, total, i.mean(sum.g_gan), i.mean(sum.g_l1),
      i.mean(sum.d_real), i.mean(sum.d_fake), 100 * i.mean(sum.d_accuracy_real),
      100 * i.mean(sum.d_accuracy_fake), rate, format_seconds(left)));
  interval_ = Interval{};
}

// Rank 0 validates: a metrics row and the epoch's samples (of the same images); the others wait
// for its L1 (the schedule may depend on it) in the broadcast, leaving after --dist-timeout.
double Trainer::validate(int64_t epoch) {
  double val_l1 = 0;
  const int64_t step = position_.global_step;
  if (val_loader_) {
    auto on_bad_val = [&](const Error& error) { on_bad(error); };
    const auto [l1, val_psnr] = evaluate(*generator_, *val_loader_, on_bad_val);
    val_l1 = l1;
    row(Json{{"kind", "val"},
             {"epoch", epoch},
             {"step", step},
             {"val_L1", val_l1},
             {"val_PSNR", val_psnr}});
    say(fmt::format("epoch {} validation: L1 {:.4f}  PSNR {:.2f} dB", epoch, val_l1, val_psnr));
    const std::string png = fmt::format("{}/epoch{:03d}.png", run_.samples(), epoch);
    write_epoch_sample(png, *generator_, *val_loader_, 3, on_bad_val);
    sample("samples/val", step, png);
  }
  if (communicator_) {
    const at::Tensor value = at::full({1}, val_l1, at::kDouble);
    communicator_->broadcast({value});
    val_l1 = value.item<double>();
  }
  return val_l1;
}

// Validation, the schedule, checkpoints.
void Trainer::end_epoch() {
  const int64_t epoch = position_.epoch;
  // A run's last steps are logged before its last validation (a time budget that ends the run
  // at another epoch's end logs them after it).
  if (epoch == last_epoch_ && interval_.steps > 0) log_interval();
  if (val_set_) {
    const double val_l1 = validate(epoch);
    schedule_->observe(val_l1);
    result_.last_val_l1 = val_l1;
    if (val_l1 < position_.best_val_l1) {
      position_.best_val_l1 = val_l1;
      checkpointer_->save_weights("best", *model_);
    }
  }
  if (options_.save_every_epochs > 0 && epoch % options_.save_every_epochs == 0)
    checkpointer_->save_weights(std::to_string(epoch), *model_);
  position_.epoch_samples = 0;
  checkpointer_->save_state(
      *model_, *schedule_, RunPosition{epoch + 1, 0, position_.global_step, position_.best_val_l1});
  saved();
}

// Stopped inside an epoch: validated when out of time (the run ends here; the schedule is not
// stepped), and a checkpoint that continues the epoch where it left off.
void Trainer::stop_early() {
  if (interval_.steps > 0) log_interval();
  if (result_.stopped_by_time && val_set_) {
    const double val_l1 = validate(position_.epoch);
    result_.last_val_l1 = val_l1;
    if (val_l1 < position_.best_val_l1) {
      position_.best_val_l1 = val_l1;
      checkpointer_->save_weights("best", *model_);
    }
  }
  save_state();
  saved();
}

void Trainer::save_state() const { checkpointer_->save_state(*model_, *schedule_, position_); }

bool Trainer::any_rank(bool value) const {
  return communicator_ ? communicator_->all_reduce_max(value ? 1.0 : 0.0) > 0 : value;
}

void Trainer::say(const std::string& line) const {
  if (writer_)
    for (const auto& logger : loggers_) logger->message(line);
}

void Trainer::row(const Json& row) const {
  if (writer_)
    for (const auto& logger : loggers_) logger->metrics(row);
}

void Trainer::sample(const std::string& tag, int64_t step, const std::string& png) const {
  if (writer_)
    for (const auto& logger : loggers_) logger->sample(tag, step, png);
}

void Trainer::saved() const {
  if (writer_)
    for (const auto& logger : loggers_) logger->saved(position_.global_step);
}

void Trainer::bad_file(const std::string& message) {
  ++result_.bad_files;
  row(Json{{"kind", "bad_file"},
           {"epoch", position_.epoch},
           {"step", position_.global_step},
           {"error", message}});
  say("skipping a bad file: " + message);
}

// A data file that failed to load (TrainOptions::on_bad_file): skip it, or stop with a
// checkpoint from which a --resume retries the batch (or the validation).
void Trainer::on_bad(const Error& error) {
  // Another rank cannot know that this one left a batch out: the ranks would fall out of step.
  if (communicator_)
    throw Error(error.what() + fmt::format(" (rank {} of {}: with several ranks a file that "
                                           "fails while training stops the run)",
                                           rank_, world_size_),
                ErrorKind::kInput);
  if (options_.on_bad_file == BadFilePolicy::kSkip) return bad_file(error.what());
  std::string saved;
  if (position_.global_step > first_step_) {
    save_state();
    saved = fmt::format(
        " (at step {}; checkpoint saved: `resume` with `on_bad_file` skip goes on "
        "without it)",
        position_.global_step);
  }
  throw Error(
      error.what() + saved + (saved.empty() ? "; `on_bad_file` skip trains without it" : ""),
      ErrorKind::kInput);
}

}  // namespace

std::shared_ptr<RunLogger> message_logger(std::function<void(const std::string&)> print) {
  return std::make_shared<LineLogger>(std::move(print));
}

std::string run_directory(const TrainOptions& options) {
  return (fs::path(options.runs_dir) / options.name).string();
}

std::string options_to_json(const TrainOptions& options) {
  const Json values = detail::options_json(options);
  const Json defaults = detail::options_json(TrainOptions{});
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

template <>
const std::vector<std::string>& names<BadFilePolicy>() {
  static const std::vector<std::string> list = {"fail", "skip"};
  return list;
}

std::string to_string(BadFilePolicy policy) { return detail::name_of(policy); }

BadFilePolicy parse_bad_file_policy(const std::string& name) {
  return detail::parse_name<BadFilePolicy>(name, "on_bad_file", "policy");
}

TrainResult train(const TrainOptions& options, const TrainContext& context) {
  tune_allocator();
  return Trainer(options, context).run();
}

}  // namespace pix2pix
