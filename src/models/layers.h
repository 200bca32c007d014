// Layer factories shared by the generators and discriminators (private to the library).
#pragma once

#include <torch/nn/modules/container/any.h>

#include <cstdint>

#include "pix2pix/models/norm.h"

namespace pix2pix::detail {

/// The normalisation layer for `channels` features (Identity for Norm::kNone).
torch::nn::AnyModule make_norm_layer(Norm norm, int64_t channels);

/// The reference's rule: convolutions followed by a norm carry a bias only with instance norm
/// (batch norm has its own shift; `none` follows the reference and has no bias either).
inline bool conv_bias_for(Norm norm) { return norm == Norm::kInstance; }

}  // namespace pix2pix::detail
