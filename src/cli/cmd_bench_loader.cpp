// `pix2pix bench loader`: reads a dataset through the Loader for a few seconds (epoch after
// epoch, with the training transforms) and reports samples (input + target pairs) per second, as
// a table or one JSON object.
//
// Measured on the 2-core development machine, facades train (400 JPEGs of 512x256), --direction
// BtoA, resize_and_crop 286 -> 256 bicubic with flips, batch 1, 5-10 s, machine otherwise quiet:
//   workers 1: ~210 images/s (cache: ~205 in 5 s, where the first epoch still decodes)
//   workers 2: 330-390 images/s; with --cache 340-460
// A sample costs ~5 ms of CPU: ~3 ms the four ATen antialiased resize passes, ~1 ms JPEG decoding.
// While other processes kept the cores busy (load ~3) the same runs gave 120-240 images/s.
#include <ATen/Parallel.h>
#include <fmt/core.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "pix2pix/data/dataset.h"
#include "pix2pix/data/loader.h"
#include "pix2pix/data/transforms.h"
#include "pix2pix/error.h"
#include "pix2pix/names.h"

namespace pix2pix::cli {

namespace {

struct BenchLoaderFlags {
  std::string data;
  std::string split = "train";
  std::string direction = "AtoB";
  std::string preprocess = "resize_and_crop";
  int load_size = 286;
  std::string crop_size = "256";
  std::string resize_filter = "bicubic";
  bool no_flip = false;
  LoaderOptions loader;
  double seconds = 5.0;
  bool json = false;
};

int run_bench_loader(const BenchLoaderFlags& flags) {
  DatasetOptions dataset_options;
  dataset_options.root = flags.data;
  dataset_options.split = flags.split;
  dataset_options.direction = parse_direction(flags.direction);
  auto dataset = std::make_shared<const Dataset>(dataset_options);

  TransformOptions transform;
  transform.preprocess = parse_preprocess(flags.preprocess);
  transform.load_size = flags.load_size;
  const CropSize crop = parse_crop_size(flags.crop_size);
  transform.crop_height = crop.height;
  transform.crop_width = crop.width;
  transform.filter = parse_resize_filter(flags.resize_filter);
  transform.flip = !flags.no_flip;

  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  Loader loader(dataset, transform, flags.loader);
  int64_t images = 0, batches = 0, epoch = 0;
  double first_batch_s = -1, elapsed = 0;
  loader.start_epoch(epoch);
  while ((elapsed = std::chrono::duration<double>(Clock::now() - start).count()) < flags.seconds) {
    std::optional<Batch> batch = loader.next();
    if (!batch) {
      loader.start_epoch(++epoch);
      continue;
    }
    if (first_batch_s < 0)
      first_batch_s = std::chrono::duration<double>(Clock::now() - start).count();
    images += batch->input.size(0);
    ++batches;
  }
  const double images_per_s = elapsed > 0 ? static_cast<double>(images) / elapsed : 0.0;

  if (flags.json) {
    nlohmann::json out = {
        {"data", flags.data},
        {"split", flags.split},
        {"samples", dataset->size()},
        {"direction", flags.direction},
        {"preprocess", to_string(transform.preprocess)},
        {"load_size", transform.load_size},
        {"crop_size", to_string(crop)},
        {"resize_filter", to_string(transform.filter)},
        {"flip", transform.flip},
        {"workers", flags.loader.workers},
        {"batch_size", flags.loader.batch_size},
        {"prefetch", flags.loader.prefetch},
        {"cache", flags.loader.cache},
        {"intra_op_threads", at::get_num_threads()},
        {"seconds", elapsed},
        {"images", images},
        {"batches", batches},
        {"epochs_started", epoch + 1},
        {"first_batch_s", first_batch_s},
        {"images_per_s", images_per_s},
    };
    fmt::print("{}\n", out.dump());
    return 0;
  }
  fmt::print("loader: {} ({}, {} samples), {}, {} load {} crop {}, {}, {}\n", flags.data,
             flags.split, dataset->size(), flags.direction, to_string(transform.preprocess),
             transform.load_size, to_string(crop), to_string(transform.filter),
             transform.flip ? "flip" : "no flip");
  fmt::print("{:>7} {:>5} {:>5} {:>8} {:>7} {:>9} {:>12}\n", "workers", "batch", "cache", "seconds",
             "images", "images/s", "first batch");
  fmt::print("{:>7} {:>5} {:>5} {:>8.2f} {:>7} {:>9.1f} {:>10.3f} s\n", flags.loader.workers,
             flags.loader.batch_size, flags.loader.cache ? "yes" : "no", elapsed, images,
             images_per_s, first_batch_s);
  return 0;
}

}  // namespace

Command add_bench_loader_command(CLI::App& bench) {
  auto flags = std::make_shared<BenchLoaderFlags>();
  CLI::App* app = bench.add_subcommand(
      "loader", "Read a dataset through the training loader for a while; report images/s");
  app->add_option("--data", flags->data, "dataset folder")
      ->required()
      ->check(CLI::ExistingDirectory);
  app->add_option("--split", flags->split, "sub-folder to read")->capture_default_str();
  app->add_option("--direction", flags->direction, "AtoB or BtoA")
      ->check(CLI::IsMember(names<Direction>()))
      ->capture_default_str();
  app->add_option("--workers", flags->loader.workers, "loader threads (0: on the caller)")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  app->add_option("--seconds", flags->seconds, "how long to read")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--batch-size", flags->loader.batch_size, "samples per batch")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  app->add_option("--prefetch", flags->loader.prefetch, "batches prepared ahead")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  app->add_option("--preprocess", flags->preprocess,
                  "resize_and_crop | crop | scale_width | scale_width_and_crop | none")
      ->capture_default_str();
  app->add_option("--load-size", flags->load_size, "resize target (side or width)")
      ->capture_default_str();
  app->add_option("--crop-size", flags->crop_size, "crop: N or HxW (height x width)")
      ->capture_default_str();
  app->add_option("--resize-filter", flags->resize_filter, "bicubic | bilinear | nearest")
      ->capture_default_str();
  app->add_flag("--no-flip", flags->no_flip, "no random horizontal flips");
  app->add_flag("--cache", flags->loader.cache, "keep decoded images in memory");
  app->add_option("--seed", flags->loader.seed, "shuffle and augmentation seed")
      ->capture_default_str();
  app->add_flag("--json", flags->json, "print one JSON object instead of a table");
  return {app, [flags] { return run_bench_loader(*flags); }};
}

}  // namespace pix2pix::cli
