// The Communicator over libtorch's c10d: a TCPStore (or FileStore) rendezvous and a
// ProcessGroupGloo. The only file that includes c10d headers; they need USE_C10D_GLOO (set for
// this file in CMakeLists.txt) and the gloo headers of Debian's libgloo-dev. libtorch 2.x moved
// Work out of ProcessGroup and split Backend from ProcessGroup: adapt here.
#include "pix2pix/train/distributed.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#if PIX2PIX_WITH_GLOO
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

#include "pix2pix/error.h"

namespace pix2pix {

namespace {

// An environment variable as an integer in [low, high]; `fallback` when unset or empty.
int env_int(const char* name, int fallback, int low, int high) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*end != '\0' || value < low || value > high)
    throw Error(std::string("environment variable ") + name,
                std::string("'") + text + "' is not a number in " + std::to_string(low) + ".." +
                    std::to_string(high));
  return static_cast<int>(value);
}

}  // namespace

DistributedOptions distributed_from_environment() {
  DistributedOptions options;
  const bool slurm = std::getenv("WORLD_SIZE") == nullptr && std::getenv("SLURM_NTASKS");
  options.world_size =
      slurm ? env_int("SLURM_NTASKS", 1, 1, 1 << 20) : env_int("WORLD_SIZE", 1, 1, 1 << 20);
  options.rank = slurm ? env_int("SLURM_PROCID", 0, 0, options.world_size - 1)
                       : env_int("RANK", 0, 0, options.world_size - 1);
  options.local_rank = slurm ? env_int("SLURM_LOCALID", 0, 0, 1 << 20)
                             : env_int("LOCAL_RANK", options.rank, 0, 1 << 20);
  if (const char* address = std::getenv("MASTER_ADDR"); address != nullptr && *address != '\0')
    options.master_addr = address;
  options.master_port = env_int("MASTER_PORT", options.master_port, 1, 65535);
  return options;
}

#if PIX2PIX_WITH_GLOO

namespace {

// The first line of an exception's message (c10 errors carry a backtrace after it).
std::string first_line(const std::exception& error) {
  std::string text;
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&error))
    text = c10_error->what_without_backtrace();
  else
    text = error.what();
  const size_t end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

std::chrono::milliseconds to_milliseconds(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

bool is_loopback(const std::string& address) {
  return address == "localhost" || address.rfind("127.", 0) == 0 || address == "::1";
}

}  // namespace

struct Communicator::State {
  int rank = 0;
  int world_size = 1;
  double timeout_seconds = 300;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;

  // Runs a collective and waits for it; a failure (a dead or silent peer) becomes one clear line.
  void run(const char* what, const std::function<c10::intrusive_ptr<c10d::Work>()>& start) {
    try {
      start()->wait();
    } catch (const std::exception& error) {
      throw Error("distributed",
                  "rank " + std::to_string(rank) + ": " + what + " failed (another rank died " +
                      "or did not answer within " +
                      std::to_string(static_cast<int>(timeout_seconds)) +
                      " s): " + first_line(error),
                  ErrorKind::kRuntime);
    }
  }

  // Applies `collective` to `tensors` packed into flat buffers of one dtype and at most
  // `bucket_bytes` each (a tensor larger than that gets a buffer of its own), then copies back.
  void bucketed(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes,
                const std::function<void(at::Tensor&)>& collective) {
    at::NoGradGuard no_grad;
    std::vector<at::ScalarType> type_order;
    std::map<at::ScalarType, std::vector<at::Tensor>> by_type;
    for (const at::Tensor& tensor : tensors) {
      if (!tensor.defined() || tensor.numel() == 0) continue;
      if (!by_type.count(tensor.scalar_type())) type_order.push_back(tensor.scalar_type());
      by_type[tensor.scalar_type()].push_back(tensor);
    }
    for (at::ScalarType type : type_order) {
      const std::vector<at::Tensor>& list = by_type[type];
      size_t begin = 0;
      while (begin < list.size()) {
        size_t end = begin;
        int64_t bytes = 0;
        while (end < list.size() &&
               (end == begin ||
                bytes + list[end].numel() * list[end].element_size() <= bucket_bytes)) {
          bytes += list[end].numel() * list[end].element_size();
          ++end;
        }
        std::vector<at::Tensor> flat_parts;
        for (size_t i = begin; i < end; ++i) flat_parts.push_back(list[i].reshape({-1}));
        at::Tensor flat = end - begin == 1 && list[begin].is_contiguous() ? list[begin].view({-1})
                                                                          : at::cat(flat_parts);
        collective(flat);
        if (!(end - begin == 1 && list[begin].is_contiguous())) {
          int64_t offset = 0;
          for (size_t i = begin; i < end; ++i) {
            const int64_t count = list[i].numel();
            list[i].copy_(flat.narrow(0, offset, count).view(list[i].sizes()));
            offset += count;
          }
        }
        begin = end;
      }
    }
  }
};

Communicator::Communicator(std::unique_ptr<State> state) : state_(std::move(state)) {}
Communicator::~Communicator() = default;

namespace {

std::shared_ptr<::gloo::transport::Device> make_device(const std::string& master_addr) {
  if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME"); interface && *interface)
    return c10d::ProcessGroupGloo::createDeviceForInterface(interface);
  // One machine: talk over loopback. Several: the address this host's name resolves to.
  if (is_loopback(master_addr)) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

std::shared_ptr<Communicator> Communicator::connect(const DistributedOptions& options) {
  if (options.backend == "nccl")
    throw Error::option("backend",
                        "nccl needs CUDA, and this build of libtorch is CPU only; use gloo");
  if (options.backend != "gloo")
    throw Error::option("backend", "unknown backend '" + options.backend + "' (gloo or nccl)");
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size)
    throw Error("distributed", "rank " + std::to_string(options.rank) + " is not in a world of " +
                                   std::to_string(options.world_size));
  if (options.timeout_seconds <= 0) throw Error::option("timeout_seconds", "must be positive");
  auto state = std::make_unique<State>();
  state->rank = options.rank;
  state->world_size = options.world_size;
  state->timeout_seconds = options.timeout_seconds;
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(options.master_port);
    store_options.isServer = options.rank == 0;
    store_options.numWorkers = static_cast<size_t>(options.world_size);
    store_options.waitWorkers = true;
    store_options.timeout = to_milliseconds(options.timeout_seconds);
    state->store = c10::make_intrusive<c10d::TCPStore>(options.master_addr, store_options);
    auto gloo_options = c10d::ProcessGroupGloo::Options::create(store_options.timeout);
    gloo_options->devices.push_back(make_device(options.master_addr));
    state->group = c10::make_intrusive<c10d::ProcessGroupGloo>(state->store, options.rank,
                                                               options.world_size, gloo_options);
  } catch (const std::exception& error) {
    throw Error("distributed",
                "rank " + std::to_string(options.rank) + ": rendezvous at " + options.master_addr +
                    ":" + std::to_string(options.master_port) + " of " +
                    std::to_string(options.world_size) + " ranks failed: " + first_line(error),
                ErrorKind::kRuntime);
  }
  return std::shared_ptr<Communicator>(new Communicator(std::move(state)));
}

std::shared_ptr<Communicator> Communicator::connect_file(const std::string& path, int rank,
                                                         int world_size, double timeout_seconds) {
  auto state = std::make_unique<State>();
  state->rank = rank;
  state->world_size = world_size;
  state->timeout_seconds = timeout_seconds;
  try {
    state->store = c10::make_intrusive<c10d::FileStore>(path, world_size);
    auto gloo_options = c10d::ProcessGroupGloo::Options::create(to_milliseconds(timeout_seconds));
    gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    state->group =
        c10::make_intrusive<c10d::ProcessGroupGloo>(state->store, rank, world_size, gloo_options);
  } catch (const std::exception& error) {
    throw Error("distributed",
                "rank " + std::to_string(rank) + ": rendezvous through " + path +
                    " failed: " + first_line(error),
                ErrorKind::kRuntime);
  }
  return std::shared_ptr<Communicator>(new Communicator(std::move(state)));
}

int Communicator::rank() const { return state_->rank; }
int Communicator::world_size() const { return state_->world_size; }

void Communicator::broadcast(const std::vector<at::Tensor>& tensors, int root) {
  if (state_->world_size == 1) return;
  state_->bucketed(tensors, 32 << 20, [&](at::Tensor& flat) {
    std::vector<at::Tensor> list{flat};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    state_->run("broadcast", [&] { return state_->group->broadcast(list, options); });
  });
}

void Communicator::all_reduce_sum(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes) {
  if (state_->world_size == 1) return;
  state_->bucketed(tensors, bucket_bytes, [&](at::Tensor& flat) {
    std::vector<at::Tensor> list{flat};
    state_->run("all-reduce", [&] { return state_->group->allreduce(list); });
  });
}

void Communicator::all_reduce_mean(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes) {
  if (state_->world_size == 1) return;
  const double scale = 1.0 / state_->world_size;
  state_->bucketed(tensors, bucket_bytes, [&](at::Tensor& flat) {
    std::vector<at::Tensor> list{flat};
    state_->run("all-reduce", [&] { return state_->group->allreduce(list); });
    flat.mul_(scale);
  });
}

double Communicator::all_reduce_max(double value) {
  if (state_->world_size == 1) return value;
  std::vector<at::Tensor> list{at::full({1}, value, at::kDouble)};
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp::MAX;
  state_->run("all-reduce", [&] { return state_->group->allreduce(list, options); });
  return list[0].item<double>();
}

void Communicator::barrier() {
  if (state_->world_size == 1) return;
  state_->run("barrier", [&] { return state_->group->barrier(); });
}

#else  // Built without Gloo (PIX2PIX_WITH_GLOO=OFF): a single process only.

struct Communicator::State {};
Communicator::Communicator(std::unique_ptr<State> state) : state_(std::move(state)) {}
Communicator::~Communicator() = default;

std::shared_ptr<Communicator> Communicator::connect(const DistributedOptions&) {
  throw Error::option("backend",
                      "this build has no Gloo (PIX2PIX_WITH_GLOO=OFF): one process only");
}

std::shared_ptr<Communicator> Communicator::connect_file(const std::string&, int, int, double) {
  throw Error::option("backend",
                      "this build has no Gloo (PIX2PIX_WITH_GLOO=OFF): one process only");
}

// Unreachable (no Communicator is ever made): a world of one.
int Communicator::rank() const { return 0; }
int Communicator::world_size() const { return 1; }
void Communicator::broadcast(const std::vector<at::Tensor>&, int) {}
void Communicator::all_reduce_sum(const std::vector<at::Tensor>&, int64_t) {}
void Communicator::all_reduce_mean(const std::vector<at::Tensor>&, int64_t) {}
double Communicator::all_reduce_max(double value) { return value; }
void Communicator::barrier() {}

#endif

}  // namespace pix2pix
