// Normalisation layer kinds shared by generators and discriminators. To add a kind, extend
// `Norm`, its parser/printer here and the layer factory (make_norm_layer) in src/models/norm.cpp.
#pragma once

#include <string>
#include <vector>

#include "pix2pix/names.h"

namespace pix2pix {

/// Which normalisation follows a convolution (the reference's --norm).
enum class Norm {
  kBatch,     ///< BatchNorm2d with affine weights and running statistics (the paper's choice)
  kInstance,  ///< InstanceNorm2d without affine weights or running statistics, as the reference
  kNone,      ///< no normalisation (an identity layer keeps the reference's module indices)
  /// Batch norm with statistics over every data-parallel rank's samples (SyncBatchNorm2d);
  /// BatchNorm2d's parameters and state_dict keys, and exactly BatchNorm2d in one process.
  kSyncBatch,
};
/// The normalisations' names (names.h).
template <>
const std::vector<std::string>& names<Norm>();

/// "batch" | "instance" | "none" | "syncbatch"; throws pix2pix::Error naming the value otherwise.
Norm parse_norm(const std::string& name);
/// The name parse_norm accepts.
std::string to_string(Norm norm);

}  // namespace pix2pix
