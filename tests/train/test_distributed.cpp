// Data-parallel training: the Communicator's collectives and SyncBatchNorm2d with ranks as
// threads of this process (Gloo over a FileStore), the loader's shards, and `pix2pix train`
// run as 2 processes (by `pix2pix launch` or by hand with the environment variables): the same
// weights as one process with the combined batch, rank 0 alone writing, a killed rank failing
// the other within --dist-timeout, and resuming with another number of ranks.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "pix2pix/data/dataset.h"
#include "pix2pix/data/loader.h"
#include "pix2pix/error.h"
#include "pix2pix/io/pytorch_import.h"
#include "pix2pix/models/compute.h"
#include "pix2pix/models/discriminator.h"
#include "pix2pix/models/generator.h"
#include "pix2pix/models/init.h"
#include "pix2pix/models/sync_batch_norm.h"
#include "pix2pix/train/distributed.h"
#include "pix2pix/train/trainer.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace pix2pix {
namespace {

// Runs `body(communicator)` on `world_size` threads, each a rank of one Gloo group.
void run_ranks(int world_size, const std::function<void(Communicator&)>& body) {
  const std::string store = test::temp_dir() + "/store";
  std::vector<std::thread> threads;
  std::vector<std::string> errors(world_size);
  for (int rank = 0; rank < world_size; ++rank)
    threads.emplace_back([&, rank] {
      try {
        auto communicator = Communicator::connect_file(store, rank, world_size, 60);
        body(*communicator);
      } catch (const std::exception& error) {
        errors[rank] = error.what();
      }
    });
  for (auto& thread : threads) thread.join();
  for (int rank = 0; rank < world_size; ++rank) EXPECT_EQ(errors[rank], "") << "rank " << rank;
}

// A TCP port nobody listens on now.
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

// The largest difference between two state_dicts' values, over the keys `include` accepts.
double max_difference(const StateDict& a, const StateDict& b,
                      const std::function<bool(const std::string&)>& include = nullptr) {
  EXPECT_EQ(a.size(), b.size());
  double difference = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    if (include && !include(a[i].first)) continue;
    if (!a[i].second.is_floating_point()) {
      EXPECT_TRUE(a[i].second.equal(b[i].second)) << a[i].first;
      continue;
    }
    const double here = (a[i].second - b[i].second).abs().max().item<double>();
    difference = std::max(difference, here);
  }
  return difference;
}

TEST(Communicator, BucketedAllReduceAndBroadcast) {
  run_ranks(3, [](Communicator& group) {
    const double r = group.rank();
    // Two dtypes, sizes that straddle a 64-byte bucket, one tensor larger than a bucket.
    std::vector<at::Tensor> tensors = {at::full({3}, r, at::kFloat), at::full({40}, r + 1),
                                       at::full({2, 2}, 10 * r, at::kDouble),
                                       at::full({5}, static_cast<int64_t>(r), at::kLong)};
    group.all_reduce_sum(tensors, 64);
    EXPECT_TRUE(tensors[0].equal(at::full({3}, 3.0, at::kFloat)));  // 0 + 1 + 2
    EXPECT_TRUE(tensors[1].equal(at::full({40}, 6.0)));
    EXPECT_TRUE(tensors[2].equal(at::full({2, 2}, 30.0, at::kDouble)));
    EXPECT_TRUE(tensors[3].equal(at::full({5}, 3, at::kLong)));
    at::Tensor mean = at::full({7}, r);
    group.all_reduce_mean({mean}, 8);
    EXPECT_TRUE(mean.allclose(at::full({7}, 1.0)));
    EXPECT_EQ(group.all_reduce_max(r == 1 ? 5.0 : -1.0), 5.0);
    std::vector<at::Tensor> broadcast = {at::full({4}, r), at::full({2}, r, at::kDouble)};
    group.broadcast(broadcast, /*root=*/2);
    EXPECT_TRUE(broadcast[0].equal(at::full({4}, 2.0)));
    EXPECT_TRUE(broadcast[1].equal(at::full({2}, 2.0, at::kDouble)));
    group.barrier();
  });
}

TEST(Communicator, RejectsNcclOnThisBuild) {
  DistributedOptions options;
  options.backend = "nccl";
  try {
    Communicator::connect(options);
    FAIL() << "nccl accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("CPU only"), std::string::npos) << error.what();
  }
}

TEST(SyncBatchNorm, OneProcessIsBatchNorm2d) {
  torch::manual_seed(1);
  SyncBatchNorm2d sync(5);
  torch::nn::BatchNorm2d reference(5);
  std::vector<std::string> sync_keys, reference_keys;
  for (const auto& [key, value] : module_state_dict(*sync)) sync_keys.push_back(key);
  for (const auto& [key, value] : module_state_dict(*reference)) reference_keys.push_back(key);
  EXPECT_EQ(sync_keys, reference_keys);
  {
    torch::NoGradGuard no_grad;
    sync->weight.normal_(1, 0.2);
    sync->bias.normal_(0, 0.2);
    reference->weight.copy_(sync->weight);
    reference->bias.copy_(sync->bias);
  }
  for (int pass = 0; pass < 2; ++pass) {
    const at::Tensor x = torch::randn({4, 5, 6, 7}) * 3 + 1;
    const at::Tensor gradient = torch::randn({4, 5, 6, 7});
    const at::Tensor x1 = x.clone().requires_grad_(), x2 = x.clone().requires_grad_();
    const at::Tensor y1 = sync->forward(x1), y2 = reference->forward(x2);
    (y1 * gradient).sum().backward();
    (y2 * gradient).sum().backward();
    EXPECT_TRUE(y1.equal(y2));
    EXPECT_TRUE(x1.grad().equal(x2.grad()));
    EXPECT_TRUE(sync->weight.grad().equal(reference->weight.grad()));
  }
  EXPECT_TRUE(sync->running_mean.equal(reference->running_mean));
  EXPECT_TRUE(sync->running_var.equal(reference->running_var));
  EXPECT_EQ(sync->num_batches_tracked.item<int64_t>(), 2);
  sync->eval();
  reference->eval();
  const at::Tensor x = torch::randn({2, 5, 3, 3});
  EXPECT_TRUE(sync->forward(x).equal(reference->forward(x)));
}

TEST(SyncBatchNorm, TwoRanksAreBatchNormOfTheCombinedBatch) {
  torch::manual_seed(2);
  const int64_t channels = 3;
  // Unequal halves (3 and 1 samples): the statistics must weigh samples, not ranks.
  const at::Tensor x = torch::randn({4, channels, 5, 6}) * 2 - 0.5;
  const at::Tensor gradient = torch::randn({4, channels, 5, 6});
  const at::Tensor weight = torch::rand({channels}) + 0.5, bias = torch::randn({channels});
  const int64_t split[2][2] = {{0, 3}, {3, 1}};

  torch::nn::BatchNorm2d reference(channels);
  {
    torch::NoGradGuard no_grad;
    reference->weight.copy_(weight);
    reference->bias.copy_(bias);
  }
  const at::Tensor reference_x = x.clone().requires_grad_();
  const at::Tensor reference_y = reference->forward(reference_x);
  (reference_y * gradient).sum().backward();

  std::vector<at::Tensor> y(2), x_grad(2), weight_grad(2), bias_grad(2), mean(2), var(2);
  run_ranks(2, [&](Communicator& group) {
    const int rank = group.rank();
    SyncBatchNorm2d norm(channels);
    std::shared_ptr<Communicator> borrowed(&group, [](Communicator*) {});
    EXPECT_EQ(set_communicator(*norm, borrowed), 0);  // the module itself is not a child
    norm->set_communicator(borrowed);
    {
      torch::NoGradGuard no_grad;
      norm->weight.copy_(weight);
      norm->bias.copy_(bias);
    }
    const at::Tensor local_x = x.narrow(0, split[rank][0], split[rank][1]).clone().requires_grad_();
    y[rank] = norm->forward(local_x);
    (y[rank] * gradient.narrow(0, split[rank][0], split[rank][1])).sum().backward();
    x_grad[rank] = local_x.grad();
    weight_grad[rank] = norm->weight.grad();
    bias_grad[rank] = norm->bias.grad();
    mean[rank] = norm->running_mean.clone();
    var[rank] = norm->running_var.clone();
  });
  ASSERT_TRUE(y[0].defined() && y[1].defined());
  const double tolerance = 1e-5;
  EXPECT_LE((at::cat(y) - reference_y).abs().max().item<double>(), tolerance);
  EXPECT_LE((at::cat(x_grad) - reference_x.grad()).abs().max().item<double>(), tolerance);
  // Each rank's parameter gradients are its own share; data parallelism sums (averages) them.
  EXPECT_LE((weight_grad[0] + weight_grad[1] - reference->weight.grad()).abs().max().item<double>(),
            tolerance);
  EXPECT_LE((bias_grad[0] + bias_grad[1] - reference->bias.grad()).abs().max().item<double>(),
            tolerance);
  for (int rank = 0; rank < 2; ++rank) {
    EXPECT_LE((mean[rank] - reference->running_mean).abs().max().item<double>(), tolerance);
    EXPECT_LE((var[rank] - reference->running_var).abs().max().item<double>(), tolerance);
  }
  // Not batch norm of each half alone (which the test would otherwise not tell apart).
  torch::nn::BatchNorm2d alone(channels);
  EXPECT_GT((alone->forward(x.narrow(0, 3, 1)) - y[1]).abs().max().item<double>(), 0.01);
}

// bf16 training leaves convolution weight gradients in bfloat16: the ranks average them in
// float32 and every rank ends each step with the same weights, which equal one process's step on
// the combined batch (up to the order of float32 additions).
TEST(DistributedStep, Bf16GradientsAreAveragedInFloat32) {
  PIX2PIX_SKIP_WITHOUT_BF16();
  auto make_step = [] {
    torch::manual_seed(5);
    GeneratorOptions g_options;
    g_options.net = "unet";
    g_options.num_downs = 5;
    g_options.ngf = 8;
    g_options.norm = Norm::kNone;
    g_options.dropout = false;
    auto generator = make_generator(g_options);
    init_weights(*generator);
    DiscriminatorOptions d_options;
    d_options.ndf = 8;
    d_options.norm = Norm::kNone;
    auto discriminator = make_discriminator(d_options);
    init_weights(*discriminator);
    ComputeOptions bf16;
    bf16.precision = Precision::kBFloat16;
    set_compute(*generator, bf16);
    set_compute(*discriminator, bf16);
    return std::make_unique<Pix2PixStep>(generator, discriminator, ObjectiveOptions{},
                                         AdamOptions{}, AdamOptions{});
  };
  torch::manual_seed(6);
  const at::Tensor a = torch::rand({2, 3, 32, 32}) * 2 - 1, b = torch::rand({2, 3, 32, 32}) * 2 - 1;
  auto single = make_step();
  for (int i = 0; i < 2; ++i) single->step(a, b);
  const StateDict expected = module_state_dict(single->generator());
  std::vector<StateDict> ranks(2);
  std::vector<std::unique_ptr<Pix2PixStep>> steps;
  for (int rank = 0; rank < 2; ++rank) steps.push_back(make_step());  // seeded: one thread
  const std::string store = test::temp_dir() + "/store";
  std::vector<std::thread> threads;
  std::vector<std::string> errors(2);
  for (int rank = 0; rank < 2; ++rank)
    threads.emplace_back([&, rank] {
      try {
        auto& step = steps[rank];
        step->set_communicator(Communicator::connect_file(store, rank, 2, 60));
        // Each rank's half; the losses' mean over ranks is the mean over the combined batch.
        for (int i = 0; i < 2; ++i) step->step(a.narrow(0, rank, 1), b.narrow(0, rank, 1));
        ranks[rank] = module_state_dict(step->generator());
      } catch (const std::exception& error) {
        errors[rank] = error.what();
      }
    });
  for (auto& thread : threads) thread.join();
  ASSERT_EQ(errors[0], "");
  ASSERT_EQ(errors[1], "");
  EXPECT_EQ(max_difference(ranks[0], ranks[1]), 0.0);  // the ranks agree exactly
  // One process with the batch of 2. bf16 rounding differs with the batch split, and Adam's
  // first steps turn the sign of near-zero gradients into whole steps, so compare the mean
  // change: the ranks' weights differ from one process's far less than either moved.
  auto mean_difference = [](const StateDict& x, const StateDict& y) {
    double sum = 0;
    int64_t count = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      sum += (x[i].second - y[i].second).abs().sum().item<double>();
      count += x[i].second.numel();
    }
    return sum / static_cast<double>(count);
  };
  const StateDict initial = module_state_dict(make_step()->generator());
  const double moved = mean_difference(expected, initial);
  EXPECT_GT(moved, 1e-5);
  EXPECT_LT(mean_difference(ranks[0], expected), 0.1 * moved);  // measured: 0.03
}

// A synthetic aligned dataset of `count` 64x64 training pairs.
std::string make_data(const std::string& dir, int count) {
  const std::string data = dir + "/data";
  const auto result = test::run_cli("data synth --out " + data + " --train " +
                                    std::to_string(count) + " --val 0 --test 0 --size 64");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  return data;
}

TEST(Loader, RankShardsAreTheSingleProcessBatchSplit) {
  const std::string data = make_data(test::temp_dir(), 10);
  DatasetOptions dataset_options;
  dataset_options.root = data;
  auto dataset = std::make_shared<const Dataset>(dataset_options);
  TransformOptions transform;
  transform.load_size = 72;
  transform.crop_height = transform.crop_width = 64;
  LoaderOptions one;
  one.batch_size = 4;
  one.seed = 7;
  one.workers = 0;
  Loader single(dataset, transform, one);
  std::vector<std::unique_ptr<Loader>> ranks;
  for (int rank = 0; rank < 2; ++rank) {
    LoaderOptions options = one;
    options.batch_size = 2;
    options.rank = rank;
    options.world_size = 2;
    options.workers = rank;  // threads or not: the same batches
    ranks.push_back(std::make_unique<Loader>(dataset, transform, options));
  }
  EXPECT_EQ(ranks[0]->batches_per_epoch(), 2);  // 10 samples: the incomplete global batch drops
  for (int64_t epoch = 3; epoch < 5; ++epoch) {
    // Resuming after 4 samples (of any world size) goes on with the 5th.
    const int64_t first = epoch == 4 ? 4 : 0;
    single.start_epoch(epoch, first);
    for (auto& rank : ranks) rank->start_epoch(epoch, first);
    int64_t batches = 0;
    while (auto batch = single.next()) {
      if (batch->input.size(0) < 4) break;
      auto a = ranks[0]->next(), b = ranks[1]->next();
      ASSERT_TRUE(a && b);
      EXPECT_TRUE(at::cat({a->input, b->input}).equal(batch->input));
      EXPECT_TRUE(at::cat({a->target, b->target}).equal(batch->target));
      ++batches;
    }
    EXPECT_EQ(batches, epoch == 4 ? 1 : 2);
    EXPECT_FALSE(ranks[0]->next());
    EXPECT_FALSE(ranks[1]->next());
  }
}

// Tiny networks, no dropout, instance norm: a step depends only on its samples.
const char* kTinyTrain =
    " --netG unet --num-downs 6 --ngf 8 --ndf 8 --norm instance --no-dropout --load-size 72"
    " --crop-size 64 --no-validate --print-every 1 --sample-every 0 --seed 3 --workers 1";

std::string environment(int rank, int world_size, int port) {
  return "env RANK=" + std::to_string(rank) + " WORLD_SIZE=" + std::to_string(world_size) +
         " MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) + " ";
}

TEST(DistributedTrain, TwoRanksGiveTheWeightsOfOneProcessWithTheCombinedBatch) {
  const std::string dir = test::temp_dir();
  const std::string data = make_data(dir, 8);
  // No normalisation: with instance norm, the biases of the convolutions before each norm have a
  // gradient that is zero but for float rounding (the norm subtracts any shift), and Adam's
  // normalised step turns that noise into moves of up to lr per step, which differ with the
  // batching (measured: up to 1.4e-3 after 5 steps, every other weight within 1.2e-5).
  const std::string common =
      "--data " + data + " --runs-dir " + dir + "/runs" + kTinyTrain + " --norm none";
  const auto two = test::run_cli("launch --nproc 2 --master-port " + std::to_string(free_port()) +
                                 " -- train --name two --batch-size 1 --max-steps 5 " + common);
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_NE(two.output.find("data parallel: 2 ranks (gloo), batch 1 per rank"), std::string::npos)
      << two.output;
  const auto one = test::run_cli("train --name one --batch-size 2 --max-steps 5 " + common);
  ASSERT_EQ(one.exit_code, 0) << one.output;
  const auto alone = test::run_cli("train --name alone --batch-size 1 --max-steps 5 " + common);
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  for (const std::string net : {"G", "D"}) {
    const std::string file = "/checkpoints/latest_net_" + net + ".pth";
    const StateDict two_ranks = read_state_dict(dir + "/runs/two" + file);
    const double difference = max_difference(two_ranks, read_state_dict(dir + "/runs/one" + file));
    EXPECT_LE(difference, 1e-5) << net;
    // The comparison can tell: one rank's batch alone trains to other weights.
    EXPECT_GT(max_difference(two_ranks, read_state_dict(dir + "/runs/alone" + file)), 1e-4) << net;
    std::cout << net << ": 2 ranks x batch 1 vs 1 process x batch 2: max |difference| "
              << difference << "\n";
  }
  // The logged losses are the ranks' mean: the one-process batch's to float rounding.
  auto last_train_row = [&](const std::string& name) {
    return test::metrics_rows(dir + "/runs/" + name, "train").back();
  };
  const auto two_row = last_train_row("two"), one_row = last_train_row("one");
  EXPECT_EQ(two_row["step"], 5);
  EXPECT_EQ(two_row["world_size"], 2);
  EXPECT_NEAR(two_row["G_L1"].get<double>(), one_row["G_L1"].get<double>(), 1e-5);
  EXPECT_NEAR(two_row["D_real"].get<double>(), one_row["D_real"].get<double>(), 1e-5);
}

TEST(DistributedTrain, OnlyRankZeroWritesTheRun) {
  // Each rank is told another --runs-dir: whatever a rank writes shows up in its own.
  const std::string dir = test::temp_dir();
  const std::string data = make_data(dir, 4);
  const int port = free_port();
  const std::string args = " train --data " + data + " --name run --batch-size 1 --max-steps 3" +
                           " --save-every-steps 1" + kTinyTrain + " --norm syncbatch";
  const std::string cli = test::shell_quote(test::cli_path());
  const auto result = test::run_command(
      environment(1, 2, port) + cli + args + " --runs-dir " + dir + "/rank1 > " + dir +
      "/rank1.log 2>&1 & p1=$!; " + environment(0, 2, port) + cli + args + " --runs-dir " + dir +
      "/rank0; s0=$?; wait $p1; s1=$?; cat " + dir + "/rank1.log; echo \"status $s0 $s1\"");
  EXPECT_NE(result.output.find("status 0 0"), std::string::npos) << result.output;
  for (const char* file : {"options.json", "model.txt", "metrics.jsonl", "report.html", "tb",
                           "checkpoints/latest_net_G.pth", "checkpoints/latest_state.pt"})
    EXPECT_TRUE(fs::exists(dir + "/rank0/run/" + file)) << file;
  size_t written = 0;
  if (fs::exists(dir + "/rank1"))
    for (const auto& entry : fs::recursive_directory_iterator(dir + "/rank1"))
      if (entry.is_regular_file()) {
        ADD_FAILURE() << "rank 1 wrote " << entry.path();
        ++written;
      }
  EXPECT_EQ(written, 0u);
  // Rank 1 printed nothing (rank 0 reports for all).
  EXPECT_EQ(result.output.find("done:"), result.output.rfind("done:")) << result.output;
  // syncbatch: BatchNorm2d's keys in the checkpoint.
  const StateDict g = read_state_dict(dir + "/rank0/run/checkpoints/latest_net_G.pth");
  bool has_running_var = false;
  for (const auto& [key, value] : g)
    has_running_var |= key.size() > 12 && key.substr(key.size() - 12) == ".running_var";
  EXPECT_TRUE(has_running_var);
}

TEST(DistributedTrain, AKilledRankFailsTheOtherWithinTheTimeout) {
  const std::string dir = test::temp_dir();
  const std::string data = make_data(dir, 4);
  const int port = free_port();
  const std::string cli = test::shell_quote(test::cli_path());
  const std::string args = " train --data " + data + " --runs-dir " + dir +
                           "/runs --name run --batch-size 1 --max-steps 100000 " +
                           "--dist-timeout 10 --no-report --no-tensorboard" + kTinyTrain;
  const std::string metrics = dir + "/runs/run/metrics.jsonl";
  // Rank 1 is killed once training has begun; rank 0 must then fail on its own, well before
  // the test's own limit (the `timeout 120`).
  const auto result = test::run_command(
      environment(1, 2, port) + cli + args + " > /dev/null 2>&1 & p1=$!; " + "timeout 120 " +
      environment(0, 2, port) + cli + args + " > " + dir + "/rank0.log 2>&1 & p0=$!; " +
      "for i in $(seq 600); do grep -q '\"train\"' " + metrics +
      " 2>/dev/null && break; sleep 0.1; done; kill -9 $p1; start=$(date +%s.%N); wait $p0; "
      "s0=$?; end=$(date +%s.%N); cat " +
      dir +
      "/rank0.log; echo \"status $s0 seconds $(awk "
      "\"BEGIN {print $end - $start}\")\"");
  EXPECT_NE(result.output.find("status 1 seconds"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("error: distributed: rank 0: "), std::string::npos) << result.output;
  const size_t at = result.output.find("seconds ");
  ASSERT_NE(at, std::string::npos);
  const double seconds = std::stod("0" + result.output.substr(at + 8));
  EXPECT_LT(seconds, 15.0) << result.output;
  std::cout << "rank 0 failed " << seconds << " s after rank 1 was killed\n";
}

TEST(DistributedTrain, LaunchNamesTheRankThatFailedAndStopsTheOthers) {
  const std::string dir = test::temp_dir();
  const std::string data = make_data(dir, 4);
  const std::string cli = test::shell_quote(test::cli_path());
  const std::string metrics = dir + "/runs/run/metrics.jsonl";
  // Kill rank 1 (the launcher's second child) once training runs.
  const auto result = test::run_command(
      cli + " launch --nproc 2 --master-port " + std::to_string(free_port()) + " -- train --data " +
      data + " --runs-dir " + dir +
      "/runs --name run --batch-size 1 --max-steps 100000 --dist-timeout 10 --no-report" +
      kTinyTrain + " > " + dir + "/launch.log 2>&1 & p=$!; " +
      "for i in $(seq 600); do grep -q '\"train\"' " + metrics +
      " 2>/dev/null && break; sleep 0.1; done; "
      "kill -9 $(cut -d' ' -f2 /proc/$p/task/$p/children); wait $p; s=$?; cat " +
      dir + "/launch.log; echo \"status $s\"");
  EXPECT_NE(result.output.find("error: launch: rank 1 of 2 was killed by signal 9"),
            std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("status 1"), std::string::npos) << result.output;
}

TEST(DistributedTrain, ResumesWithAnotherNumberOfRanks) {
  const std::string dir = test::temp_dir();
  const std::string data = make_data(dir, 12);
  const std::string common =
      " --data " + data + " --runs-dir " + dir + "/runs --name run --batch-size 1" + kTinyTrain;
  const auto two = test::run_cli("launch --nproc 2 --master-port " + std::to_string(free_port()) +
                                 " -- train --max-steps 4" + common);
  ASSERT_EQ(two.exit_code, 0) << two.output;
  auto state_value = [&](const std::string& key) {
    for (const auto& [name, value] : read_state_dict(dir + "/runs/run/checkpoints/latest_state.pt"))
      if (name == key) return value.item<int64_t>();
    return int64_t{-1};
  };
  EXPECT_EQ(state_value("global_step"), 4);
  EXPECT_EQ(state_value("epoch_samples"), 8);  // 4 steps x 2 ranks
  const auto one = test::run_cli("train --resume --max-steps 6" + common);
  ASSERT_EQ(one.exit_code, 0) << one.output;
  EXPECT_NE(one.output.find("resuming"), std::string::npos) << one.output;
  EXPECT_EQ(state_value("global_step"), 6);
  EXPECT_EQ(state_value("epoch_samples"), 10);  // on from the 9th sample, one at a time
  // And back to 2 ranks: the epoch's last 2 samples, then the next epoch.
  const auto again = test::run_cli("launch --nproc 2 --master-port " + std::to_string(free_port()) +
                                   " -- train --resume --max-steps 8" + common);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(state_value("global_step"), 8);
  EXPECT_EQ(state_value("epoch"), 2);
  EXPECT_EQ(state_value("epoch_samples"), 2);
}

TEST(DistributedTrain, RejectsNcclAndBadEnvironment) {
  const std::string dir = test::temp_dir();
  const std::string data = make_data(dir, 2);
  const std::string args = "train --data " + data + " --runs-dir " + dir + "/runs" + kTinyTrain;
  const auto nccl = test::run_cli(args + " --dist-backend nccl");
  EXPECT_EQ(nccl.exit_code, 2) << nccl.output;
  EXPECT_NE(nccl.output.find("error: --dist-backend: nccl needs CUDA"), std::string::npos)
      << nccl.output;
  const auto bad = test::run_command("env WORLD_SIZE=2 RANK=5 " +
                                     test::shell_quote(test::cli_path()) + " " + args);
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("error: environment variable RANK: '5' is not a number in 0..1"),
            std::string::npos)
      << bad.output;
  const auto empty = test::run_cli("launch --nproc 2");
  EXPECT_EQ(empty.exit_code, 2) << empty.output;
}

}  // namespace
}  // namespace pix2pix
