// Discriminators: layouts against the PyTorch reference, receptive fields, output shapes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "pix2pix/error.h"
#include "pix2pix/models/discriminator.h"
#include "pix2pix/models/generator.h"
#include "test_util.h"

namespace pix2pix {
namespace {

DiscriminatorOptions d_options(const std::string& net, int64_t n_layers = 3,
                               Norm norm = Norm::kBatch) {
  DiscriminatorOptions options;
  options.net = net;
  options.n_layers = n_layers;
  options.norm = norm;
  return options;
}

std::vector<std::string> key_names(const torch::nn::Module& module) {
  std::vector<std::string> names;
  for (const auto& entry : module.named_modules("", true)) {
    const std::string prefix = entry.key().empty() ? "" : entry.key() + ".";
    for (const auto& p : entry.value()->named_parameters(false)) names.push_back(prefix + p.key());
    for (const auto& b : entry.value()->named_buffers(false)) names.push_back(prefix + b.key());
  }
  return names;
}

TEST(Discriminator, BasicMatchesReference) {
  auto d = make_discriminator(d_options("basic"));
  EXPECT_EQ(count_parameters(*d), 2768705);
  EXPECT_EQ(d->receptive_field(), 70);
  EXPECT_EQ(d->output_shape(256, 256), (std::vector<int64_t>{1, 30, 30}));
  auto names = key_names(*d);
  // docs/design.md, "Reference semantics": convolutions and norms at model.{0,2,3,5,6,8,9,11}.
  std::vector<std::string> expected = {"model.0.weight",      "model.0.bias",
                                       "model.2.weight",      "model.3.weight",
                                       "model.3.bias",        "model.3.running_mean",
                                       "model.3.running_var", "model.3.num_batches_tracked",
                                       "model.5.weight",      "model.6.weight",
                                       "model.6.bias",        "model.6.running_mean",
                                       "model.6.running_var", "model.6.num_batches_tracked",
                                       "model.8.weight",      "model.9.weight",
                                       "model.9.bias",        "model.9.running_mean",
                                       "model.9.running_var", "model.9.num_batches_tracked",
                                       "model.11.weight",     "model.11.bias"};
  EXPECT_EQ(names, expected);
}

TEST(Discriminator, ReceptiveFieldsByLayerCount) {
  const std::vector<int64_t> fields = {16, 34, 70, 142, 286};
  for (int64_t n = 1; n <= 5; ++n) {
    auto d = make_discriminator(d_options("n_layers", n));
    EXPECT_EQ(d->receptive_field(), fields[n - 1]) << "n_layers " << n;
  }
  EXPECT_EQ(make_discriminator(d_options("pixel"))->receptive_field(), 1);
  EXPECT_EQ(make_discriminator(d_options("image"))->receptive_field(), -1);
}

TEST(Discriminator, ReportedShapeEqualsActualShape) {
  torch::NoGradGuard no_grad;
  for (const auto& [net, n] : std::vector<std::pair<std::string, int64_t>>{
           {"basic", 3}, {"n_layers", 1}, {"n_layers", 5}, {"pixel", 3}, {"image", 3}}) {
    for (auto [h, w] :
         std::vector<std::pair<int64_t, int64_t>>{{256, 256}, {128, 320}, {96, 64}, {40, 40}}) {
      SCOPED_TRACE(net + " " + std::to_string(n) + " " + std::to_string(h) + "x" +
                   std::to_string(w));
      auto options = d_options(net, n);
      options.ndf = 8;
      auto d = make_discriminator(options);
      d->eval();
      auto input = torch::randn({2, 6, h, w});
      std::vector<int64_t> shape;
      try {
        shape = d->output_shape(h, w);
      } catch (const Error&) {
        // Too small for this network: the network itself must refuse it too.
        EXPECT_ANY_THROW(d->forward(input));
        continue;
      }
      auto logits = d->forward(input);
      EXPECT_EQ(logits.sizes().vec(), (std::vector<int64_t>{2, shape[0], shape[1], shape[2]}));
    }
  }
}

TEST(Discriminator, NLayerLayoutMatchesReference) {
  if (!test::have_python_torch()) GTEST_SKIP() << "needs /usr/bin/python3 with torch";
  auto spec = [](int64_t n, Norm norm) {
    return "patchgan:" + std::to_string(n) + ":" + to_string(norm);
  };
  std::string specs;
  for (int64_t n = 1; n <= 5; ++n)
    for (Norm norm : {Norm::kBatch, Norm::kInstance}) specs += " " + spec(n, norm);
  auto result = test::run_python(test::source_dir() + "/tests/reference/dump_arch.py " +
                                 test::shared_dir() + specs);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto reference = nlohmann::json::parse(result.output);
  for (int64_t n = 1; n <= 5; ++n) {
    for (Norm norm : {Norm::kBatch, Norm::kInstance}) {
      SCOPED_TRACE(spec(n, norm));
      auto d = make_discriminator(d_options("n_layers", n, norm));
      std::vector<std::string> reference_names;
      for (const auto& k : reference[spec(n, norm)]["keys"]) reference_names.push_back(k[0]);
      EXPECT_EQ(key_names(*d), reference_names);
      EXPECT_EQ(count_parameters(*d), reference[spec(n, norm)]["params"].get<int64_t>());
    }
  }
}

TEST(Discriminator, PixelLayout) {
  auto d = make_discriminator(d_options("pixel"));
  // conv 6->64 (+bias), conv 64->128, batch norm 128, conv 128->1 (no bias with batch norm).
  EXPECT_EQ(count_parameters(*d), 6 * 64 + 64 + 64 * 128 + 2 * 128 + 128);
  auto names = key_names(*d);
  EXPECT_EQ(names.front(), "net.0.weight");
  EXPECT_EQ(names.back(), "net.5.weight");
}

TEST(Discriminator, RejectsBadOptions) {
  EXPECT_THROW(make_discriminator(d_options("n_layers", 0)), Error);
  EXPECT_THROW(make_discriminator(d_options("n_layers", 6)), Error);
  EXPECT_THROW(make_discriminator(d_options("global")), Error);
  auto d = make_discriminator(d_options("n_layers", 5));
  EXPECT_THROW(d->output_shape(16, 16), Error);
}

}  // namespace
}  // namespace pix2pix
