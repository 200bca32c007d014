// ONNX export: the file passes Python's onnx.checker and ONNX Runtime (npm onnxruntime-node, run
// by node) computes what our Translator computes, in eval mode and in the paper's mode, for every
// generator family; the CLI writes a model whose 8-bit output is translate's within one level.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "pix2pix/data/transforms.h"
#include "pix2pix/error.h"
#include "pix2pix/infer/translator.h"
#include "pix2pix/io/image_io.h"
#include "pix2pix/io/onnx_export.h"
#include "pix2pix/io/pytorch_import.h"
#include "pix2pix/models/init.h"
#include "test_util.h"

namespace pix2pix {
namespace {

namespace fs = std::filesystem;

// A generator with the paper's initialisation and batch-norm statistics that are not the
// defaults (so that eval mode's use of them is tested).
std::shared_ptr<Generator> trained_like(GeneratorOptions options, uint64_t seed) {
  torch::manual_seed(seed);
  auto generator = make_generator(options);
  InitOptions init;  // the paper's N(0, 0.02) leaves a network without norms near 0 everywhere
  if (options.norm == Norm::kNone) init = {InitType::kXavier, 1.0};
  init_weights(*generator, init);
  torch::NoGradGuard no_grad;
  for (auto& buffer : generator->named_buffers()) {
    if (buffer.key().find("running_mean") != std::string::npos) buffer.value().normal_(0.0, 0.2);
    if (buffer.key().find("running_var") != std::string::npos) buffer.value().uniform_(0.5, 2.0);
  }
  return generator;
}

void write_floats(const std::string& path, const at::Tensor& tensor) {
  const at::Tensor t = tensor.contiguous();
  std::ofstream(path, std::ios::binary)
      .write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
}

at::Tensor read_floats(const std::string& path, at::IntArrayRef shape) {
  at::Tensor t = at::empty(shape, at::kFloat);
  std::ifstream in(path, std::ios::binary);
  in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  EXPECT_EQ(in.gcount(), static_cast<std::streamsize>(t.nbytes())) << path;
  return t;
}

// ONNX Runtime's outputs of `model` for `inputs` (N x C x H x W each); empty where node or
// onnxruntime-node is missing.
std::vector<at::Tensor> run_onnx(const std::string& model, const std::vector<at::Tensor>& inputs,
                                 int64_t output_nc) {
  const std::string modules = test::node_modules();
  if (modules.empty()) return {};
  std::string args;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string in = model + ".in" + std::to_string(i),
                      out = model + ".out" + std::to_string(i);
    write_floats(in, inputs[i]);
    const auto s = inputs[i].sizes();
    args += " " + in + " " + std::to_string(s[0]) + "," + std::to_string(s[1]) + "," +
            std::to_string(s[2]) + "," + std::to_string(s[3]) + " " + out;
  }
  const auto run = test::run_command("NODE_PATH=" + test::shell_quote(modules) + " node " +
                                     test::source_dir() + "/tests/io/onnx_run.js " + model + args);
  EXPECT_EQ(run.exit_code, 0) << run.output;
  std::vector<at::Tensor> outputs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto s = inputs[i].sizes();
    outputs.push_back(
        read_floats(model + ".out" + std::to_string(i), {s[0], output_nc, s[2], s[3]}));
  }
  return outputs;
}

// Exports `generator` in `mode`, runs each input through ONNX Runtime and through a Translator
// (train_mode for the paper's mode) and expects the largest difference under 1e-4.
void expect_onnx_matches(const std::shared_ptr<Generator>& generator, OnnxMode mode,
                         const std::vector<std::vector<int64_t>>& shapes, const std::string& name) {
  const std::string dir = test::temp_dir();
  const std::string model = dir + "/" + name + ".onnx";
  OnnxExportOptions options;
  options.mode = mode;
  export_onnx(*generator, model, options);
  std::vector<at::Tensor> inputs;
  for (const auto& shape : shapes) inputs.push_back(at::rand(shape) * 2 - 1);
  const auto outputs = run_onnx(model, inputs, generator->options().output_nc);
  if (outputs.empty()) GTEST_SKIP() << "node with onnxruntime-node is missing";
  TranslateOptions translate;
  translate.train_mode = mode == OnnxMode::kPaper;
  translate.max_pixels = 0;
  Translator translator(generator, translate);
  for (size_t i = 0; i < inputs.size(); ++i) {
    at::Tensor expected;
    if (mode == OnnxMode::kPaper) {  // the paper's batch statistics are one image's
      std::vector<at::Tensor> images;
      for (int64_t n = 0; n < inputs[i].size(0); ++n)
        images.push_back(translator.translate_tensor(inputs[i][n], name));
      expected = at::stack(images);
    } else {
      expected = translator.translate_tensor(inputs[i], name);
    }
    const double error = (outputs[i] - expected).abs().max().item<double>();
    EXPECT_LT(error, 1e-4) << name << " input " << inputs[i].sizes();
    EXPECT_GT(expected.abs().mean().item<double>(), 1e-3) << "a constant output tests nothing";
  }
}

GeneratorOptions generator(const std::string& net, int64_t ngf) {
  GeneratorOptions options;
  options.net = net;
  options.ngf = ngf;
  return options;
}

TEST(OnnxExport, UNet256EvalModeMatchesTranslateAtAnySizeAndBatch) {
  expect_onnx_matches(trained_like(generator("unet_256", 64), 1), OnnxMode::kEval,
                      {{1, 3, 256, 256}, {1, 3, 256, 512}, {2, 3, 256, 256}}, "unet_256");
}

TEST(OnnxExport, UNet128EvalModeMatchesTranslate) {
  expect_onnx_matches(trained_like(generator("unet_128", 32), 2), OnnxMode::kEval,
                      {{1, 3, 128, 128}, {1, 3, 256, 128}}, "unet_128");
}

TEST(OnnxExport, ResNet9BlocksEvalModeMatchesTranslate) {
  expect_onnx_matches(trained_like(generator("resnet_9blocks", 16), 3), OnnxMode::kEval,
                      {{1, 3, 128, 128}, {1, 3, 64, 96}}, "resnet_9blocks");
}

TEST(OnnxExport, PaperModeMatchesTrainModeWithoutDropout) {
  GeneratorOptions unet = generator("unet_256", 32);
  unet.dropout = false;
  expect_onnx_matches(trained_like(unet, 4), OnnxMode::kPaper, {{1, 3, 256, 256}, {2, 3, 256, 256}},
                      "unet_paper");
  GeneratorOptions resnet = generator("resnet_6blocks", 16);
  resnet.dropout = false;
  expect_onnx_matches(trained_like(resnet, 5), OnnxMode::kPaper, {{1, 3, 64, 64}}, "resnet_paper");
}

TEST(OnnxExport, ResizeConvolutionsAndOtherNormsMatchTranslate) {
  GeneratorOptions nearest = generator("unet_128", 16);
  nearest.upsampling = Upsampling::kResizeNearest;
  nearest.norm = Norm::kInstance;
  expect_onnx_matches(trained_like(nearest, 6), OnnxMode::kEval, {{1, 3, 128, 128}},
                      "unet_nearest_instance");
  GeneratorOptions bilinear = generator("resnet_6blocks", 16);
  bilinear.upsampling = Upsampling::kResizeBilinear;  // reflect-padded 3x3 convolutions
  bilinear.norm = Norm::kNone;
  expect_onnx_matches(trained_like(bilinear, 7), OnnxMode::kEval, {{1, 3, 64, 64}},
                      "resnet_bilinear_none");
  GeneratorOptions deep = generator("unet", 16);
  deep.num_downs = 5;
  deep.norm = Norm::kSyncBatch;
  expect_onnx_matches(trained_like(deep, 8), OnnxMode::kEval, {{1, 3, 32, 64}}, "unet5_sync");
}

TEST(OnnxExport, PythonCheckerAcceptsTheFileAndReadsItsMetadata) {
  if (!test::required(test::run_command("/usr/bin/python3 -c 'import onnx'").exit_code == 0,
                      "/usr/bin/python3 with onnx (python3-onnx)"))
    GTEST_SKIP() << "python3-onnx is missing";
  const std::string model = test::temp_dir() + "/checked.onnx";
  OnnxExportOptions options;
  options.mode = OnnxMode::kPaper;
  options.metadata["direction"] = "BtoA";
  export_onnx(*trained_like(generator("unet_128", 8), 9), model, options);
  const auto check = test::run_python(
      "-c \"import onnx, sys; m = onnx.load(sys.argv[1]); onnx.checker.check_model(m, "
      "full_check=True); print(sorted((p.key, p.value) for p in m.metadata_props)); "
      "print([d.dim_param or d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]); "
      "print(m.opset_import[0].version)\" " +
      model);
  ASSERT_EQ(check.exit_code, 0) << check.output;
  for (const char* expected :
       {"('mode', 'paper')", "('architecture', 'unet_128')", "('direction', 'BtoA')",
        "('size_multiple', '128')", "('input_nc', '3')", "('output_nc', '3')",
        "['batch', 3, 'height', 'width']", "\n17\n"})
    EXPECT_NE(check.output.find(expected), std::string::npos) << expected << "\n" << check.output;
}

TEST(OnnxExport, RejectsAnOpsetOutsideTheCheckedRange) {
  OnnxExportOptions options;
  options.opset = 18;
  try {
    onnx_model_bytes(*make_generator(generator("unet_128", 8)), options);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.field(), "opset");
  }
}

TEST(OnnxExport, CliModelGivesTranslatesPngWithinOneLevel) {
  const std::string dir = test::temp_dir();
  GeneratorOptions options = generator("unet_128", 16);
  write_state_dict(dir + "/G.pth", module_state_dict(*trained_like(options, 10)));
  Image image(256, 128, 3);  // multiples of 128: translate neither pads nor tiles
  for (size_t i = 0; i < image.data.size(); ++i) image.data[i] = static_cast<uint8_t>(i * 7 % 251);
  const std::string png = test::put_image(dir, "in.png", image);
  const auto exported = test::run_cli("export --weights " + dir +
                                      "/G.pth --netG unet_128 --ngf 16 --out " + dir + "/G.onnx");
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  EXPECT_NE(exported.output.find("H and W multiples of 128"), std::string::npos) << exported.output;
  const auto translated =
      test::run_cli("translate --weights " + dir + "/G.pth --netG unet_128 --ngf 16 --out " + dir +
                    "/out " + png);
  ASSERT_EQ(translated.exit_code, 0) << translated.output;
  const auto outputs = run_onnx(dir + "/G.onnx", {image_to_tensor(image).unsqueeze(0)}, 3);
  if (outputs.empty()) GTEST_SKIP() << "node with onnxruntime-node is missing";
  const Image ours = read_image(dir + "/out/in.png");
  const Image theirs = tensor_to_image(outputs[0][0]);
  ASSERT_EQ(ours.width, theirs.width);
  ASSERT_EQ(ours.height, theirs.height);
  int worst = 0;
  for (size_t i = 0; i < ours.data.size(); ++i)
    worst = std::max(worst, std::abs(int{ours.data[i]} - int{theirs.data[i]}));
  EXPECT_LE(worst, 1);
}

TEST(OnnxExport, CliRejectsBadFlagsAndUnwritableOutputs) {
  const std::string dir = test::temp_dir();
  write_state_dict(dir + "/G.pth", module_state_dict(*make_generator(generator("unet_128", 8))));
  const auto opset =
      test::run_cli("export --weights " + dir + "/G.pth --netG unet_128 --ngf 8 --opset 12 --out " +
                    dir + "/a.onnx");
  EXPECT_EQ(opset.exit_code, 2) << opset.output;
  EXPECT_NE(opset.output.find("--opset"), std::string::npos) << opset.output;
  const auto shape = test::run_cli("export --weights " + dir +
                                   "/G.pth --netG unet_256 --ngf 8 --out " + dir + "/b.onnx");
  EXPECT_EQ(shape.exit_code, 2) << shape.output;  // weights of another architecture
  EXPECT_NE(shape.output.find("G.pth"), std::string::npos) << shape.output;
  const auto folder =
      test::run_cli("export --weights " + dir + "/G.pth --netG unet_128 --ngf 8 --out " + dir +
                    "/missing/c.onnx");
  EXPECT_NE(folder.exit_code, 0) << folder.output;
  EXPECT_NE(folder.output.find("missing"), std::string::npos) << folder.output;
  EXPECT_FALSE(fs::exists(dir + "/a.onnx") || fs::exists(dir + "/b.onnx"));
}

}  // namespace
}  // namespace pix2pix
