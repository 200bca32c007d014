// Generators: parameter counts, state_dict layout against the PyTorch reference, shapes,
// options validation.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "pix2pix/error.h"
#include "pix2pix/models/generator.h"
#include "test_util.h"

namespace pix2pix {
namespace {

using test::have_python_torch;
using test::run_python;
using test::shared_dir;

GeneratorOptions generator_options(const std::string& net, Norm norm = Norm::kBatch) {
  GeneratorOptions options;
  options.net = net;
  options.norm = norm;
  return options;
}

// The module's parameters and buffers as [name, shape] in registration order, as state_dict().
nlohmann::json layout(const torch::nn::Module& module) {
  nlohmann::json keys = nlohmann::json::array();
  for (const auto& entry : module.named_modules("", /*include_self=*/true)) {
    const std::string prefix = entry.key().empty() ? "" : entry.key() + ".";
    for (const auto& p : entry.value()->named_parameters(false))
      keys.push_back({prefix + p.key(), p.value().sizes().vec()});
    for (const auto& b : entry.value()->named_buffers(false))
      keys.push_back({prefix + b.key(), b.value().sizes().vec()});
  }
  return keys;
}

TEST(Generator, ParameterCountsMatchReference) {
  EXPECT_EQ(count_parameters(*make_generator(generator_options("unet_256"))), 54413955);
  EXPECT_EQ(count_parameters(*make_generator(generator_options("unet_128"))), 41828995);
  // resnet_9blocks with instance norm is the CycleGAN generator (11.378 M in the reference's
  // printout); with batch norm the convolutions lose their biases and the norms gain 2C.
  EXPECT_EQ(count_parameters(*make_generator(generator_options("resnet_9blocks", Norm::kInstance))),
            11378179);
  EXPECT_EQ(count_parameters(*make_generator(generator_options("resnet_9blocks"))), 11383427);
  EXPECT_EQ(count_parameters(*make_generator(generator_options("resnet_6blocks"))), 7841411);
}

TEST(Generator, UNetStateDictLayoutMatchesReference) {
  if (!have_python_torch()) GTEST_SKIP() << "needs /usr/bin/python3 with torch";
  struct Case {
    std::string net;
    int64_t num_downs;
    Norm norm;
  };
  const std::vector<Case> cases = {{"unet_256", 8, Norm::kBatch},
                                   {"unet_128", 7, Norm::kBatch},
                                   {"unet_256", 8, Norm::kInstance},
                                   {"unet_128", 7, Norm::kInstance},
                                   {"unet_256", 8, Norm::kNone}};
  auto spec = [](const Case& c) {
    return "unet:" + std::to_string(c.num_downs) + ":" + to_string(c.norm);
  };
  std::string specs;
  for (const Case& c : cases) specs += " " + spec(c);
  auto result =
      run_python(test::source_dir() + "/tests/reference/dump_arch.py " + shared_dir() + specs);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto reference = nlohmann::json::parse(result.output);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.net + " " + to_string(c.norm));
    auto generator = make_generator(generator_options(c.net, c.norm));
    EXPECT_EQ(layout(*generator), reference[spec(c)]["keys"]);
    EXPECT_EQ(count_parameters(*generator), reference[spec(c)]["params"].get<int64_t>());
  }
}

TEST(Generator, UNetKeysFollowReferenceNesting) {
  auto generator = make_generator(generator_options("unet_256"));
  auto keys = layout(*generator);
  EXPECT_EQ(keys.size(), 82u);  // docs/design.md, "Reference semantics": 82 keys, batch norm
  EXPECT_EQ(keys[0][0], "model.model.0.weight");
  EXPECT_EQ(keys[1][0], "model.model.1.model.1.weight");
  EXPECT_EQ(keys.back()[0], "model.model.3.bias");
}

TEST(Generator, ResNetKeysFollowReference) {
  auto keys = layout(*make_generator(generator_options("resnet_9blocks")));
  auto has = [&](const std::string& name, std::vector<int64_t> shape) {
    for (const auto& k : keys)
      if (k[0] == name) return k[1].get<std::vector<int64_t>>() == shape;
    return false;
  };
  EXPECT_TRUE(has("model.1.weight", {64, 3, 7, 7}));
  EXPECT_TRUE(has("model.10.conv_block.1.weight", {256, 256, 3, 3}));
  EXPECT_TRUE(has("model.10.conv_block.6.weight", {256, 256, 3, 3}));  // after the dropout at 4
  EXPECT_TRUE(has("model.19.weight", {256, 128, 3, 3}));               // the first ConvTranspose
  EXPECT_TRUE(has("model.26.weight", {3, 64, 7, 7}));
  EXPECT_TRUE(has("model.26.bias", {3}));
  GeneratorOptions no_dropout = generator_options("resnet_6blocks");
  no_dropout.dropout = false;
  auto keys6 = layout(*make_generator(no_dropout));
  bool found = false;
  for (const auto& k : keys6) found |= k[0] == "model.10.conv_block.5.weight";
  EXPECT_TRUE(found);
}

TEST(Generator, OutputShapesAndRange) {
  torch::NoGradGuard no_grad;
  for (const std::string net : {"unet_256", "unet_128", "resnet_6blocks"}) {
    SCOPED_TRACE(net);
    auto options = generator_options(net);
    options.ngf = 8;
    options.output_nc = 1;
    auto generator = make_generator(options);
    generator->eval();
    const int64_t side = generator->size_multiple() * 2;
    auto y = generator->forward(torch::randn({2, 3, side, side / 2 * 3}));
    EXPECT_EQ(y.sizes().vec(), (std::vector<int64_t>{2, 1, side, side / 2 * 3}));
    EXPECT_LE(y.abs().max().item<float>(), 1.0f);
  }
}

TEST(Generator, ResizeConvUpsamplingKeepsShapes) {
  torch::NoGradGuard no_grad;
  for (auto mode : {Upsampling::kResizeNearest, Upsampling::kResizeBilinear}) {
    auto options = generator_options("unet_128");
    options.ngf = 8;
    options.upsampling = mode;
    auto generator = make_generator(options);
    generator->eval();
    auto y = generator->forward(torch::randn({1, 3, 128, 256}));
    EXPECT_EQ(y.sizes().vec(), (std::vector<int64_t>{1, 3, 128, 256}));
    // No transposed convolutions remain.
    for (const auto& m : generator->modules())
      EXPECT_EQ(m->as<torch::nn::ConvTranspose2dImpl>(), nullptr);
  }
}

TEST(Generator, DepthFromNameOrExplicit) {
  auto options = generator_options("unet");
  options.num_downs = 6;
  auto generator = make_generator(options);
  EXPECT_EQ(generator->options().num_downs, 6);
  EXPECT_EQ(generator->size_multiple(), 64);
  EXPECT_EQ(make_generator(generator_options("unet_512"))->options().num_downs, 9);
  options.net = "unet_256";  // depth 8 contradicts num_downs 6
  EXPECT_THROW(make_generator(options), Error);
  EXPECT_THROW(make_generator(generator_options("unet")), Error);  // no depth at all
  EXPECT_THROW(make_generator(generator_options("unet_300")), Error);
  EXPECT_THROW(make_generator(generator_options("resnet_0blocks")), Error);
  try {
    make_generator(generator_options("vgg"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vgg"), std::string::npos);
  }
}

TEST(Generator, ParseNames) {
  EXPECT_EQ(parse_norm("instance"), Norm::kInstance);
  EXPECT_THROW(parse_norm("group"), Error);
  EXPECT_EQ(parse_upsampling("resize-conv"), Upsampling::kResizeNearest);
  EXPECT_EQ(to_string(parse_upsampling("resize-bilinear")), "resize-bilinear");
  EXPECT_THROW(parse_upsampling("pixelshuffle"), Error);
}

}  // namespace
}  // namespace pix2pix
