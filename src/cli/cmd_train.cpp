// `pix2pix train`: maps flags onto TrainOptions and runs the trainer. Defaults are the paper's.
#include <fmt/core.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>

#include "commands.h"
#include "config_file.h"
#include "network_flags.h"
#include "pix2pix/error.h"
#include "pix2pix/tools/report.h"
#include "pix2pix/train/distributed.h"
#include "pix2pix/train/trainer.h"

namespace pix2pix::cli {

namespace {

struct TrainFlags {
  TrainOptions options;
  GeneratorFlags generator;
  DiscriminatorFlags discriminator;
  InitFlags init;
  ComputeFlags compute;
  std::string direction = "AtoB", gan_mode = "vanilla", lr_policy = "linear";
  std::string on_bad_file = "fail";
  std::string dist_backend = "gloo";  ///< data parallelism (WORLD_SIZE > 1): gloo or nccl
  double dist_timeout = 300;          ///< seconds a rank waits for the others before failing
  std::string preprocess = "resize_and_crop", crop_size = "256", resize_filter = "bicubic";
  bool no_flip = false, no_validate = false;
};

// The first SIGINT/SIGTERM asks the trainer to stop after the current step and save; a second
// one exits at once, writing nothing.
std::atomic<int> g_signal{0};

extern "C" void on_stop_signal(int signal) {
  if (g_signal.exchange(signal) != 0) _exit(128 + signal);
}

int run_train(TrainFlags& flags) {
  TrainOptions options = flags.options;
  TrainContext context;
  context.interrupt = &g_signal;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  options.generator = flags.generator.resolve();
  options.discriminator = flags.discriminator.resolve(options.generator);
  options.init = flags.init.resolve();
  options.compute = flags.compute.resolve();
  options.direction = parse_direction(flags.direction);
  options.objective.gan_mode = parse_gan_mode(flags.gan_mode);
  options.schedule.policy = parse_lr_policy(flags.lr_policy);
  options.on_bad_file = parse_bad_file_policy(flags.on_bad_file);
  options.transform.preprocess = parse_preprocess(flags.preprocess);
  const CropSize crop = parse_crop_size(flags.crop_size);
  options.transform.crop_height = crop.height;
  options.transform.crop_width = crop.width;
  options.transform.filter = parse_resize_filter(flags.resize_filter);
  options.transform.flip = !flags.no_flip;
  options.validate = !flags.no_validate;
  // Data parallel when started by torchrun, SLURM or `pix2pix launch` (WORLD_SIZE > 1).
  DistributedOptions distributed = distributed_from_environment();
  distributed.backend = flags.dist_backend;
  distributed.timeout_seconds = flags.dist_timeout;
  if (distributed.backend == "nccl" || distributed.world_size > 1) {
    // A rank that dies closes its sockets; writing to them must fail the collective with an
    // error (EPIPE), not kill this process with SIGPIPE.
    signal(SIGPIPE, SIG_IGN);
    context.communicator = Communicator::connect(distributed);
  }
  const bool rank_zero = distributed.rank == 0;
  if (distributed.world_size > 1 && rank_zero)
    fmt::print("data parallel: {} ranks ({}), batch {} per rank\n", distributed.world_size,
               distributed.backend, options.loader.batch_size);
  // On a terminal, progress rewrites one live line; other messages (and pipes, logs) get plain
  // lines.
  const bool live = isatty(fileno(stdout)) != 0;
  bool line_open = false;
  context.loggers.push_back(message_logger([&](const std::string& line) {
    const bool progress = line.rfind("epoch ", 0) == 0 && line.find(" step ") != std::string::npos;
    if (live && progress) {
      fmt::print("\r\033[K{}", line);
      line_open = true;
    } else {
      fmt::print("{}{}\n", line_open ? "\n" : "", line);
      line_open = false;
    }
    std::fflush(stdout);
  }));
  if (options.report) context.loggers.push_back(report_logger(run_directory(options)));
  const TrainResult result = train(options, context);
  if (line_open) fmt::print("\n");
  if (result.interrupted != 0 && !rank_zero) return 128 + result.interrupted;
  if (!rank_zero) return 0;  // rank 0 reports for all
  if (result.interrupted != 0) {
    fmt::print(
        "stopped by signal {} at step {}; continue with --resume (checkpoints in {}/checkpoints)\n",
        result.interrupted, result.steps, result.run_dir);
    return 128 + result.interrupted;
  }
  fmt::print("done: {} steps, epoch {}; checkpoints in {}/checkpoints\n", result.steps,
             result.epoch, result.run_dir);
  return 0;
}

}  // namespace

Command add_train_command(CLI::App& parent) {
  auto flags = std::make_shared<TrainFlags>();
  TrainOptions& o = flags->options;
  CLI::App* app = parent.add_subcommand("train", "Train a pix2pix model (defaults: the paper's)");
  app->add_option("--data", o.data, "dataset folder (aligned A|B images or A/ B/ folders)")
      ->required();
  app->add_option("--name", o.name, "run name: the run lives in RUNS_DIR/NAME")
      ->capture_default_str();
  app->add_option("--runs-dir", o.runs_dir, "folder of runs")->capture_default_str();
  app->add_option("--direction", flags->direction, "AtoB or BtoA (facades labels->photos: BtoA)")
      ->check(CLI::IsMember({"AtoB", "BtoA"}))
      ->capture_default_str();
  flags->generator.add_to(app);
  flags->discriminator.add_to(app);
  flags->init.add_to(app);
  app->add_option("--gan-mode", flags->gan_mode, "GAN loss: vanilla, lsgan or wgangp")
      ->check(CLI::IsMember({"vanilla", "lsgan", "wgangp"}))
      ->capture_default_str();
  app->add_option("--lambda-l1", o.objective.lambda_l1, "weight of the L1 loss")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("--lambda-gp", o.objective.lambda_gp, "weight of the gradient penalty (0: off)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_flag("--no-gan", o.objective.no_gan, "ablation: L1 only");
  app->add_flag("--unconditional-d", o.objective.unconditional_d,
                "ablation: D sees only the output image");
  app->add_option("--lr", o.adam.lr, "Adam learning rate")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--beta1", o.adam.beta1, "Adam beta1")
      ->check(CLI::Range(0.0, 0.999999))
      ->capture_default_str();
  app->add_option("--beta2", o.adam.beta2, "Adam beta2")
      ->check(CLI::Range(0.0, 0.999999))
      ->capture_default_str();
  app->add_option("--lr-d-ratio", o.lr_d_ratio, "D's learning rate / G's")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--lr-policy", flags->lr_policy, "linear, step, cosine or plateau")
      ->check(CLI::IsMember({"linear", "step", "cosine", "plateau"}))
      ->capture_default_str();
  app->add_option("--n-epochs", o.schedule.n_epochs, "epochs at the initial learning rate")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("--n-epochs-decay", o.schedule.n_epochs_decay, "epochs of linear decay")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("--lr-decay-epochs", o.schedule.lr_decay_epochs, "step policy: epochs per x0.1")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--preprocess", flags->preprocess,
                  "resize_and_crop, crop, scale_width, scale_width_and_crop or none")
      ->capture_default_str();
  app->add_option("--load-size", o.transform.load_size, "resize target")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--crop-size", flags->crop_size, "crop: N or HxW")->capture_default_str();
  app->add_option("--resize-filter", flags->resize_filter, "bicubic, bilinear or nearest")
      ->capture_default_str();
  app->add_flag("--no-flip", flags->no_flip, "no random horizontal flips");
  app->add_option("--batch-size", o.loader.batch_size, "images per step")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app->add_option("--accumulate", o.accumulate,
                  "batches whose gradients are summed before each optimiser step")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app->add_option("--workers", o.loader.workers, "data loading threads")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app->add_flag("--cache", o.loader.cache, "keep decoded images in memory");
  app->add_option("--seed", o.seed, "seed of initialisation, data order, jitter, dropout")
      ->capture_default_str();
  app->add_option("--max-steps", o.max_steps, "stop after N steps in total (0: all epochs)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("--print-every", o.print_every, "steps between progress lines")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--sample-every", o.sample_every, "steps between sample images (0: never)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("--save-every-steps", o.save_every_steps, "steps between latest checkpoints")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("--save-every-epochs", o.save_every_epochs, "epochs between snapshots")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_flag("--no-validate", flags->no_validate, "skip validation on the val split");
  app->add_flag("--resume", o.resume, "continue the run NAME from its latest checkpoint");
  app->add_option("--init-G", o.init_g, "start G from this PyTorch state_dict (.pth)")
      ->check(CLI::ExistingFile);
  app->add_option("--init-D", o.init_d, "start D from this PyTorch state_dict (.pth)")
      ->check(CLI::ExistingFile);
  app->add_option("--on-bad-file", flags->on_bad_file,
                  "a data file that cannot be used: fail (stop and name it; found before training "
                  "by a header scan, or later with a checkpoint saved) or skip (leave it out, "
                  "logged and counted in metrics.jsonl)")
      ->check(CLI::IsMember({"fail", "skip"}))
      ->capture_default_str();
  app->add_option("--max-nonfinite", o.max_nonfinite,
                  "stop after N steps in a row with a non-finite loss or gradient (0: never)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("--max-seconds", o.max_seconds,
                  "time budget: validate, save and stop after N seconds of training (0: none)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_flag("--validate-first", o.validate_first,
                "also validate the untrained model (a val row at step 0)");
  app->add_flag("--no-tensorboard{false}", o.tensorboard,
                "do not write TensorBoard event files to RUNS_DIR/NAME/tb");
  app->add_flag("--no-report{false}", o.report,
                "do not rewrite RUNS_DIR/NAME/report.html after every epoch");
  app->add_flag("--deterministic", o.deterministic,
                "deterministic algorithms only: same seed and --threads give identical runs");
  app->add_option("--dist-backend", flags->dist_backend,
                  "data-parallel backend when WORLD_SIZE > 1 (pix2pix launch, torchrun, SLURM): "
                  "gloo (CPU) or nccl (CUDA builds only)")
      ->check(CLI::IsMember({"gloo", "nccl"}))
      ->capture_default_str();
  app->add_option("--dist-timeout", flags->dist_timeout,
                  "seconds a rank waits for the others (rendezvous, gradients, rank 0's "
                  "validation) before failing")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  add_config_option(app);
  flags->compute.add_to(app);
  return {app, [flags] { return run_train(*flags); }};
}

}  // namespace pix2pix::cli
