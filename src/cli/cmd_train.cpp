// `pix2pix train`: maps flags onto TrainOptions and runs the trainer. Defaults are the paper's.
#include <fmt/core.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>

#include "commands.h"
#include "config_file.h"
#include "messages.h"
#include "network_flags.h"
#include "option_flags.h"
#include "pix2pix/error.h"
#include "pix2pix/names.h"
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
  // Options named on the command line, parsed in run_train; defaults from TrainOptions'.
  std::string direction = to_string(options.direction);
  std::string gan_mode = to_string(options.objective.gan_mode);
  std::string lr_policy = to_string(options.schedule.policy);
  std::string on_bad_file = to_string(options.on_bad_file);
  std::string preprocess = to_string(options.transform.preprocess);
  std::string crop_size =
      to_string(CropSize{options.transform.crop_height, options.transform.crop_width});
  std::string resize_filter = to_string(options.transform.filter);
  std::string dist_backend = "gloo";  ///< data parallelism (WORLD_SIZE > 1): gloo or nccl
  double dist_timeout = 300;          ///< seconds a rank waits for the others before failing
};

// The first SIGINT/SIGTERM asks the trainer to stop after the current step and save; a second
// one exits at once, writing nothing.
std::atomic<int> g_signal{0};

extern "C" void on_stop_signal(int signal) {
  if (g_signal.exchange(signal) != 0) _exit(128 + signal);
}

int run_train(TrainFlags& flags, const CLI::App& app) {
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
  context.loggers.push_back(message_logger([&](const std::string& text) {
    const std::string line = with_flags(text, app);  // e.g. a skipped file's reason
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
  // Flag names and help come from the options table (option_flags.h); bounds and names here.
  add_option_flag(app, "data", o.data)->required();
  add_option_flag(app, "name", o.name)->capture_default_str();
  add_option_flag(app, "runs_dir", o.runs_dir)->capture_default_str();
  add_option_flag(app, "direction", flags->direction)
      ->check(CLI::IsMember(names<Direction>()))
      ->capture_default_str();
  flags->generator.add_to(app);
  flags->discriminator.add_to(app);
  flags->init.add_to(app);
  add_option_flag(app, "gan_mode", flags->gan_mode)
      ->check(CLI::IsMember(names<GanMode>()))
      ->capture_default_str();
  add_option_flag(app, "lambda_l1", o.objective.lambda_l1)
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_option_flag(app, "lambda_gp", o.objective.lambda_gp)
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_switch(app, "no_gan", o.objective.no_gan);
  add_switch(app, "unconditional_d", o.objective.unconditional_d);
  add_option_flag(app, "lr", o.adam.lr)->check(CLI::PositiveNumber)->capture_default_str();
  add_option_flag(app, "beta1", o.adam.beta1)
      ->check(CLI::Range(0.0, 0.999999))
      ->capture_default_str();
  add_option_flag(app, "beta2", o.adam.beta2)
      ->check(CLI::Range(0.0, 0.999999))
      ->capture_default_str();
  add_option_flag(app, "lr_d_ratio", o.lr_d_ratio)
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  add_option_flag(app, "lr_policy", flags->lr_policy)
      ->check(CLI::IsMember(names<LrPolicy>()))
      ->capture_default_str();
  add_option_flag(app, "n_epochs", o.schedule.n_epochs)
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_option_flag(app, "n_epochs_decay", o.schedule.n_epochs_decay)
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_option_flag(app, "lr_decay_epochs", o.schedule.lr_decay_epochs)
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  add_option_flag(app, "preprocess", flags->preprocess)->capture_default_str();
  add_option_flag(app, "load_size", o.transform.load_size)
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  add_option_flag(app, "crop_size", flags->crop_size)->capture_default_str();
  add_option_flag(app, "resize_filter", flags->resize_filter)->capture_default_str();
  add_switch(app, "flip", o.transform.flip);
  add_option_flag(app, "batch_size", o.loader.batch_size)
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  add_option_flag(app, "accumulate", o.accumulate)
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  add_option_flag(app, "workers", o.loader.workers)
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  add_switch(app, "cache", o.loader.cache);
  add_option_flag(app, "seed", o.seed)->capture_default_str();
  add_option_flag(app, "max_steps", o.max_steps)
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_option_flag(app, "print_every", o.print_every)
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  add_option_flag(app, "sample_every", o.sample_every)
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_option_flag(app, "save_every_steps", o.save_every_steps)
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_option_flag(app, "save_every_epochs", o.save_every_epochs)
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_switch(app, "validate", o.validate);
  // Not an option of the run (options.json): how this process starts it.
  app->add_flag("--resume", o.resume, "continue the run NAME from its latest checkpoint");
  add_option_flag(app, "init_G", o.init_g)->check(CLI::ExistingFile);
  add_option_flag(app, "init_D", o.init_d)->check(CLI::ExistingFile);
  add_option_flag(app, "on_bad_file", flags->on_bad_file)
      ->check(CLI::IsMember(names<BadFilePolicy>()))
      ->capture_default_str();
  add_option_flag(app, "max_nonfinite", o.max_nonfinite)
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_option_flag(app, "max_seconds", o.max_seconds)
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_switch(app, "validate_first", o.validate_first);
  add_switch(app, "tensorboard", o.tensorboard);
  add_switch(app, "report", o.report);
  add_switch(app, "deterministic", o.deterministic);
  // The process group, not the run: a resume may use another.
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
  return {app, [flags, app] { return run_train(*flags, *app); }};
}

}  // namespace pix2pix::cli
