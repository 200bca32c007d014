// Training: the pix2pix step (a discriminator update, then a generator update with the
// discriminator frozen) over a generator, a discriminator and their Adam optimisers. The step
// uses the reference's operations in the reference's order, so that from the same weights,
// inputs and seed it produces the reference's weights bit for bit. The epoch loop, run
// directory and checkpoints build on it.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pix2pix/compute.h"
#include "pix2pix/dataset.h"
#include "pix2pix/discriminator.h"
#include "pix2pix/distributed.h"
#include "pix2pix/generator.h"
#include "pix2pix/init.h"
#include "pix2pix/loader.h"
#include "pix2pix/losses.h"
#include "pix2pix/optim.h"
#include "pix2pix/transforms.h"

namespace pix2pix {

/// The objective. Defaults are the paper's: vanilla GAN + 100 * L1, conditional D.
struct ObjectiveOptions {
  GanMode gan_mode = GanMode::kVanilla;
  double lambda_l1 = 100.0;  ///< weight of the L1 term in G's loss
  /// Weight of the WGAN-GP gradient penalty in D's loss (0: none). Usable with any GAN mode.
  double lambda_gp = 0.0;
  bool no_gan = false;           ///< ablation: L1 only, no discriminator updates
  bool unconditional_d = false;  ///< ablation: D sees only the (real or fake) output, not the input
};

/// Losses and D accuracies of one step (host doubles, for logging).
struct StepStats {
  double g_gan = 0, g_l1 = 0;                       ///< G's GAN term and its (unweighted) L1
  double d_real = 0, d_fake = 0;                    ///< D's loss on real and on fake pairs
  double gradient_penalty = 0;                      ///< weighted, 0 when off
  double d_accuracy_real = 0, d_accuracy_fake = 0;  ///< fractions of patches classified right
  /// The non-finite guard: a loss or gradient was inf or NaN, so that network's update was
  /// skipped (weights, optimiser moments and batch-norm statistics are as before the step).
  bool skipped_d = false, skipped_g = false;
};

/// A generator, a discriminator, their optimisers and the objective: one training step at a time.
class Pix2PixStep {
 public:
  /// `discriminator` may be null when objective.no_gan. The optimisers' learning rates come from
  /// `adam_g` and `adam_d` (the trainer sets D's to lr * lr_d_ratio).
  Pix2PixStep(std::shared_ptr<Generator> generator, std::shared_ptr<Discriminator> discriminator,
              ObjectiveOptions objective, AdamOptions adam_g, AdamOptions adam_d,
              uint64_t penalty_seed = 0);

  /// One step on a batch: real_a is G's input, real_b its target (N x C x H x W in [-1, 1]).
  /// Models are put in train mode. A network whose loss or gradients are not finite is not
  /// updated (StepStats::skipped_d / skipped_g). Draws random numbers only through dropout (torch's default
  /// generator) and the gradient penalty's own generator.
  StepStats step(const at::Tensor& real_a, const at::Tensor& real_b);
  /// One step accumulated over micro-batches (gradient accumulation): the gradients, and so the
  /// update, are those of the mean loss over them, as one batch of all of them would give when
  /// no layer mixes samples (instance norm or none; batch norm sees each micro-batch alone).
  /// Every micro-batch's generator graph is kept until the generator update.
  StepStats step(const std::vector<std::pair<at::Tensor, at::Tensor>>& batches);

  void set_learning_rates(double lr_g, double lr_d);
  /// Data parallelism: every rank runs the same steps on its own batch; before each optimiser
  /// step the gradients are averaged over the ranks (bucketed all-reduce) and so are the step's
  /// losses, so that every rank takes the same update and the same non-finite decision.
  /// Batch-norm buffers are then copied from rank 0 (as PyTorch's DDP does); SyncBatchNorm2d
  /// layers get the communicator. Null or one rank: a single process.
  void set_communicator(std::shared_ptr<Communicator> communicator);
  Generator& generator() { return *generator_; }
  Discriminator* discriminator() { return discriminator_.get(); }
  Adam& optimizer_g() { return optimizer_g_; }
  Adam* optimizer_d() { return optimizer_d_.get(); }
  const ObjectiveOptions& objective() const { return objective_; }
  /// The gradient penalty's random generator (its state goes into checkpoints).
  at::Generator& penalty_generator();

 private:
  at::Tensor discriminate(const at::Tensor& real_a, const at::Tensor& image);

  std::shared_ptr<Generator> generator_;
  std::shared_ptr<Discriminator> discriminator_;
  ObjectiveOptions objective_;
  Adam optimizer_g_;
  std::unique_ptr<Adam> optimizer_d_;
  at::Generator penalty_generator_;
  std::shared_ptr<Communicator> communicator_;
};

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
/// "fail" | "skip".
std::string to_string(BadFilePolicy policy);
/// The inverse of to_string(BadFilePolicy); throws pix2pix::Error("--on-bad-file: ...").
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
  /// When set and non-zero (a signal number, set by a signal handler), the run stops after the
  /// current step, saves a checkpoint and returns with TrainResult::interrupted set to it.
  const std::atomic<int>* interrupt = nullptr;
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
  /// Rewrite RUN/report.html after every epoch and when the run stops (report.h).
  bool report = true;
  /// Bad data files (train and val splits): stop (default) or leave them out. May change on
  /// --resume.
  BadFilePolicy on_bad_file = BadFilePolicy::kFail;
  /// Data-parallel training (Communicator::connect; null or one rank: this process alone).
  /// Every rank calls train() with the same options; rank r trains on its shard of each epoch
  /// (LoaderOptions::rank), so batch_size is per rank and the effective batch is world_size
  /// times it. Rank 0's initial weights are broadcast; only rank 0 validates (the others wait
  /// for its result), logs and writes the run directory. A checkpoint resumes with any number
  /// of ranks. Not an option of the run (not in options.json); world_size goes into metrics rows.
  std::shared_ptr<Communicator> communicator;
};

/// Writes `options` as JSON: {"options": {...}, "non_defaults": [keys differing from defaults]}.
std::string options_to_json(const TrainOptions& options);

/// What a finished (or stopped) run did.
struct TrainResult {
  std::string run_dir;
  int64_t steps = 0;        ///< steps done in total, including those before a resume
  int64_t epoch = 0;        ///< the last epoch worked on
  double last_val_l1 = -1;  ///< mean validation L1 of the last validation (-1: none)
  int64_t nonfinite_steps = 0;  ///< steps whose update was skipped by the non-finite guard
  int interrupted = 0;          ///< the signal number that stopped the run early (0: none)
  double first_val_l1 = -1;  ///< validation L1 before the first step (validate_first; -1: none)
  bool stopped_by_time = false;  ///< max_seconds ended the run
  /// Files or batches left out by BadFilePolicy::kSkip (in the scan and while training) in this
  /// invocation.
  int64_t bad_files = 0;
};

/// Trains as `options` says, writing the run directory (options.json, model.txt, metrics.jsonl,
/// checkpoints/, samples/, tb/, report.html). `log` receives one line per progress report.
/// Throws pix2pix::Error for bad data or options, and refuses to touch an existing run without
/// `resume`.
TrainResult train(const TrainOptions& options,
                  const std::function<void(const std::string&)>& log = nullptr);

}  // namespace pix2pix
