// Any-size translation and tiling: mirror padding (against torch's reflection_pad2d, and beyond
// it), the tile layout and blending weights, the padding round trip for odd sizes, and tiled
// output against whole-image output (equal where tiles see enough context, no seam elsewhere).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "pix2pix/data/transforms.h"
#include "pix2pix/error.h"
#include "pix2pix/infer/tiling.h"
#include "pix2pix/infer/translator.h"
#include "pix2pix/io/image_io.h"
#include "test_util.h"

namespace pix2pix {
namespace {

// A small U-Net (5 downsamplings: sizes multiple of 32, receptive field well under the test
// images) with batch norm whose running statistics are not the identity, in eval mode.
std::shared_ptr<Generator> small_unet(uint64_t seed = 3) { return test::small_eval_unet(seed); }

// A real photo (facades, the A|B pair: 512 x 256) as a 1 x 3 x H x W tensor in [-1, 1].
at::Tensor facade_tensor() {
  return image_to_tensor(read_image(test::shared_dir() + "/data/facades/train/1.jpg")).unsqueeze(0);
}

// Radius (in pixels) of the region of the output that changes when one input pixel changes: the
// receptive field's half-width, measured.
int64_t measured_radius(Generator& generator, int64_t size) {
  torch::NoGradGuard no_grad;
  at::Tensor x = torch::rand({1, 3, size, size}) * 2 - 1;
  at::Tensor y = generator.forward(x);
  at::Tensor x2 = x.clone();
  x2[0][0][size / 2][size / 2] += 1.0;
  at::Tensor changed = (generator.forward(x2) - y).abs().amax({0, 1}) > 0;
  at::Tensor columns = changed.any(0).nonzero();
  at::Tensor rows = changed.any(1).nonzero();
  return std::max({size / 2 - rows.min().item<int64_t>(), rows.max().item<int64_t>() - size / 2,
                   size / 2 - columns.min().item<int64_t>(),
                   columns.max().item<int64_t>() - size / 2});
}

TEST(ReflectPad, EqualsTorchForPadsSmallerThanTheSide) {
  torch::manual_seed(0);
  at::Tensor x = torch::rand({2, 3, 7, 5});
  for (auto [top, bottom, left, right] : std::vector<std::array<int64_t, 4>>{
           {0, 0, 0, 0}, {1, 2, 3, 4}, {6, 6, 4, 4}, {0, 3, 2, 0}}) {
    at::Tensor expected = at::reflection_pad2d(x, {left, right, top, bottom});
    EXPECT_TRUE(at::equal(reflect_pad(x, top, bottom, left, right), expected))
        << top << " " << bottom << " " << left << " " << right;
  }
}

TEST(ReflectPad, RepeatsTheMirrorForLargePadsAndReplicatesOneSample) {
  at::Tensor row = torch::tensor({1.0f, 2.0f, 3.0f}).view({1, 1, 1, 3});
  at::Tensor padded = reflect_pad(row, 0, 0, 5, 6).flatten();
  // 2 1 2 3 2 | 1 2 3 | 2 1 2 3 2 1: period 2 (n - 1) = 4, mirrored about 1 and 3.
  const std::vector<float> expected = {2, 1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2, 1};
  ASSERT_EQ(padded.numel(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_EQ(padded[static_cast<int64_t>(i)].item<float>(), expected[i]) << i;
  // Two samples: alternate. One sample: replicate.
  at::Tensor two = torch::tensor({5.0f, 7.0f}).view({1, 1, 2, 1});
  EXPECT_TRUE(at::equal(reflect_pad(two, 3, 2, 0, 0).flatten(),
                        torch::tensor({7.0f, 5.0f, 7.0f, 5.0f, 7.0f, 5.0f, 7.0f})));
  at::Tensor one = torch::full({1, 2, 1, 1}, 4.0f);
  EXPECT_TRUE(at::equal(reflect_pad(one, 2, 3, 1, 4), torch::full({1, 2, 6, 6}, 4.0f)));
}

TEST(TileAxis, StartsOnTheGridCoverTheAxisAndOverlapEnough) {
  for (auto [length, tile, overlap, multiple] :
       std::vector<std::array<int64_t, 4>>{{1024, 256, 64, 32},
                                           {608, 256, 64, 32},
                                           {4096, 1024, 256, 256},
                                           {100, 40, 10, 4},
                                           {96, 64, 0, 32},
                                           {320, 64, 32, 32}}) {
    SCOPED_TRACE(std::to_string(length) + " " + std::to_string(tile) + " " +
                 std::to_string(overlap));
    const TileAxis axis = plan_tile_axis(length, tile, overlap, multiple);
    ASSERT_GE(axis.starts.size(), 2u);
    EXPECT_EQ(axis.tile, tile);
    EXPECT_EQ(axis.starts.front(), 0);
    EXPECT_EQ(axis.starts.back() + tile, length);
    for (size_t k = 0; k < axis.starts.size(); ++k) {
      EXPECT_EQ(axis.starts[k] % multiple, 0);
      if (k > 0) {
        EXPECT_GT(axis.starts[k], axis.starts[k - 1]);
        EXPECT_GE(axis.starts[k - 1] + tile - axis.starts[k], overlap);
      }
    }
    // No more tiles than needed: one fewer could not keep the overlap on the grid.
    const int64_t max_step = (tile - overlap) / multiple * multiple;
    EXPECT_LT(static_cast<int64_t>(axis.starts.size() - 2) * max_step, length - tile);
  }
  const TileAxis whole = plan_tile_axis(96, 128, 32, 32);
  EXPECT_EQ(whole.starts, std::vector<int64_t>{0});
  EXPECT_EQ(whole.tile, 96);
}

TEST(TileAxis, RejectsTilesOffTheGridAndOverlapsTooLarge) {
  auto message = [](auto&& call) {
    try {
      call();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([] { plan_tile_axis(512, 100, 0, 32); }).find("tile: 100"), std::string::npos);
  EXPECT_NE(message([] { plan_tile_axis(512, 0, 0, 32); }).find("tile: "), std::string::npos);
  EXPECT_NE(message([] { plan_tile_axis(512, 128, 97, 32); }).find("overlap: 97"),
            std::string::npos);
  EXPECT_NE(message([] { plan_tile_axis(512, 128, -1, 32); }).find("overlap: "), std::string::npos);
}

TEST(TileWeights, NeighboursSumToOneAndTileEdgesAreDropped) {
  const TileAxis axis = plan_tile_axis(320, 128, 32, 32);  // starts 0, 96, 192: overlap 32
  ASSERT_EQ(axis.starts, (std::vector<int64_t>{0, 96, 192}));
  at::Tensor sum = torch::zeros({320});
  std::vector<at::Tensor> weights;
  for (size_t k = 0; k < axis.starts.size(); ++k) {
    weights.push_back(tile_weight(axis, k));
    sum.narrow(0, axis.starts[k], axis.tile).add_(weights.back());
  }
  EXPECT_LT((sum - 1).abs().max().item<float>(), 1e-6);
  // The image border keeps full weight; the outer quarter (8 of 32) of an overlap gets none;
  // the ramp rises monotonically in between.
  EXPECT_EQ(weights[0][0].item<float>(), 1.0f);
  EXPECT_EQ(weights[2][127].item<float>(), 1.0f);
  for (int64_t x = 0; x < 8; ++x) {
    EXPECT_EQ(weights[1][x].item<float>(), 0.0f) << x;
    EXPECT_EQ(weights[1][127 - x].item<float>(), 0.0f) << x;
  }
  for (int64_t x = 8; x < 24; ++x)
    EXPECT_LT(weights[1][x].item<float>(), weights[1][x + 1].item<float>());
  EXPECT_EQ(weights[1][64].item<float>(), 1.0f);
}

// run_tiled is exact for a network that looks at one pixel at a time.
TEST(RunTiled, PointwiseNetworkGivesItsWholeImageResult) {
  torch::manual_seed(5);
  at::Tensor x = torch::rand({2, 3, 160, 224});
  auto network = [](const at::Tensor& t) { return torch::tanh(t * 3 - 1).narrow(1, 0, 2); };
  int64_t calls = 0, total = 0;
  at::Tensor tiled =
      run_tiled(x, network, 64, 16, 16, [&](int64_t done, int64_t n) { calls = done, total = n; });
  EXPECT_EQ(total, 3 * 5);
  EXPECT_EQ(calls, total);
  EXPECT_EQ(tiled.sizes(), (std::vector<int64_t>{2, 2, 160, 224}));
  EXPECT_LT((tiled - network(x)).abs().max().item<float>(), 1e-6);
}

// Odd sizes go in, the same size comes out; the padded part is the reflection torch would make.
TEST(TranslatorPadding, AnySizeRoundTrips) {
  auto generator = small_unet();
  Translator translator(generator);
  for (auto [width, height] :
       std::vector<std::pair<int, int>>{{600, 600}, {1200, 600}, {257, 513}, {31, 7}, {1, 1}}) {
    SCOPED_TRACE(std::to_string(width) + "x" + std::to_string(height));
    Image input(width, height, 3);
    for (size_t i = 0; i < input.data.size(); ++i)
      input.data[i] = static_cast<uint8_t>((i * 37 + i / 3000) % 256);
    const TranslatePlan plan = translator.plan(width, height, "x");
    EXPECT_EQ(plan.padded_width % 32, 0);
    EXPECT_EQ(plan.padded_height % 32, 0);
    EXPECT_LT(plan.padded_width - width, 32);
    EXPECT_EQ(plan.tile, 0);
    const Image output = translator.translate(input, "x");
    EXPECT_EQ(output.width, width);
    EXPECT_EQ(output.height, height);
    EXPECT_EQ(output.channels, 3);
  }
}

TEST(TranslatorPadding, EqualsReflectPaddedForwardAndLeavesMultiplesAlone) {
  auto generator = small_unet();
  Translator translator(generator);
  torch::NoGradGuard no_grad;
  // Already a multiple: exactly the plain forward pass.
  at::Tensor x = facade_tensor().narrow(3, 0, 256);
  EXPECT_TRUE(at::equal(translator.translate_tensor(x, "x"), generator->forward(x)));
  // 250 x 203: padded to 256 x 224 (3 + 3 columns, 10 + 11 rows), torch's reflection, cropped.
  at::Tensor odd = x.narrow(2, 20, 203).narrow(3, 1, 250);
  const TranslatePlan plan = translator.plan(250, 203, "odd");
  EXPECT_EQ(plan.padded_width, 256);
  EXPECT_EQ(plan.padded_height, 224);
  EXPECT_EQ(plan.pad_left, 3);
  EXPECT_EQ(plan.pad_top, 10);
  at::Tensor expected = generator->forward(at::reflection_pad2d(odd, {3, 3, 10, 11}))
                            .narrow(2, 10, 203)
                            .narrow(3, 3, 250);
  EXPECT_TRUE(at::equal(translator.translate_tensor(odd, "odd"), expected));
  // A 3-D tensor in, a 3-D tensor out.
  EXPECT_EQ(translator.translate_tensor(odd[0], "odd").sizes(),
            (std::vector<int64_t>{3, 203, 250}));
}

TEST(TranslatorPadding, WithoutPaddingOddSizesAreErrors) {
  TranslateOptions options;
  options.pad = false;
  Translator translator(small_unet(), options);
  try {
    translator.plan(100, 64, "photos/x.png");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("photos/x.png"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("multiples of 32"), std::string::npos) << e.what();
  }
}

// With overlap / 4 at least the receptive-field radius, every output pixel comes from tile pixels
// that saw all of their context: tiled equals whole.
TEST(TranslatorTiling, EqualsWholeImageWhenOverlapCoversTheReceptiveField) {
  auto generator = small_unet();
  const int64_t radius = measured_radius(*generator, 256);
  std::cout << "[ tiling ] receptive-field radius of unet/5 (measured): " << radius << " px\n";
  // The facade pair, mirrored to 1024 x 768 and cut to an odd size (padded to 1024 x 768).
  at::Tensor x = reflect_pad(facade_tensor(), 0, 512, 0, 512).narrow(2, 0, 750).narrow(3, 0, 1000);
  TranslateOptions options;
  options.tile = 384;
  options.overlap = 256;  // quarter: 64
  ASSERT_LE(radius, options.overlap / 4) << "the test's premise: overlap / 4 covers the field";
  const Translator tiled(generator, options);
  const TranslatePlan plan = tiled.plan(1000, 750, "x");
  EXPECT_EQ(plan.tiles_x, 6);
  EXPECT_EQ(plan.tiles_y, 4);
  const at::Tensor whole = Translator(generator).translate_tensor(x, "x");
  const at::Tensor result = tiled.translate_tensor(x, "x");
  const double max_diff = (result - whole).abs().max().item<double>();
  std::cout << "[ tiling ] max |tiled - whole| = " << max_diff << "\n";
  EXPECT_LT(max_diff, 1e-5);
}

// With a small overlap, tiles see less context near their inner edges: away from those edges the
// result still equals the whole image's, and where tiles meet the blend leaves no seam (no jump
// between neighbouring pixels larger than the whole image's own largest).
TEST(TranslatorTiling, SmallOverlapEqualsAwayFromBordersAndLeavesNoSeam) {
  auto generator = small_unet();
  const int64_t radius = measured_radius(*generator, 256);
  at::Tensor x = reflect_pad(facade_tensor(), 0, 256, 0, 0);  // 512 x 512
  TranslateOptions options;
  options.tile = 192;
  options.overlap = 32;
  const Translator tiled(generator, options);
  const at::Tensor whole = Translator(generator).translate_tensor(x, "x")[0];
  const at::Tensor result = tiled.translate_tensor(x, "x")[0];
  const TileAxis axis = plan_tile_axis(512, 192, 32, 32);  // the same for rows and columns
  ASSERT_EQ(axis.starts, (std::vector<int64_t>{0, 160, 320}));

  // Pixels at least `radius` from every inner tile edge.
  at::Tensor far = torch::ones({512}, torch::kBool);
  for (size_t k = 0; k < axis.starts.size(); ++k) {
    if (k > 0)
      far.narrow(0, std::max<int64_t>(0, axis.starts[k] - radius), 2 * radius).fill_(false);
    if (k + 1 < axis.starts.size())
      far.narrow(0, axis.starts[k] + 192 - radius,
                 std::min<int64_t>(2 * radius, 512 - (axis.starts[k] + 192 - radius)))
          .fill_(false);
  }
  const at::Tensor interior = far.view({-1, 1}) & far.view({1, -1});
  ASSERT_GT(interior.sum().item<int64_t>(), 0);
  const at::Tensor diff = (result - whole).abs().amax(0);
  const double interior_diff = diff.masked_select(interior).max().item<double>();
  const double overall_diff = diff.max().item<double>();
  std::cout << "[ tiling ] overlap 32: max |tiled - whole| " << interior_diff
            << " away from tile edges, " << overall_diff << " overall\n";
  EXPECT_LT(interior_diff, 1e-5);
  EXPECT_GT(overall_diff, 1e-4);  // the premise: small overlaps do change pixels near edges

  // Seams: neighbour differences (along x and y) inside the overlap bands against the whole
  // image's largest neighbour difference anywhere.
  auto step_x = [](const at::Tensor& t) {
    return (t.narrow(2, 1, t.size(2) - 1) - t.narrow(2, 0, t.size(2) - 1)).abs();
  };
  auto step_y = [](const at::Tensor& t) {
    return (t.narrow(1, 1, t.size(1) - 1) - t.narrow(1, 0, t.size(1) - 1)).abs();
  };
  const double own =
      std::max(step_x(whole).max().item<double>(), step_y(whole).max().item<double>());
  double worst = 0;
  for (size_t k = 1; k < axis.starts.size(); ++k) {
    const int64_t begin = axis.starts[k] - 1, end = axis.starts[k - 1] + 192;  // the overlap band
    worst = std::max(worst, step_x(result).narrow(2, begin, end - begin).max().item<double>());
    worst = std::max(worst, step_y(result).narrow(1, begin, end - begin).max().item<double>());
  }
  std::cout << "[ tiling ] largest neighbour step: " << worst << " in the overlap bands, " << own
            << " anywhere in the whole-image output\n";
  EXPECT_LE(worst, own);
}

// Tiles that disagree (here: each tile's output is offset by its own constant, as per-tile
// statistics would do): cut edge to edge they leave a step of the offsets' difference at every
// border; blended, the change is spread over the middle half of the overlap, no steeper than the
// raised cosine's largest slope, pi / 2 per o / 2 pixels.
TEST(RunTiled, BlendingSpreadsTileDisagreementOverTheOverlap) {
  const at::Tensor ramp_x =
      torch::linspace(-1, 1, 320).view({1, 1, 1, 320}).expand({1, 1, 320, 320});
  const at::Tensor input = (ramp_x + ramp_x.transpose(2, 3)) / 2;  // smooth: steps of 1/319
  auto offsets_network = [](std::vector<double>* offsets) {
    return [offsets](const at::Tensor& t) {
      const double offset =
          0.3 * static_cast<double>(offsets->size() % 3) - 0.25 * (offsets->size() % 2);
      offsets->push_back(offset);
      return t + offset;
    };
  };
  auto largest_step = [](const at::Tensor& t) {
    return std::max(
        (t.narrow(3, 1, t.size(3) - 1) - t.narrow(3, 0, t.size(3) - 1)).abs().max().item<double>(),
        (t.narrow(2, 1, t.size(2) - 1) - t.narrow(2, 0, t.size(2) - 1)).abs().max().item<double>());
  };
  std::vector<double> cut_offsets, blend_offsets;
  const at::Tensor cut = run_tiled(input, offsets_network(&cut_offsets), 160, 0, 32);
  const at::Tensor blend = run_tiled(input, offsets_network(&blend_offsets), 128, 64, 32);
  ASSERT_EQ(cut_offsets.size(), 4u);
  ASSERT_EQ(blend_offsets.size(), 16u);
  double largest_difference = 0;
  for (double a : blend_offsets)
    for (double b : blend_offsets)
      largest_difference = std::max(largest_difference, std::abs(a - b));
  const double own = largest_step(input);
  const double bound = own + M_PI / 2 * largest_difference / (64 / 2);
  std::cout << "[ tiling ] disagreeing tiles: largest neighbour step " << largest_step(cut)
            << " cut, " << largest_step(blend) << " blended (bound " << bound << "), input " << own
            << "\n";
  EXPECT_GT(largest_step(cut), 0.2);  // the seam a cut leaves
  EXPECT_LE(largest_step(blend), bound + 1e-6);
}

TEST(TranslatorTiling, AutomaticAboveTheBudgetAndNeverInTrainMode) {
  auto generator = small_unet();
  TranslateOptions options;
  options.max_pixels = 256 * 256;
  const TranslatePlan plan = Translator(generator, options).plan(600, 400, "x");
  EXPECT_TRUE(plan.automatic_tile);
  EXPECT_EQ(plan.tile, 256);
  EXPECT_EQ(plan.overlap, 64);
  EXPECT_EQ(plan.tiles_x, 3);
  EXPECT_EQ(plan.tiles_y, 2);
  EXPECT_EQ(Translator(generator, options).plan(256, 256, "x").tile, 0);  // within the budget
  options.max_pixels = 0;
  EXPECT_EQ(Translator(generator, options).plan(6000, 4000, "x").tile, 0);

  // Train mode: the budget does not tile (the plan says so), an explicit tile is refused.
  options.max_pixels = 256 * 256;
  options.train_mode = true;
  const TranslatePlan train_plan = Translator(generator, options).plan(600, 400, "x");
  EXPECT_EQ(train_plan.tile, 0);
  EXPECT_TRUE(train_plan.over_budget_in_train_mode);
  options.tile = 128;
  try {
    Translator(generator, options).plan(600, 400, "x");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tile: "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("eval"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace pix2pix
