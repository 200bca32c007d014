// Results of a trained run on a dataset split (`pix2pix test`): every image translated with a
// checkpoint of the run, written with the reference's names next to a results page and the
// per-image metrics:
//
//   runs/NAME/results/<split>_<epoch>/
//     images/<stem>_real_A.png  <stem>_fake_B.png  <stem>_real_B.png
//     index.html    a table: input, output, target and L1 / PSNR / SSIM per row
//     metrics.csv   name,l1,psnr,ssim (metrics.h conventions)
//     summary.json  means, the mode (train / eval), the checkpoint, the data and preprocessing
//
// The network and the data options come from the run's options.json (read_run_options).
// To add a column to the page: ImageMetrics (metrics.h), then write_index_html in results.cpp.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "pix2pix/eval/metrics.h"
#include "pix2pix/io/image_io.h"
#include "pix2pix/train/trainer.h"

namespace pix2pix {

/// The options a run was trained with, from RUN/options.json (written by train). Keys missing
/// from the file keep TrainOptions' defaults; runs_dir and name are set from `run_dir`. Throws
/// pix2pix::Error naming the file for a missing or unreadable file or a bad value.
TrainOptions read_run_options(const std::string& run_dir);

/// The test-time transform for a run trained with `train`: the same preprocess mode and filter,
/// no flip, and a load size equal to the crop (the reference's test options: load_size =
/// crop_size), so resize_and_crop resizes to the crop size and nothing is cut off;
/// crop positions are centred (see test_transform_params).
TransformOptions test_transform(const TransformOptions& train);

/// Centred crop, no flip: the deterministic params test_transform's crops use.
TransformParams test_transform_params(const TransformOptions& options, int width, int height);

/// What `pix2pix test` does.
struct TestOptions {
  std::string run;               ///< the run folder (runs/NAME)
  std::string data;              ///< dataset root; empty: the run's (options.json "data")
  std::string split = "test";    ///< dataset split
  std::string epoch = "latest";  ///< latest | best | N (checkpoints/<epoch>_net_G.pth)
  /// The paper's and the reference's test-time behaviour (true): batch statistics of each image
  /// and dropout on. false: eval mode (running statistics, no dropout).
  bool train_mode = true;
  int64_t num_test = 0;  ///< translate at most this many images, in name order (0: all)
  uint64_t seed = 0;     ///< torch's generator before the first image (dropout in train mode)
  PngWriteOptions png;   ///< image encoding
  c10::Device device = c10::Device(c10::kCPU);  ///< where the generator runs (device.h)
};

/// One translated image.
struct TestImage {
  std::string name;  ///< the dataset entry's stem
  ImageMetrics metrics;
};

/// What run_test wrote.
struct TestResult {
  std::string results_dir;  ///< RUN/results/<split>_<epoch>
  std::string checkpoint;   ///< the generator weights used
  bool train_mode = true;   ///< the mode used
  std::vector<TestImage> images;
  ImageMetrics mean;  ///< means over images
};

/// Translates the split with the run's generator and writes the results folder (see the top of
/// this file). Every file is written atomically (temporary file + rename); files of an earlier
/// test into the same folder are replaced, other files are left alone. `log` receives progress
/// lines. Throws pix2pix::Error for a missing run, checkpoint, dataset or split.
TestResult run_test(const TestOptions& options,
                    const std::function<void(const std::string&)>& log = nullptr);

}  // namespace pix2pix
