#include "pix2pix/io/onnx_export.h"

#if PIX2PIX_WITH_ONNX
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#endif
#include <torch/nn.h>

#include <cstring>
#include <functional>
#include <typeinfo>

#include "io/atomic_file.h"
#include "models/generator_layers.h"
#include "names_table.h"
#include "pix2pix/error.h"
#include "pix2pix/models/sync_batch_norm.h"

namespace pix2pix {

template <>
const std::vector<std::string>& names<OnnxMode>() {
  static const std::vector<std::string> list = {"eval", "paper"};
  return list;
}

#if PIX2PIX_WITH_ONNX
namespace {

namespace nn = torch::nn;

// Builds the graph node by node; every value gets a fresh name, weights keep their
// state_dict keys so that a user can find them in the file.
class GraphBuilder {
 public:
  explicit GraphBuilder(onnx::GraphProto* graph) : graph_(graph) {}

  struct Attribute {
    std::string name;
    std::function<void(onnx::AttributeProto*)> set;
  };
  static Attribute ints(const std::string& name, const std::vector<int64_t>& values) {
    return {name, [values](onnx::AttributeProto* a) {
              a->set_type(onnx::AttributeProto::INTS);
              for (int64_t v : values) a->add_ints(v);
            }};
  }
  static Attribute integer(const std::string& name, int64_t value) {
    return {name, [value](onnx::AttributeProto* a) {
              a->set_type(onnx::AttributeProto::INT);
              a->set_i(value);
            }};
  }
  static Attribute real(const std::string& name, double value) {
    return {name, [value](onnx::AttributeProto* a) {
              a->set_type(onnx::AttributeProto::FLOAT);
              a->set_f(static_cast<float>(value));
            }};
  }
  static Attribute text(const std::string& name, const std::string& value) {
    return {name, [value](onnx::AttributeProto* a) {
              a->set_type(onnx::AttributeProto::STRING);
              a->set_s(value);
            }};
  }

  // Adds `op` on `inputs` ("" = an omitted optional input) and returns its output's name.
  std::string node(const std::string& op, const std::vector<std::string>& inputs,
                   const std::vector<Attribute>& attributes = {}) {
    onnx::NodeProto* node = graph_->add_node();
    const std::string name = op + "_" + std::to_string(++count_);
    node->set_name(name);
    node->set_op_type(op);
    for (const auto& input : inputs) node->add_input(input);
    node->add_output(name);
    for (const auto& attribute : attributes) {
      onnx::AttributeProto* a = node->add_attribute();
      a->set_name(attribute.name);
      attribute.set(a);
    }
    return name;
  }

  // A float32 initializer holding `tensor`'s values.
  std::string weight(const std::string& name, const at::Tensor& tensor) {
    const at::Tensor values = tensor.detach().to(at::kFloat).contiguous().cpu();
    onnx::TensorProto* t = graph_->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : values.sizes()) t->add_dims(d);
    t->set_raw_data(values.data_ptr(), values.numel() * sizeof(float));  // little-endian hosts
    return name;
  }

  std::string int64s(const std::vector<int64_t>& values) {
    onnx::TensorProto* t = graph_->add_initializer();
    t->set_name("const_" + std::to_string(++count_));
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(values.size()));
    t->set_raw_data(values.data(), values.size() * sizeof(int64_t));
    return t->name();
  }

  std::string floats(const std::vector<float>& values) {
    return weight("const_" + std::to_string(++count_),
                  at::tensor(values, at::TensorOptions().dtype(at::kFloat)));
  }

 private:
  onnx::GraphProto* graph_;
  int64_t count_ = 0;
};

std::vector<int64_t> values(const torch::ExpandingArray<2>& array) {
  return {array->begin(), array->end()};
}

// Walks a generator's modules in forward order and emits the nodes each computes.
class Exporter {
 public:
  Exporter(GraphBuilder& graph, OnnxMode mode) : g_(graph), mode_(mode) {}

  // `m`'s output for input value `x`; `key` is m's state_dict prefix ("model.model.1.").
  std::string emit(const nn::Module& m, const std::string& x, const std::string& key) {
    if (auto* block = dynamic_cast<const detail::UNetBlockImpl*>(&m))
      return unet_block(*block, x, key);
    if (auto* block = dynamic_cast<const detail::ResNetBlockImpl*>(&m))
      return g_.node("Add", {x, emit(*block->conv_block, x, key + "conv_block.")});
    if (dynamic_cast<const nn::SequentialImpl*>(&m) != nullptr ||
        dynamic_cast<const detail::ResizeConvImpl*>(&m) != nullptr)
      return children(m, x, key, 0);
    if (auto* conv = dynamic_cast<const nn::Conv2dImpl*>(&m)) return convolution(*conv, x, key);
    if (auto* conv = dynamic_cast<const nn::ConvTranspose2dImpl*>(&m))
      return transposed(*conv, x, key);
    if (auto* up = dynamic_cast<const nn::UpsampleImpl*>(&m)) return upsample(*up, x);
    if (auto* pad = dynamic_cast<const detail::ReflectionPadImpl*>(&m))
      return reflect(x, pad->size);
    if (auto* bn = dynamic_cast<const nn::BatchNorm2dImpl*>(&m))
      return batch_norm(x, key, bn->weight, bn->bias, bn->running_mean, bn->running_var,
                        bn->options.eps());
    if (auto* bn = dynamic_cast<const SyncBatchNorm2dImpl*>(&m))
      return batch_norm(x, key, bn->weight, bn->bias, bn->running_mean, bn->running_var, bn->eps);
    if (auto* in = dynamic_cast<const nn::InstanceNorm2dImpl*>(&m)) return instance_norm(*in, x);
    if (auto* relu = dynamic_cast<const nn::LeakyReLUImpl*>(&m))
      return g_.node("LeakyRelu", {x},
                     {GraphBuilder::real("alpha", relu->options.negative_slope())});
    if (dynamic_cast<const nn::ReLUImpl*>(&m) != nullptr) return g_.node("Relu", {x});
    if (dynamic_cast<const nn::TanhImpl*>(&m) != nullptr) return g_.node("Tanh", {x});
    // Dropout is off in eval mode and not exported in paper mode (documented in the header).
    if (dynamic_cast<const nn::DropoutImpl*>(&m) != nullptr ||
        dynamic_cast<const nn::IdentityImpl*>(&m) != nullptr)
      return x;
    throw Error("onnx export: no ONNX form for the layer " + key + " (" + m.name() + ")",
                ErrorKind::kRuntime);
  }

 private:
  // m's children from the `first`th on, in order, each fed the previous one's output.
  std::string children(const nn::Module& m, std::string x, const std::string& key, size_t first) {
    const auto named = m.named_children();
    for (size_t i = first; i < named.size(); ++i)
      x = emit(*named[i].value(), x, key + named[i].key() + ".");
    return x;
  }

  // cat(a, inner(a)) where a = the block's first layer (an in-place LeakyReLU) of x: the skip
  // connection carries the activated input, as in the reference.
  std::string unet_block(const detail::UNetBlockImpl& block, const std::string& x,
                         const std::string& key) {
    const std::string prefix = key + "model.";
    if (block.outermost) return children(*block.model, x, prefix, 0);
    const std::string activated = emit(*block.model->children().front(), x, prefix + "0.");
    const std::string inner = children(*block.model, activated, prefix, 1);
    return g_.node("Concat", {activated, inner}, {GraphBuilder::integer("axis", 1)});
  }

  std::string reflect(const std::string& x, int64_t p) {
    return g_.node("Pad", {x, g_.int64s({0, 0, p, p, 0, 0, p, p})},
                   {GraphBuilder::text("mode", "reflect")});
  }

  std::string convolution(const nn::Conv2dImpl& conv, std::string x, const std::string& key) {
    const auto& o = conv.options;
    const auto padding = c10::get<torch::ExpandingArray<2>>(o.padding());
    std::vector<int64_t> pads = {padding->at(0), padding->at(1), padding->at(0), padding->at(1)};
    if (!c10::get_if<torch::enumtype::kZeros>(&o.padding_mode())) {
      if (!c10::get_if<torch::enumtype::kReflect>(&o.padding_mode()) ||
          padding->at(0) != padding->at(1))
        throw Error("onnx export: " + key + "weight: only zero or square reflect padding");
      x = reflect(x, padding->at(0));
      pads = {0, 0, 0, 0};
    }
    std::vector<std::string> inputs = {x, g_.weight(key + "weight", conv.weight)};
    if (conv.bias.defined()) inputs.push_back(g_.weight(key + "bias", conv.bias));
    return g_.node(
        "Conv", inputs,
        {GraphBuilder::ints("kernel_shape", values(o.kernel_size())),
         GraphBuilder::ints("strides", values(o.stride())), GraphBuilder::ints("pads", pads),
         GraphBuilder::ints("dilations", values(o.dilation())),
         GraphBuilder::integer("group", o.groups())});
  }

  std::string transposed(const nn::ConvTranspose2dImpl& conv, const std::string& x,
                         const std::string& key) {
    const auto& o = conv.options;
    const auto padding = c10::get<torch::ExpandingArray<2>>(o.padding());
    std::vector<std::string> inputs = {x, g_.weight(key + "weight", conv.weight)};
    if (conv.bias.defined()) inputs.push_back(g_.weight(key + "bias", conv.bias));
    return g_.node("ConvTranspose", inputs,
                   {GraphBuilder::ints("kernel_shape", values(o.kernel_size())),
                    GraphBuilder::ints("strides", values(o.stride())),
                    GraphBuilder::ints(
                        "pads", {padding->at(0), padding->at(1), padding->at(0), padding->at(1)}),
                    GraphBuilder::ints("output_padding", values(o.output_padding())),
                    GraphBuilder::ints("dilations", values(o.dilation())),
                    GraphBuilder::integer("group", o.groups())});
  }

  // x2 nearest (PyTorch's: floor of the asymmetric source coordinate) or bilinear with
  // align_corners false (half-pixel centres).
  std::string upsample(const nn::UpsampleImpl& up, const std::string& x) {
    const bool nearest = c10::get_if<torch::enumtype::kNearest>(&up.options.mode()) != nullptr;
    std::vector<GraphBuilder::Attribute> attributes;
    if (nearest)
      attributes = {GraphBuilder::text("mode", "nearest"),
                    GraphBuilder::text("coordinate_transformation_mode", "asymmetric"),
                    GraphBuilder::text("nearest_mode", "floor")};
    else
      attributes = {GraphBuilder::text("mode", "linear"),
                    GraphBuilder::text("coordinate_transformation_mode", "half_pixel")};
    return g_.node("Resize", {x, "", g_.floats({1.0F, 1.0F, 2.0F, 2.0F})}, attributes);
  }

  std::string batch_norm(const std::string& x, const std::string& key, const at::Tensor& weight,
                         const at::Tensor& bias, const at::Tensor& mean, const at::Tensor& var,
                         double eps) {
    const std::string scale = g_.weight(key + "weight", weight);
    const std::string shift = g_.weight(key + "bias", bias);
    if (mode_ == OnnxMode::kPaper)  // batch statistics of one image = its own statistics
      return g_.node("InstanceNormalization", {x, scale, shift},
                     {GraphBuilder::real("epsilon", eps)});
    return g_.node("BatchNormalization",
                   {x, scale, shift, g_.weight(key + "running_mean", mean),
                    g_.weight(key + "running_var", var)},
                   {GraphBuilder::real("epsilon", eps)});
  }

  // The reference's instance norm: no affine parameters, no running statistics.
  std::string instance_norm(const nn::InstanceNorm2dImpl& in, const std::string& x) {
    const int64_t channels = in.options.num_features();
    const std::vector<float> ones(channels, 1.0F), zeros(channels, 0.0F);
    return g_.node("InstanceNormalization", {x, g_.floats(ones), g_.floats(zeros)},
                   {GraphBuilder::real("epsilon", in.options.eps())});
  }

  GraphBuilder& g_;
  OnnxMode mode_;
};

void set_io(onnx::ValueInfoProto* value, const std::string& name, int64_t channels) {
  value->set_name(name);
  auto* tensor = value->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(onnx::TensorProto::FLOAT);
  auto* shape = tensor->mutable_shape();
  shape->add_dim()->set_dim_param("batch");
  shape->add_dim()->set_dim_value(channels);
  shape->add_dim()->set_dim_param("height");
  shape->add_dim()->set_dim_param("width");
}

std::map<std::string, std::string> metadata(const Generator& generator,
                                            const OnnxExportOptions& options) {
  const GeneratorOptions& o = generator.options();
  std::map<std::string, std::string> props = {
      {"mode", detail::name_of(options.mode)},
      {"architecture", o.net},
      {"input_nc", std::to_string(o.input_nc)},
      {"output_nc", std::to_string(o.output_nc)},
      {"ngf", std::to_string(o.ngf)},
      {"norm", to_string(o.norm)},
      {"upsampling", to_string(o.upsampling)},
      {"size_multiple", std::to_string(generator.size_multiple())},
      {"input_range", "[-1, 1] (pixel / 127.5 - 1), RGB channel order"},
  };
  if (o.net.rfind("unet", 0) == 0) props["num_downs"] = std::to_string(o.num_downs);
  for (const auto& [key, value] : options.metadata) props[key] = value;
  return props;
}

}  // namespace

std::string onnx_model_bytes(const Generator& generator, const OnnxExportOptions& options) {
  if (options.opset < 13 || options.opset > 17)
    throw Error::option("opset", std::to_string(options.opset) + " is outside 13..17");
  onnx::ModelProto model;
  model.set_ir_version(onnx::IR_VERSION);
  model.set_producer_name("pix2pix");
  model.set_producer_version(PIX2PIX_VERSION);
  model.set_doc_string("pix2pix generator " + generator.options().net);
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(options.opset);
  for (const auto& [key, value] : metadata(generator, options)) {
    auto* prop = model.add_metadata_props();
    prop->set_key(key);
    prop->set_value(value);
  }

  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("generator");
  set_io(graph->add_input(), "input", generator.options().input_nc);
  GraphBuilder builder(graph);
  Exporter exporter(builder, options.mode);
  std::string out = "input";
  for (const auto& child : generator.named_children())
    out = exporter.emit(*child.value(), out, child.key() + ".");
  // The last node's output takes the graph output's name.
  graph->mutable_node(graph->node_size() - 1)->set_output(0, "output");
  set_io(graph->add_output(), "output", generator.options().output_nc);

  try {
    onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    throw Error(std::string("onnx export: the ONNX checker rejects the model: ") + e.what(),
                ErrorKind::kRuntime);
  }
  std::string bytes;
  if (!model.SerializeToString(&bytes))
    throw Error("onnx export: the model does not serialize (over 2 GB?)", ErrorKind::kRuntime);
  return bytes;
}

#else  // Built without Debian's libonnx (PIX2PIX_WITH_ONNX=OFF).

std::string onnx_model_bytes(const Generator&, const OnnxExportOptions&) {
  throw Error("export", "this build has no ONNX support (built with PIX2PIX_WITH_ONNX=OFF)",
              ErrorKind::kRuntime);
}

#endif

void export_onnx(const Generator& generator, const std::string& path,
                 const OnnxExportOptions& options) {
  detail::write_file_atomically(path, onnx_model_bytes(generator, options));
}

}  // namespace pix2pix
