// Synchronised batch normalisation (`--norm syncbatch`): BatchNorm2d whose batch statistics are
// those of the whole data-parallel batch, every rank's samples together. The forward pass
// all-reduces each channel's sum, sum of squares and count; the backward pass all-reduces
// sum(dy) and sum(dy * xhat), so that gradients equal those of batch norm on the combined batch.
// Parameters and buffers carry BatchNorm2d's names (weight, bias, running_mean, running_var,
// num_batches_tracked), so checkpoints load into PyTorch's BatchNorm2d and back. Without a
// Communicator, with one rank, or in eval mode it is exactly BatchNorm2d.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>

namespace pix2pix {

class Communicator;

/// BatchNorm2d over the ranks of a Communicator (affine, running statistics tracked).
struct SyncBatchNorm2dImpl : torch::nn::Module {
  /// PyTorch's BatchNorm2d defaults: eps 1e-5, momentum 0.1.
  explicit SyncBatchNorm2dImpl(int64_t channels, double eps = 1e-5, double momentum = 0.1);

  /// N x C x H x W -> same. In training mode every rank must call it (the same number of times,
  /// in the same order), and backward through it too: both passes are collectives.
  at::Tensor forward(const at::Tensor& input);
  void reset_parameters();
  /// The group whose statistics are combined (null: this process alone).
  void set_communicator(std::shared_ptr<Communicator> communicator);

  int64_t channels;
  double eps, momentum;
  at::Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  std::shared_ptr<Communicator> communicator_;
};
TORCH_MODULE(SyncBatchNorm2d);

/// Gives every SyncBatchNorm2d inside `network` this communicator. Returns how many it found.
int set_communicator(torch::nn::Module& network, const std::shared_ptr<Communicator>& communicator);

}  // namespace pix2pix
