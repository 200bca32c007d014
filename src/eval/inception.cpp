#include "pix2pix/eval/inception.h"

#include <torch/nn.h>

#include <algorithm>
#include <array>

#include "pix2pix/error.h"
#include "pix2pix/io/pytorch_import.h"

namespace pix2pix {

namespace nn = torch::nn;

namespace detail {

// A stage of the network: a BasicConv2d of the stem or a Mixed block.
class InceptionBlock : public nn::Module {
 public:
  virtual at::Tensor forward(at::Tensor x) = 0;
};

}  // namespace detail

namespace {

using detail::InceptionBlock;

// Conv (no bias) -> BatchNorm (eps 0.001, the TensorFlow graph's) -> ReLU: torchvision's
// BasicConv2d, submodules "conv" and "bn".
class BasicConv2d : public InceptionBlock {
 public:
  BasicConv2d(int64_t in, int64_t out, std::array<int64_t, 2> kernel,
              std::array<int64_t, 2> stride = {1, 1}, std::array<int64_t, 2> padding = {0, 0}) {
    using Pair = torch::ExpandingArray<2>;
    conv_ =
        register_module("conv", nn::Conv2d(nn::Conv2dOptions(in, out, Pair({kernel[0], kernel[1]}))
                                               .stride(Pair({stride[0], stride[1]}))
                                               .padding(Pair({padding[0], padding[1]}))
                                               .bias(false)));
    bn_ = register_module("bn", nn::BatchNorm2d(nn::BatchNorm2dOptions(out).eps(0.001)));
  }
  at::Tensor forward(at::Tensor x) override { return bn_->forward(conv_->forward(x)).relu_(); }

 private:
  nn::Conv2d conv_{nullptr};
  nn::BatchNorm2d bn_{nullptr};
};

using Conv = std::shared_ptr<BasicConv2d>;

// Square kernel k, stride s, padding p.
std::shared_ptr<BasicConv2d> basic(int64_t in, int64_t out, int64_t k, int64_t s = 1,
                                   int64_t p = 0) {
  return std::make_shared<BasicConv2d>(in, out, std::array<int64_t, 2>{k, k},
                                       std::array<int64_t, 2>{s, s}, std::array<int64_t, 2>{p, p});
}
// 1 x 7 (horizontal) or 7 x 1 (vertical) kernels with "same" padding; also 1 x 3 / 3 x 1.
std::shared_ptr<BasicConv2d> row(int64_t in, int64_t out, int64_t k) {
  return std::make_shared<BasicConv2d>(in, out, std::array<int64_t, 2>{1, k},
                                       std::array<int64_t, 2>{1, 1},
                                       std::array<int64_t, 2>{0, k / 2});
}
std::shared_ptr<BasicConv2d> column(int64_t in, int64_t out, int64_t k) {
  return std::make_shared<BasicConv2d>(in, out, std::array<int64_t, 2>{k, 1},
                                       std::array<int64_t, 2>{1, 1},
                                       std::array<int64_t, 2>{k / 2, 0});
}

// 3x3, stride 1, padding 1 average pool over the valid pixels only (pytorch-fid's blocks; the
// TensorFlow graph pools this way, torchvision's own blocks count the padding).
at::Tensor average_pool_3x3(const at::Tensor& x) {
  return at::avg_pool2d(x, {3, 3}, {1, 1}, {1, 1}, /*ceil_mode=*/false,
                        /*count_include_pad=*/false);
}

// Mixed_5b/5c/5d (FIDInceptionA): 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | pool -> 1x1.
class InceptionA : public InceptionBlock {
 public:
  InceptionA(int64_t in, int64_t pool_features) {
    b1x1_ = register_module("branch1x1", basic(in, 64, 1));
    b5x5_1_ = register_module("branch5x5_1", basic(in, 48, 1));
    b5x5_2_ = register_module("branch5x5_2", basic(48, 64, 5, 1, 2));
    b3x3dbl_1_ = register_module("branch3x3dbl_1", basic(in, 64, 1));
    b3x3dbl_2_ = register_module("branch3x3dbl_2", basic(64, 96, 3, 1, 1));
    b3x3dbl_3_ = register_module("branch3x3dbl_3", basic(96, 96, 3, 1, 1));
    pool_ = register_module("branch_pool", basic(in, pool_features, 1));
  }
  at::Tensor forward(at::Tensor x) override {
    return at::cat({b1x1_->forward(x), b5x5_2_->forward(b5x5_1_->forward(x)),
                    b3x3dbl_3_->forward(b3x3dbl_2_->forward(b3x3dbl_1_->forward(x))),
                    pool_->forward(average_pool_3x3(x))},
                   1);
  }

 private:
  Conv b1x1_, b5x5_1_, b5x5_2_, b3x3dbl_1_, b3x3dbl_2_, b3x3dbl_3_, pool_;
};

// Mixed_6a (InceptionB): 3x3 s2 | 1x1 -> 3x3 -> 3x3 s2 | max pool s2.
class InceptionB : public InceptionBlock {
 public:
  explicit InceptionB(int64_t in) {
    b3x3_ = register_module("branch3x3", basic(in, 384, 3, 2));
    b3x3dbl_1_ = register_module("branch3x3dbl_1", basic(in, 64, 1));
    b3x3dbl_2_ = register_module("branch3x3dbl_2", basic(64, 96, 3, 1, 1));
    b3x3dbl_3_ = register_module("branch3x3dbl_3", basic(96, 96, 3, 2));
  }
  at::Tensor forward(at::Tensor x) override {
    return at::cat(
        {b3x3_->forward(x), b3x3dbl_3_->forward(b3x3dbl_2_->forward(b3x3dbl_1_->forward(x))),
         at::max_pool2d(x, {3, 3}, {2, 2})},
        1);
  }

 private:
  Conv b3x3_, b3x3dbl_1_, b3x3dbl_2_, b3x3dbl_3_;
};

// Mixed_6b..6e (FIDInceptionC): factorised 7x7 convolutions.
class InceptionC : public InceptionBlock {
 public:
  InceptionC(int64_t in, int64_t c7) {
    b1x1_ = register_module("branch1x1", basic(in, 192, 1));
    b7x7_1_ = register_module("branch7x7_1", basic(in, c7, 1));
    b7x7_2_ = register_module("branch7x7_2", row(c7, c7, 7));
    b7x7_3_ = register_module("branch7x7_3", column(c7, 192, 7));
    b7x7dbl_1_ = register_module("branch7x7dbl_1", basic(in, c7, 1));
    b7x7dbl_2_ = register_module("branch7x7dbl_2", column(c7, c7, 7));
    b7x7dbl_3_ = register_module("branch7x7dbl_3", row(c7, c7, 7));
    b7x7dbl_4_ = register_module("branch7x7dbl_4", column(c7, c7, 7));
    b7x7dbl_5_ = register_module("branch7x7dbl_5", row(c7, 192, 7));
    pool_ = register_module("branch_pool", basic(in, 192, 1));
  }
  at::Tensor forward(at::Tensor x) override {
    at::Tensor b7 = b7x7_3_->forward(b7x7_2_->forward(b7x7_1_->forward(x)));
    at::Tensor dbl = b7x7dbl_1_->forward(x);
    dbl = b7x7dbl_5_->forward(b7x7dbl_4_->forward(b7x7dbl_3_->forward(b7x7dbl_2_->forward(dbl))));
    return at::cat({b1x1_->forward(x), b7, dbl, pool_->forward(average_pool_3x3(x))}, 1);
  }

 private:
  Conv b1x1_, b7x7_1_, b7x7_2_, b7x7_3_, b7x7dbl_1_, b7x7dbl_2_, b7x7dbl_3_, b7x7dbl_4_, b7x7dbl_5_,
      pool_;
};

// Mixed_7a (InceptionD): 1x1 -> 3x3 s2 | 1x1 -> 1x7 -> 7x1 -> 3x3 s2 | max pool s2.
class InceptionD : public InceptionBlock {
 public:
  explicit InceptionD(int64_t in) {
    b3x3_1_ = register_module("branch3x3_1", basic(in, 192, 1));
    b3x3_2_ = register_module("branch3x3_2", basic(192, 320, 3, 2));
    b7x7x3_1_ = register_module("branch7x7x3_1", basic(in, 192, 1));
    b7x7x3_2_ = register_module("branch7x7x3_2", row(192, 192, 7));
    b7x7x3_3_ = register_module("branch7x7x3_3", column(192, 192, 7));
    b7x7x3_4_ = register_module("branch7x7x3_4", basic(192, 192, 3, 2));
  }
  at::Tensor forward(at::Tensor x) override {
    at::Tensor b7 =
        b7x7x3_4_->forward(b7x7x3_3_->forward(b7x7x3_2_->forward(b7x7x3_1_->forward(x))));
    return at::cat({b3x3_2_->forward(b3x3_1_->forward(x)), b7, at::max_pool2d(x, {3, 3}, {2, 2})},
                   1);
  }

 private:
  Conv b3x3_1_, b3x3_2_, b7x7x3_1_, b7x7x3_2_, b7x7x3_3_, b7x7x3_4_;
};

// Mixed_7b (FIDInceptionE_1, average pool without padding) and Mixed_7c (FIDInceptionE_2, max
// pool): split 1x3 / 3x1 branches.
class InceptionE : public InceptionBlock {
 public:
  InceptionE(int64_t in, bool max_pool) : max_pool_(max_pool) {
    b1x1_ = register_module("branch1x1", basic(in, 320, 1));
    b3x3_1_ = register_module("branch3x3_1", basic(in, 384, 1));
    b3x3_2a_ = register_module("branch3x3_2a", row(384, 384, 3));
    b3x3_2b_ = register_module("branch3x3_2b", column(384, 384, 3));
    b3x3dbl_1_ = register_module("branch3x3dbl_1", basic(in, 448, 1));
    b3x3dbl_2_ = register_module("branch3x3dbl_2", basic(448, 384, 3, 1, 1));
    b3x3dbl_3a_ = register_module("branch3x3dbl_3a", row(384, 384, 3));
    b3x3dbl_3b_ = register_module("branch3x3dbl_3b", column(384, 384, 3));
    pool_ = register_module("branch_pool", basic(in, 192, 1));
  }
  at::Tensor forward(at::Tensor x) override {
    at::Tensor b3 = b3x3_1_->forward(x);
    b3 = at::cat({b3x3_2a_->forward(b3), b3x3_2b_->forward(b3)}, 1);
    at::Tensor dbl = b3x3dbl_2_->forward(b3x3dbl_1_->forward(x));
    dbl = at::cat({b3x3dbl_3a_->forward(dbl), b3x3dbl_3b_->forward(dbl)}, 1);
    at::Tensor pooled = max_pool_ ? at::max_pool2d(x, {3, 3}, {1, 1}, {1, 1}) : average_pool_3x3(x);
    return at::cat({b1x1_->forward(x), b3, dbl, pool_->forward(pooled)}, 1);
  }

 private:
  bool max_pool_;
  Conv b1x1_, b3x3_1_, b3x3_2a_, b3x3_2b_, b3x3dbl_1_, b3x3dbl_2_, b3x3dbl_3a_, b3x3dbl_3b_, pool_;
};

}  // namespace

FidInceptionV3::FidInceptionV3(FidInceptionOptions options) : options_(options) {
  // Registration order is torchvision's, so state_dict() lists keys as Python does.
  auto add = [this](const std::string& name, std::shared_ptr<InceptionBlock> block) {
    blocks_.push_back(register_module(name, std::move(block)));
  };
  add("Conv2d_1a_3x3", basic(3, 32, 3, 2));
  add("Conv2d_2a_3x3", basic(32, 32, 3));
  add("Conv2d_2b_3x3", basic(32, 64, 3, 1, 1));
  add("Conv2d_3b_1x1", basic(64, 80, 1));
  add("Conv2d_4a_3x3", basic(80, 192, 3));
  add("Mixed_5b", std::make_shared<InceptionA>(192, 32));
  add("Mixed_5c", std::make_shared<InceptionA>(256, 64));
  add("Mixed_5d", std::make_shared<InceptionA>(288, 64));
  add("Mixed_6a", std::make_shared<InceptionB>(288));
  add("Mixed_6b", std::make_shared<InceptionC>(768, 128));
  add("Mixed_6c", std::make_shared<InceptionC>(768, 160));
  add("Mixed_6d", std::make_shared<InceptionC>(768, 160));
  add("Mixed_6e", std::make_shared<InceptionC>(768, 192));
  add("Mixed_7a", std::make_shared<InceptionD>(768));
  add("Mixed_7b", std::make_shared<InceptionE>(1280, /*max_pool=*/false));
  add("Mixed_7c", std::make_shared<InceptionE>(2048, /*max_pool=*/true));
  // The 1008-way classifier of the TensorFlow graph: part of the weight file, unused for FID.
  register_module("fc", nn::Linear(2048, 1008));
}

at::Tensor FidInceptionV3::preprocess(at::Tensor images) const {
  if (options_.resize_input) {
    const std::array<int64_t, 2> size = {299, 299};  // F.interpolate(size=...): scales unset
    images =
        at::upsample_bilinear2d(images, size, /*align_corners=*/false, c10::nullopt, c10::nullopt);
  }
  if (options_.normalize_input) images = images * 2 - 1;
  return images;
}

at::Tensor FidInceptionV3::pool_features(at::Tensor x) {
  if (x.dim() != 4 || x.size(1) != 3) throw Error("FidInceptionV3", "expects N x 3 x H x W images");
  if (x.size(2) < 75 || x.size(3) < 75)
    throw Error("FidInceptionV3", "images must be at least 75 x 75 (got " +
                                      std::to_string(x.size(3)) + " x " +
                                      std::to_string(x.size(2)) + ")");
  for (size_t i = 0; i < blocks_.size(); ++i) {
    x = blocks_[i]->forward(x);
    if (i == 2 || i == 4) x = at::max_pool2d(x, {3, 3}, {2, 2});  // after 2b and 4a
  }
  return at::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
}

at::Tensor FidInceptionV3::forward(at::Tensor images) { return pool_features(preprocess(images)); }

std::shared_ptr<FidInceptionV3> load_fid_inception(const std::string& weights_path,
                                                   FidInceptionOptions options) {
  auto network = std::make_shared<FidInceptionV3>(options);
  load_state_dict(*network, read_state_dict(weights_path), weights_path);
  network->eval();
  return network;
}

at::Tensor fid_features(FidInceptionV3& network, const std::vector<Image>& images,
                        int64_t batch_size, const std::function<void(size_t)>& progress) {
  at::NoGradGuard no_grad;
  network.eval();
  batch_size = std::max<int64_t>(batch_size, 1);
  std::vector<at::Tensor> features;
  std::vector<at::Tensor> batch;
  size_t done = 0;
  auto flush = [&] {
    if (batch.empty()) return;
    features.push_back(network.pool_features(at::cat(batch, 0)));
    done += batch.size();
    batch.clear();
    if (progress) progress(done);
  };
  for (const Image& image : images) {
    Image rgb = convert_channels(image, 3);
    if (rgb.type != SampleType::kUint8) throw Error("fid_features", "expects 8-bit images");
    at::Tensor t = at::from_blob(rgb.data.data(), {1, rgb.height, rgb.width, 3}, at::kByte)
                       .permute({0, 3, 1, 2})
                       .to(at::kFloat)
                       .div(255.0);  // torchvision's ToTensor
    // Each image is preprocessed alone (sizes may differ), then batched.
    batch.push_back(network.preprocess(t));
    if (static_cast<int64_t>(batch.size()) == batch_size) flush();
  }
  flush();
  if (features.empty()) return at::empty({0, 2048});
  return at::cat(features, 0);
}

}  // namespace pix2pix
