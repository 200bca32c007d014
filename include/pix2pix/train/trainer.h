// Training runs: the epoch loop over the pix2pix step (step.h), the run directory it writes
// (options.json, model.txt, metrics.jsonl, checkpoints/, samples/, tb/) and how a run reports
// as it goes (RunLogger).
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "pix2pix/data/dataset.h"
#include "pix2pix/data/loader.h"
#include "pix2pix/data/transforms.h"
#include "pix2pix/models/compute.h"
#include "pix2pix/models/generator.h"
#include "pix2pix/models/init.h"
#include "pix2pix/names.h"
#include "pix2pix/train/distributed.h"
#include "pix2pix/train/optim.h"
#include "pix2pix/train/run_directory.h"
#include "pix2pix/train/step.h"

namespace pix2pix {

/// What training does with a data file it cannot use (train --on-bad-file).
enum class BadFilePolicy {
  /// Stop: before training, when the up-front scan (scan_entries) finds bad files, naming them;
  /// during training, at the batch that fails, after saving a checkpoint (a --resume with
  /// kSkip goes on past it).
  kFail,
  /// Leave the file out: logged, a "bad_file" row in metrics.jsonl, counted in TrainResult and
  /// in the "bad_files" column of the train rows. A batch that fails is skipped whole.
  kSkip,
};
/// The bad-file policies' names (names.h).
template <>
const std::vector<std::string>& names<BadFilePolicy>();
/// "fail" | "skip".
std::string to_string(BadFilePolicy policy);
/// The inverse of to_string(BadFilePolicy); throws pix2pix::Error::option("on_bad_file", ...).
BadFilePolicy parse_bad_file_policy(const std::string& name);

/// Everything a training run needs. Defaults are the paper's (unet_256, basic D, batch norm,
/// vanilla GAN + 100 * L1, Adam 2e-4 / 0.5, 100 + 100 epochs with linear decay, batch 1).
struct TrainOptions {
  std::string data;                 ///< dataset root (aligned or paired folders)
  std::string name = "experiment";  ///< run name: the run lives in runs_dir/name
  std::string runs_dir = "runs";
  Direction direction = Direction::kAtoB;
  GeneratorOptions generator;
  DiscriminatorOptions discriminator;  ///< input_nc is derived (conditional or not)
  InitOptions init;
  ObjectiveOptions objective;
  AdamOptions adam;         ///< G's optimiser; D's is the same with lr * lr_d_ratio
  double lr_d_ratio = 1.0;  ///< D's learning rate relative to G's (the paper: 1)
  ScheduleOptions schedule;
  TransformOptions transform;
  LoaderOptions loader;           ///< batch size, workers, cache; its seed is set from `seed`
  uint64_t seed = 0;              ///< initialisation, data order, jitter and dropout
  int64_t max_steps = 0;          ///< stop after this many steps in total (0: run every epoch)
  int64_t print_every = 100;      ///< steps between progress lines and metrics.jsonl rows
  int64_t sample_every = 400;     ///< steps between sample strips (0: only at epoch ends)
  int64_t save_every_steps = 0;   ///< steps between latest_* checkpoints (0: epoch ends)
  int64_t save_every_epochs = 5;  ///< epochs between <epoch>_net_*.pth snapshots (0: never)
  bool validate = true;           ///< evaluate L1/PSNR on the `val` split after each epoch
  bool resume = false;            ///< continue from the run's latest checkpoint
  /// Start from these PyTorch state_dicts instead of fresh weights (fine-tuning a published
  /// model, or the reference's weights); empty: initialise.
  std::string init_g, init_d;
  /// Deterministic algorithms only (libtorch raises on an op without one). With the same thread
  /// count and seed, two runs then write identical checkpoints.
  bool deterministic = false;
  /// Batches whose gradients are summed (as their mean) before each optimiser step; a step is
  /// one optimiser update, so an epoch has ceil(batches / accumulate) steps.
  int64_t accumulate = 1;
  /// Steps in a row whose loss or gradients were not finite (their updates skipped) after which
  /// the run stops with an error, its last (finite) state saved. 0: never stop.
  int64_t max_nonfinite = 20;
  /// How G and D compute: precision (fp32 | bf16 convolutions with fp32 master weights) and the
  /// transposed-convolution path (default auto: within float rounding of the reference; native:
  /// the reference's numbers bit for bit). May change on --resume.
  ComputeOptions compute;
  /// Time budget: stop cleanly after the step during which this many seconds of training have
  /// passed, validate, sample and save (0: no limit). Counted from the first step.
  double max_seconds = 0;
  /// Also validate before the first step: a `val` row at step 0 (the untrained model's L1 and
  /// PSNR) and samples/epoch<first - 1>.png, so curves and samples start from the beginning.
  bool validate_first = false;
  /// Write TensorBoard event files to RUN/tb/: the metrics.jsonl series as scalars and the
  /// sample strips as images (tensorboard.h).
  bool tensorboard = true;
  /// Recorded for the caller that renders RUN/report.html (the CLI adds report_logger()):
  /// train() itself writes no report.
  bool report = true;
  /// Bad data files (train and val splits): stop (default) or leave them out. May change on
  /// --resume.
  BadFilePolicy on_bad_file = BadFilePolicy::kFail;
};

/// What a run reports as it trains, on rank 0 only. train() writes metrics.jsonl (and, with
/// TrainOptions::tensorboard, RUN/tb/) through loggers of its own; callers add theirs (the CLI:
/// the console and report.html). Every method has an empty default.
class RunLogger {
 public:
  virtual ~RunLogger() = default;
  /// A line for people: the run starting or resuming, progress with losses and ETA,
  /// validation results, skipped files and updates, stops.
  virtual void message(const std::string& /*line*/) {}
  /// A row of RUN/metrics.jsonl: "kind" (train, val, nonfinite, bad_file), "epoch", "step" and
  /// the kind's fields (docs/design.md, "Run directory").
  virtual void metrics(const nlohmann::json& /*row*/) {}
  /// A sample strip (input | output | target) written to `png`; `tag` is "samples/train" or
  /// "samples/val".
  virtual void sample(const std::string& /*tag*/, int64_t /*step*/, const std::string& /*png*/) {}
  /// The run directory is complete up to `step`: an epoch ended or the run stopped, its
  /// checkpoint written. The moment to rewrite what derives from it (report.html).
  virtual void saved(int64_t /*step*/) {}
};

/// A RunLogger handing each message to `print` (e.g. the console).
std::shared_ptr<RunLogger> message_logger(std::function<void(const std::string&)> print);

/// What a run needs besides its options: handles that are not part of its record.
struct TrainContext {
  /// When set and non-zero (a signal number, set by a signal handler), the run stops after the
  /// current step, saves a checkpoint and returns with TrainResult::interrupted set to it.
  const std::atomic<int>* interrupt = nullptr;
  /// Data-parallel training (Communicator::connect; null or one rank: this process alone).
  /// Every rank calls train() with the same options; rank r trains on its shard of each epoch
  /// (LoaderOptions::rank), so batch_size is per rank and the effective batch is world_size
  /// times it. Rank 0's initial weights are broadcast; only rank 0 validates (the others wait
  /// for its result), logs and writes the run directory. A checkpoint resumes with any number
  /// of ranks. Not an option of the run (not in options.json); world_size goes into metrics rows.
  std::shared_ptr<Communicator> communicator;
  /// Loggers the run reports to besides its own (RunLogger).
  std::vector<std::shared_ptr<RunLogger>> loggers;
};

/// RUN: runs_dir/name.
std::string run_directory(const TrainOptions& options);

/// Writes `options` as JSON: {"options": {...}, "non_defaults": [keys differing from defaults]}.
std::string options_to_json(const TrainOptions& options);

/// What a finished (or stopped) run did.
struct TrainResult {
  std::string run_dir;
  int64_t steps = 0;             ///< steps done in total, including those before a resume
  int64_t epoch = 0;             ///< the last epoch worked on
  double last_val_l1 = -1;       ///< mean validation L1 of the last validation (-1: none)
  int64_t nonfinite_steps = 0;   ///< steps whose update was skipped by the non-finite guard
  int interrupted = 0;           ///< the signal number that stopped the run early (0: none)
  double first_val_l1 = -1;      ///< validation L1 before the first step (validate_first; -1: none)
  bool stopped_by_time = false;  ///< max_seconds ended the run
  /// Files or batches left out by BadFilePolicy::kSkip (in the scan and while training) in this
  /// invocation.
  int64_t bad_files = 0;
};

/// Trains as `options` says, writing the run directory (options.json, model.txt, metrics.jsonl,
/// checkpoints/, samples/, tb/) and reporting to `context.loggers`. Throws pix2pix::Error for bad
/// data or options, and refuses to touch an existing run without `resume`.
TrainResult train(const TrainOptions& options, const TrainContext& context = {});

}  // namespace pix2pix
