// The threaded batch loader. Workers claim whole batches in epoch order (at most `prefetch`
// batches ahead of the consumer), build them and file them under their batch number; next()
// waits for the batch it is due to return. Every random choice comes from (seed, epoch,
// position), so which worker builds a batch, and when, never changes its contents.
#include "pix2pix/data/loader.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <numeric>
#include <thread>

#include "pix2pix/error.h"

namespace pix2pix {

namespace {

// Keeps the shuffle's stream apart from the samples' (positions never reach this value).
constexpr uint64_t kShuffleStream = ~uint64_t{0};

// A batch built by a worker, or the exception that stopped it.
struct Built {
  std::optional<Batch> batch;
  std::exception_ptr error;
};

std::string shape_text(const at::Tensor& tensor) {
  std::string text;
  for (int64_t size : tensor.sizes()) text += (text.empty() ? "" : "x") + std::to_string(size);
  return text;
}

// Makes ATen run single-threaded on the calling (worker) thread only. A worker's tensors are
// small, and an OpenMP team per worker oversubscribes the cores: on 2 busy cores the loader fell
// to 2-20 images/s from ~200 with OpenMP barriers waiting for descheduled threads.
// at::set_num_threads cannot do this: it also sets the process-wide count that threads adopt on
// their first parallel op (the training thread included). OpenMP's own setting is per thread;
// it is looked up at run time because libgomp comes in through libtorch, not our link line
// (a libtorch without OpenMP has no such function and needs nothing here).
void use_one_intra_op_thread() {
  (void)at::get_num_threads();  // ATen's lazy per-thread init first, or it would undo the next line
  using SetNumThreads = void (*)(int);
  static const auto set_num_threads =
      reinterpret_cast<SetNumThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  if (set_num_threads != nullptr) set_num_threads(1);
}

}  // namespace

uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t position) {
  return mix_seed(seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(position));
}

std::vector<size_t> epoch_order(size_t size, uint64_t seed, int64_t epoch, bool shuffle) {
  std::vector<size_t> order(size);
  std::iota(order.begin(), order.end(), size_t{0});
  if (!shuffle) return order;
  // Fisher-Yates on our own generator (never torch's global one, which dropout uses).
  SplitMix64 random(mix_seed(seed, static_cast<uint64_t>(epoch), kShuffleStream));
  for (size_t i = size; i > 1; --i) std::swap(order[i - 1], order[random.below(i)]);
  return order;
}

struct Loader::State {
  std::shared_ptr<const Dataset> dataset;
  TransformOptions transform;
  LoaderOptions options;

  // Guarded by `mutex`.
  std::mutex mutex;
  std::condition_variable work_ready;   // workers wait for a batch they may claim
  std::condition_variable batch_ready;  // next() waits for the batch it is due to return
  bool stop = false;
  int64_t epoch = -1;
  std::vector<size_t> order;
  int64_t batches = 0;         // in the current epoch
  int64_t first_position = 0;  // where the current epoch's batches start in `order`
  int64_t next_claim = 0;      // the next batch a worker builds
  int64_t next_deliver = 0;    // the next batch next() returns
  std::map<int64_t, Built> built;

  // Read without the lock by workers to abandon stale work early.
  std::atomic<uint64_t> generation{0};  // bumped by start_epoch and the destructor
  std::atomic<bool> stopping{false};

  // The decoded-sample cache (options.cache).
  std::mutex cache_mutex;
  std::vector<std::shared_ptr<const Sample>> cache;

  std::vector<std::thread> threads;
  int threads_ready = 0;  // workers past their ATen set-up (guarded by `mutex`)

  std::shared_ptr<const Sample> load(size_t index) {
    if (!options.cache) return std::make_shared<const Sample>(dataset->load(index));
    {
      std::lock_guard<std::mutex> lock(cache_mutex);
      if (cache[index]) return cache[index];
    }
    // Decode outside the lock; if two threads race on one index, the first stored copy wins.
    auto sample = std::make_shared<const Sample>(dataset->load(index));
    std::lock_guard<std::mutex> lock(cache_mutex);
    if (!cache[index]) cache[index] = std::move(sample);
    return cache[index];
  }

  // Builds the batch of `indices`, the first at `first_position` of `epoch`'s order. Returns
  // nullopt when the work became stale (new epoch or shutdown) before it was done.
  std::optional<Batch> build(int64_t epoch_number, int64_t first_position,
                             const std::vector<size_t>& indices, uint64_t for_generation) {
    const bool a_to_b = dataset->options().direction == Direction::kAtoB;
    std::vector<at::Tensor> inputs, targets;
    Batch batch;
    for (size_t i = 0; i < indices.size(); ++i) {
      if (stopping.load() || generation.load() != for_generation) return std::nullopt;
      const size_t index = indices[i];
      const std::shared_ptr<const Sample> sample = load(index);
      const DatasetEntry& entry = dataset->entry(index);
      const std::string& path_a = entry.path_a;
      const std::string& path_b = entry.path_b.empty() ? entry.path_a : entry.path_b;
      const std::string& input_path = a_to_b ? path_a : path_b;
      const std::string& target_path = a_to_b ? path_b : path_a;

      const TransformParams params = draw_transform_params(
          transform, sample->input.width, sample->input.height,
          sample_seed(options.seed, epoch_number, first_position + static_cast<int64_t>(i)));
      inputs.push_back(apply_transform(sample->input, transform, params, input_path));
      if (!sample->target.empty())
        targets.push_back(apply_transform(sample->target, transform, params, target_path));
      if (!inputs.front().sizes().equals(inputs.back().sizes()) ||
          (!targets.empty() && (targets.size() != inputs.size() ||
                                !targets.front().sizes().equals(targets.back().sizes())))) {
        const bool input_differs = !inputs.front().sizes().equals(inputs.back().sizes());
        const at::Tensor& first = input_differs ? inputs.front() : targets.front();
        const at::Tensor& last = input_differs ? inputs.back() : targets.back();
        throw Error(input_differs ? input_path : target_path,
                    "transformed to " + shape_text(last) + " (CxHxW), but the batch's first " +
                        "sample (" + batch.names.front() + ") is " + shape_text(first) +
                        ": use a preprocess mode with a crop, or batch size 1");
      }
      batch.names.push_back(sample->name);
      batch.indices.push_back(index);
    }
    batch.input = at::stack(inputs);
    if (!targets.empty()) batch.target = at::stack(targets);
    return batch;
  }

  // Where batch `number` of the current epoch starts in `order`: this rank's slice of the
  // global batch (call with `mutex` held).
  int64_t batch_begin(int64_t number) const {
    return first_position + (number * options.world_size + options.rank) * options.batch_size;
  }

  // The indices of batch `number` of the current epoch (call with `mutex` held).
  std::vector<size_t> batch_indices(int64_t number) const {
    const int64_t begin = batch_begin(number);
    const int64_t end =
        std::min<int64_t>(begin + options.batch_size, static_cast<int64_t>(order.size()));
    return std::vector<size_t>(order.begin() + begin, order.begin() + end);
  }

  void start(int64_t epoch_number, int64_t first) {
    std::lock_guard<std::mutex> lock(mutex);
    generation.fetch_add(1);
    epoch = epoch_number;
    order = epoch_order(dataset->size(), options.seed, epoch_number, options.shuffle);
    first_position = std::clamp<int64_t>(first, 0, static_cast<int64_t>(order.size()));
    const int64_t size = static_cast<int64_t>(order.size()) - first_position;
    if (options.world_size > 1)
      batches = size / (options.batch_size * options.world_size);
    else
      batches = options.drop_last ? size / options.batch_size
                                  : (size + options.batch_size - 1) / options.batch_size;
    next_claim = 0;
    next_deliver = 0;
    built.clear();
    work_ready.notify_all();
  }

  void work() {
    use_one_intra_op_thread();
    std::unique_lock<std::mutex> lock(mutex);
    ++threads_ready;
    batch_ready.notify_all();
    for (;;) {
      work_ready.wait(lock, [this] {
        return stop || (next_claim < batches && next_claim < next_deliver + options.prefetch);
      });
      if (stop) return;
      const int64_t number = next_claim++;
      const int64_t begin = batch_begin(number);
      const uint64_t for_generation = generation.load();
      const int64_t epoch_number = epoch;
      const std::vector<size_t> indices = batch_indices(number);
      lock.unlock();

      Built result;
      try {
        result.batch = build(epoch_number, begin, indices, for_generation);
      } catch (...) {
        result.error = std::current_exception();
      }

      lock.lock();
      if (generation.load() == for_generation && (result.batch || result.error)) {
        built.emplace(number, std::move(result));
        batch_ready.notify_all();
      }
    }
  }
};

Loader::Loader(std::shared_ptr<const Dataset> dataset, TransformOptions transform,
               LoaderOptions options)
    : state_(std::make_unique<State>()) {
  if (!dataset) throw Error("Loader", "no dataset");
  if (options.batch_size < 1)
    throw Error::option("batch_size",
                        "must be at least 1, got " + std::to_string(options.batch_size));
  if (options.workers < 0)
    throw Error::option("workers", "must be 0 or more, got " + std::to_string(options.workers));
  if (options.prefetch < 1)
    throw Error::option("prefetch", "must be at least 1, got " + std::to_string(options.prefetch));
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size)
    throw Error("Loader", "rank " + std::to_string(options.rank) + " is not in a world of " +
                              std::to_string(options.world_size));
  validate(transform);
  state_->dataset = std::move(dataset);
  state_->transform = transform;
  state_->options = options;
  if (options.cache) state_->cache.resize(state_->dataset->size());
  State* state = state_.get();
  try {
    for (int i = 0; i < options.workers; ++i)
      state->threads.emplace_back([state] { state->work(); });
  } catch (...) {  // no destructor runs for a half-built Loader: stop what started
    stop_workers();
    throw Error("Loader", "cannot start " + std::to_string(options.workers) + " worker threads",
                ErrorKind::kRuntime);
  }
  // Return only once every worker has set up ATen's per-thread state: libtorch 1.13 does that
  // lazily on a thread's first parallel op, and it resets process-wide pools (pthreadpool, the
  // oneDNN primitive cache) that the training thread may be using by then.
  std::unique_lock<std::mutex> lock(state_->mutex);
  state->batch_ready.wait(
      lock, [state] { return state->threads_ready == static_cast<int>(state->threads.size()); });
}

Loader::~Loader() { stop_workers(); }

void Loader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stop = true;
    state_->stopping.store(true);
    state_->generation.fetch_add(1);
  }
  state_->work_ready.notify_all();
  for (auto& thread : state_->threads) thread.join();
  state_->threads.clear();
}

void Loader::start_epoch(int64_t epoch, int64_t first_position) {
  state_->start(epoch, first_position);
}

std::optional<Batch> Loader::next() {
  State& state = *state_;
  if (state.epoch < 0) state.start(0, 0);
  std::unique_lock<std::mutex> lock(state.mutex);
  if (state.next_deliver >= state.batches) return std::nullopt;
  const int64_t number = state.next_deliver;

  if (state.options.workers == 0) {  // build it here; errors propagate directly
    ++state.next_deliver;
    const std::vector<size_t> indices = state.batch_indices(number);
    const int64_t begin = state.batch_begin(number);
    const int64_t epoch = state.epoch;
    const uint64_t generation = state.generation.load();
    lock.unlock();
    return state.build(epoch, begin, indices, generation);
  }

  state.batch_ready.wait(lock, [&] { return state.built.count(number) > 0; });
  Built result = std::move(state.built.at(number));
  state.built.erase(number);
  ++state.next_deliver;
  lock.unlock();
  state.work_ready.notify_all();
  if (result.error) std::rethrow_exception(result.error);
  return std::move(result.batch);
}

int64_t Loader::batches_per_epoch() const {
  const auto size = static_cast<int64_t>(state_->dataset->size());
  const int64_t batch_size = state_->options.batch_size;
  if (state_->options.world_size > 1) return size / (batch_size * state_->options.world_size);
  return state_->options.drop_last ? size / batch_size : (size + batch_size - 1) / batch_size;
}

size_t Loader::size() const { return state_->dataset->size(); }

int64_t Loader::epoch() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->epoch;
}

std::vector<size_t> Loader::order() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->order;
}

const TransformOptions& Loader::transform_options() const { return state_->transform; }
const LoaderOptions& Loader::options() const { return state_->options; }
const Dataset& Loader::dataset() const { return *state_->dataset; }

std::vector<BadEntry> scan_entries(const Dataset& dataset, const TransformOptions& transform) {
  validate(transform);
  std::vector<BadEntry> bad;
  for (size_t i = 0; i < dataset.size(); ++i) {
    try {
      const auto [width, height] = dataset.probe(i);
      check_fits(transform, width, height, dataset.entry(i).path_a);
    } catch (const Error& error) {
      bad.push_back({i, error.what()});
    }
  }
  return bad;
}

}  // namespace pix2pix
