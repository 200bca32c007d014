// A trained generator as an ONNX model, for ONNX Runtime, TensorRT and the other runtimes that
// read ONNX: one input `input` (float32 N x input_nc x H x W in [-1, 1], batch, height and width
// dynamic), one output `output` (N x output_nc x H x W, tanh range). H and W must be multiples
// of the generator's size_multiple(): the model does not pad (translate does; see the metadata).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "pix2pix/models/generator.h"
#include "pix2pix/names.h"

namespace pix2pix {

/// Which test-time behaviour the exported model has.
enum class OnnxMode {
  /// Batch norm with its running statistics, no dropout: translate's default (--eval).
  kEval,
  /// The paper's test time at batch 1: batch norm normalises each image by its own statistics
  /// (an InstanceNormalization node with batch norm's scale and shift). Dropout is not exported:
  /// the model equals translate --train-mode with dropout off (--no-dropout).
  kPaper,
};

/// "eval" | "paper" (names.h).
template <>
const std::vector<std::string>& names<OnnxMode>();

/// How export_onnx writes the model.
struct OnnxExportOptions {
  OnnxMode mode = OnnxMode::kEval;  ///< test-time behaviour
  /// ONNX operator set, 13..17 (17: the newest Debian's onnx 1.12 checks; ONNX Runtime 1.12 and
  /// later run it, older runtimes need a lower one). Every node used has had its present form
  /// since opset 13.
  int64_t opset = 17;
  /// Extra metadata_props entries (e.g. direction, source weights), beside the ones always
  /// written: mode, architecture, input_nc, output_nc, ngf, norm, upsampling, size_multiple.
  std::map<std::string, std::string> metadata;
};

/// The generator as a serialized ONNX ModelProto, checked with onnx::checker. Weights are the
/// state_dict's float32 values, named by their state_dict keys. Throws pix2pix::Error
/// (Error::option("opset", ...) for an opset outside 13..17; a layer the exporter does not know).
std::string onnx_model_bytes(const Generator& generator, const OnnxExportOptions& options = {});

/// Writes onnx_model_bytes to `path` atomically (a failed export leaves no file). Throws
/// pix2pix::Error naming the path when it cannot be written.
void export_onnx(const Generator& generator, const std::string& path,
                 const OnnxExportOptions& options = {});

}  // namespace pix2pix
