// `pix2pix serve`: loads a generator as `translate` does and answers HTTP requests with it
// (pix2pix/tools/server.h) until SIGINT or SIGTERM, then finishes the requests in flight and
// exits 0. Prints "serving http://HOST:PORT/" once listening (the port chosen for --port 0),
// then one line per request.
#include <fcntl.h>
#include <fmt/core.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "commands.h"
#include "network_flags.h"
#include "pix2pix/error.h"
#include "pix2pix/names.h"
#include "pix2pix/tools/server.h"

namespace pix2pix::cli {

namespace {

struct ServeFlags {
  GeneratorFlags generator;
  ComputeFlags compute;
  std::string weights;
  std::string epoch;
  bool eval_mode = false;
  bool train_mode = false;
  int64_t tile = 0;
  int64_t overlap = -1;
  int64_t tile_pixels = TranslateOptions{}.max_pixels;
  double max_body_mb = 32;
  ServeOptions serve;
};

// SIGINT/SIGTERM handlers may only do async-signal-safe work: they write a byte to this pipe and
// a thread reading it stops the server.
int stop_pipe[2] = {-1, -1};

void on_stop_signal(int) {
  const int saved = errno;
  const char byte = 1;
  [[maybe_unused]] const ssize_t n = write(stop_pipe[1], &byte, 1);
  errno = saved;
}

void print_line(const std::string& line) {
  fmt::print("{}\n", line);
  std::fflush(stdout);  // a pipe or log file sees each request when it happens
}

int run_serve(ServeFlags flags, const CLI::App& app) {
  if (flags.max_body_mb <= 0)
    throw Error::option("max_body_mb", fmt::format("{} must be positive", flags.max_body_mb));
  const LoadedGenerator loaded = load_generator(flags.weights, flags.epoch, flags.generator, app);
  const ComputeOptions compute = flags.compute.apply_to(*loaded.generator);
  TranslateOptions translate;
  translate.train_mode = flags.train_mode;
  translate.tile = flags.tile;
  translate.overlap = flags.overlap;
  translate.max_pixels = flags.tile_pixels;
  ServeOptions& options = flags.serve;
  options.max_body_bytes = static_cast<int64_t>(flags.max_body_mb * (1 << 20));
  options.precision = to_string(compute.precision);
  if (loaded.source.has_direction)
    options.direction = names<Direction>()[static_cast<size_t>(loaded.source.direction)];
  options.log = print_line;
  TranslationServer server(loaded.generator, translate, options);

  if (pipe2(stop_pipe, O_CLOEXEC) != 0)
    throw Error("serve", std::string("pipe: ") + std::strerror(errno), ErrorKind::kRuntime);
  const int port = server.bind();
  // httplib's stop() does nothing until serve() has started listening: a signal that comes
  // before would be lost, so the stopper repeats it until serve() has returned.
  std::atomic<bool> served{false};
  std::thread stopper([&server, &served] {
    char byte;
    while (read(stop_pipe[0], &byte, 1) < 0 && errno == EINTR) {
    }
    while (!served) {
      server.stop();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  struct sigaction action = {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  print_line(fmt::format("weights: {}", loaded.source.weights));
  print_line(fmt::format("mode: {}, precision: {}, workers: {}, queue: {}",
                         flags.train_mode ? "train" : "eval", options.precision, options.workers,
                         options.max_queue));
  print_line(fmt::format("serving http://{}:{}/", options.host, port));
  server.serve();
  served = true;
  on_stop_signal(0);  // serve() returned on its own: release the stopper thread
  stopper.join();
  print_line("stopped");
  return 0;
}

}  // namespace

Command add_serve_command(CLI::App& parent) {
  auto flags = std::make_shared<ServeFlags>();
  CLI::App* app = parent.add_subcommand(
      "serve",
      "Serve a generator over HTTP: POST /v1/translate (an image in, the PNG translate writes "
      "out), GET /v1/model, GET /healthz, and a page at / (docs/serve.md)");
  add_weights_flags(app, flags->weights, flags->epoch);
  flags->generator.add_to(app);
  flags->compute.add_to(app);
  auto* eval_flag =
      app->add_flag("--eval", flags->eval_mode,
                    "eval mode: running batch-norm statistics, no dropout (the default)");
  app->add_flag("--train-mode", flags->train_mode,
                "the paper's test-time behaviour: batch statistics and dropout on (one "
                "translation at a time, never tiles)")
      ->excludes(eval_flag);
  app->add_option("--host", flags->serve.host, "address to listen on (0.0.0.0: every interface)")
      ->capture_default_str();
  app->add_option("--port", flags->serve.port, "TCP port; 0: any free port (printed)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app->add_option("--workers", flags->serve.workers,
                  "translations at once (each uses every --threads thread)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app->add_option("--max-queue", flags->serve.max_queue,
                  "translations that may wait for a worker; beyond: 503 with Retry-After")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  app->add_option("--max-pixels", flags->serve.max_pixels,
                  "largest image accepted (width x height); larger: 413")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--max-body-mb", flags->max_body_mb, "largest request body in MiB; larger: 413")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--tile", flags->tile,
                  "translate in overlapping tiles of this side (as translate --tile); 0: only "
                  "above --tile-pixels")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("--overlap", flags->overlap,
                  "overlap of neighbouring tiles in pixels (default: tile / 4)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--tile-pixels", flags->tile_pixels,
                  "tile automatically when a (padded) image has more pixels than this (what "
                  "translate calls --max-pixels); 0: never")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  return {app, [flags, app] { return run_serve(*flags, *app); }};
}

}  // namespace pix2pix::cli
