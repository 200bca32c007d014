// Image quality metrics: per-image L1, PSNR and SSIM of a translation against its target, the
// distribution distances FID and KID on feature vectors (InceptionV3 features: inception.h), and
// the evaluation of two folders of images (`pix2pix eval`).
//
// Conventions (what the numbers mean, so they can be compared with other tools):
// - Images are compared as 8-bit samples (16-bit and float images are converted first).
// - L1 is the mean absolute difference on the networks' [-1, 1] scale, i.e. the 8-bit difference
//   divided by 127.5: the quantity the generator's L1 loss and the trainer's validation L1 measure.
//   (Divide by 2 for the [0, 1] scale, multiply by 127.5 for 8-bit levels.)
// - PSNR is 10 log10(255^2 / MSE) over all samples (scikit-image's peak_signal_noise_ratio with
//   data_range=255); identical images give +infinity.
// - SSIM is Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5, truncated at 3.5 sigma),
//   K1 = 0.01, K2 = 0.03, L = 255, population (not sample) covariances, the mean over the pixels
//   whose window lies inside the image, averaged over channels: scikit-image's
//   structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
//   data_range=255, channel_axis=-1).
// - sharpness is the mean Sobel gradient magnitude of the output over the target's (1: as sharp
//   as real; below 1: blurrier), checkerboard the output's share of spectral energy on the Nyquist
//   lines (where a stride-2 transposed convolution's uneven overlap puts its pattern) minus the
//   target's, colour_error the mean RGB distance of 16x16 block means in 8-bit levels
//   (docs/cli.md, "test and eval").
// - FID is the Frechet distance between Gaussians fitted to two feature sets (mean, unbiased
//   covariance), with trace(sqrtm(S1 S2)) computed from symmetric eigendecompositions (see
//   frechet_distance). KID is the unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3,
//   averaged over random subsets (see KidOptions).
//
// To add a per-image metric: a field in ImageMetrics, its computation in compare_images, its
// column in metrics_csv and its key in the JSON writers (metrics.cpp and results.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pix2pix/io/image_io.h"

namespace pix2pix {

/// Per-image quality of a translation (fake) against its target (real).
struct ImageMetrics {
  double l1 = 0;            ///< mean |real - fake| on the [-1, 1] scale (8-bit difference / 127.5)
  double psnr = 0;          ///< dB, peak 255; +infinity for identical images
  double ssim = 0;          ///< mean SSIM, channels averaged (1: identical)
  double sharpness = 1;     ///< fake's mean gradient / real's (below 1: blurrier); NaN: flat real
  double checkerboard = 0;  ///< fake's Nyquist-line energy share minus real's (0: none added)
  double colour_error = 0;  ///< mean distance of 16x16 block-mean colours, 8-bit levels
};

/// The image as 8-bit samples: 8-bit as is, 16-bit rounded (x / 257), float clamped to [0, 1]
/// and rounded (x * 255).
Image to_8bit(const Image& image);

/// Mean absolute difference of two 8-bit images of the same size and channels, / 127.5.
double l1_distance(const Image& real, const Image& fake);
/// PSNR of two 8-bit images of the same size and channels (peak 255).
double psnr(const Image& real, const Image& fake);
/// Mean SSIM of two 8-bit images of the same size and channels, both sides at least 11 pixels.
double ssim(const Image& real, const Image& fake);

/// Mean Sobel gradient magnitude (3x3, per channel, over the pixels with a full neighbourhood) of
/// `fake` divided by that of `real`; both 8-bit, same size and channels, sides >= 3. 1 when both
/// are flat; NaN when only the target is.
double sharpness(const Image& real, const Image& fake);

/// The share of an 8-bit image's spectral energy (per channel, mean removed, 2-D DFT of the even
/// crop) on the Nyquist lines: the row and column of bins at half the sampling frequency, where a
/// period-2 pattern lands (a 2x2 checkerboard at their crossing, stripes on either line).
double checkerboard_share(const Image& image);

/// checkerboard_share(fake) - checkerboard_share(real): the period-2 energy the output adds.
double checkerboard(const Image& real, const Image& fake);

/// Side of the blocks whose mean colours colour_error compares.
inline constexpr int kColourBlock = 16;

/// Mean over 16x16 blocks (partial at the right and bottom edges) of the Euclidean distance
/// between real's and fake's block-mean colours, in 8-bit levels: colour fidelity without
/// texture.
double colour_error(const Image& real, const Image& fake);

/// L1, PSNR, SSIM, sharpness, checkerboard and colour error of `fake` against `real`. Both are
/// converted to 8 bits; a gray image is compared with an RGB one after conversion to RGB, and alpha
/// channels are dropped. Throws pix2pix::Error naming `name` when the sizes differ or a side is
/// below 11 pixels (SSIM's window).
ImageMetrics compare_images(const Image& real, const Image& fake, const std::string& name);

/// Means of each metric over `metrics` (a default ImageMetrics when empty; PSNR is +infinity if
/// any image's is; sharpness over the images where it is defined, NaN when none).
ImageMetrics mean_metrics(const std::vector<ImageMetrics>& metrics);

// ---- distribution distances on feature vectors ------------------------------------------------

/// Mean and covariance of N feature vectors (N x D), in double.
struct FeatureStatistics {
  at::Tensor mean;        ///< D
  at::Tensor covariance;  ///< D x D, unbiased (divided by N - 1), as numpy.cov(rowvar=False)
  int64_t count = 0;      ///< N
};

/// Statistics of an N x D feature matrix (any floating type); N >= 2.
FeatureStatistics feature_statistics(const at::Tensor& features);

/// Frechet distance |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2)). The trace of the
/// square root is the sum of the square roots of the eigenvalues of S1 S2, which equal those of
/// the symmetric positive semi-definite sqrt(S1) S2 sqrt(S1); both factorisations use LAPACK's
/// symmetric eigensolver (torch.linalg.eigh) in double, with round-off negatives clamped to 0.
/// This is the trace of scipy.linalg.sqrtm's principal square root, without the complex parts
/// and the eps-offset retry that pytorch-fid needs when S1 S2 is singular (fewer images than
/// feature dimensions).
double frechet_distance(const FeatureStatistics& a, const FeatureStatistics& b);

/// Unbiased MMD^2 between two feature sets (N x D and M x D, N, M >= 2) with the cubic
/// polynomial kernel k(x, y) = (x.y / D + 1)^3: mean of k over distinct pairs within each set,
/// minus twice the mean over the cross pairs.
double mmd2_polynomial(const at::Tensor& x, const at::Tensor& y);

/// How KID draws its subsets. Defaults are those of torch-fidelity / clean-fid's KID (Binkowski
/// et al. 2018): 100 subsets of 1000 features from each set, drawn without replacement.
struct KidOptions {
  int64_t subsets = 100;       ///< number of subsets
  int64_t subset_size = 1000;  ///< features per subset and set; capped at the smaller set's size
  uint64_t seed = 0;           ///< the subset draws (SplitMix64, the same on every platform)
};

/// KID: the unbiased MMD^2 (mmd2_polynomial) averaged over random subsets.
struct KidResult {
  double mean = 0;          ///< the KID value
  double std = 0;           ///< standard deviation over the subsets (population)
  int64_t subsets = 0;      ///< subsets used
  int64_t subset_size = 0;  ///< features per subset actually used
};

/// KID between feature sets x (N x D) and y (M x D); each subset is a fresh random choice of
/// min(subset_size, N, M) distinct rows of x and of y. Throws pix2pix::Error for fewer than 2
/// rows or mismatched dimensions.
KidResult kernel_inception_distance(const at::Tensor& x, const at::Tensor& y,
                                    const KidOptions& options = {});

// ---- folder evaluation (`pix2pix eval`) -------------------------------------------------------

/// One real/fake pair found in the folders.
struct EvalPair {
  std::string name;       ///< the common stem (without _real_B / _fake_B)
  std::string real_path;  ///< the target image
  std::string fake_path;  ///< the translation
};

/// Pairs the image files of two folders (see EvalOptions). Throws pix2pix::Error naming the
/// folder or files for a missing folder, no pairs, files without a partner, or a stem that
/// occurs twice.
std::vector<EvalPair> pair_eval_images(const std::string& real_dir, const std::string& fake_dir);

/// What `pix2pix eval` compares.
struct EvalOptions {
  /// Target images. Files are paired by stem; when a folder holds the reference's result names
  /// (`<stem>_real_B.*` in real_dir, `<stem>_fake_B.*` in fake_dir), only those are used and
  /// paired by <stem>. One folder holding both kinds can be given as both (or fake_dir empty).
  std::string real_dir;
  std::string fake_dir;  ///< translations; empty: real_dir (results folders hold both)
  /// pytorch-fid's InceptionV3 weights (pt_inception-2015-12-05-6726825d.pth); empty: no FID/KID.
  std::string fid_weights;
  int64_t batch_size = 8;  ///< images per InceptionV3 forward
  KidOptions kid;          ///< KID's subsets
};

/// One evaluated pair.
struct EvalImage {
  EvalPair pair;
  ImageMetrics metrics;
};

/// The result of evaluate_folders.
struct EvalReport {
  std::vector<EvalImage> images;  ///< by name
  ImageMetrics mean;              ///< means over the images
  bool fid_available = false;     ///< FID and KID were computed
  std::string fid_unavailable;    ///< why not, when !fid_available
  double fid = 0;                 ///< FID (fake vs real features), when available
  KidResult kid;                  ///< KID, when available
};

/// Pairs the folders, reads every pair (checking sizes), computes the per-image metrics and,
/// with fid_weights, FID and KID between the real and the fake set. `progress` (optional) gets
/// a line per stage. Throws pix2pix::Error naming files and folders.
EvalReport evaluate_folders(const EvalOptions& options,
                            const std::function<void(const std::string&)>& progress = nullptr);

/// One image's (or the means') metrics as JSON: keys l1, psnr (null when infinite), ssim,
/// sharpness (null when undefined), checkerboard, colour_error.
nlohmann::json metrics_json(const ImageMetrics& m);

/// The per-image CSV's header line (without the newline).
inline constexpr const char* kMetricsCsvHeader =
    "name,l1,psnr,ssim,sharpness,checkerboard,colour_error";

/// Per-image CSV: kMetricsCsvHeader and one row per image (6 decimals, colour_error 4; "inf" for
/// an infinite PSNR, "nan" for an undefined sharpness).
std::string metrics_csv(const std::vector<std::string>& names,
                        const std::vector<ImageMetrics>& metrics);
/// The report as JSON: {"images": [{name, real, fake, and metrics_json's keys}...], "mean": {...},
/// "fid": value or null, "kid": {mean, std, subsets, subset_size} or null,
/// "fid_unavailable": reason or null}. Infinite PSNRs are written as null.
std::string eval_report_json(const EvalReport& report);

/// Writes `text` to `path` atomically (a temporary file in the same folder, flushed and fsynced,
/// then renamed over `path`).
/// Throws pix2pix::Error(path, reason, ErrorKind::kRuntime) when the write fails.
void write_text_file(const std::string& path, const std::string& text);

}  // namespace pix2pix
