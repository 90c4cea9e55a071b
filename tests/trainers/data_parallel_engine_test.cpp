// The trainer's data-parallel contract (trainers/trainer.h), in one process:
// two threads are two ranks of a c10d Gloo group (file rendezvous), each with
// its own method, loader shard and trainer. A local loss (means over this
// rank's rows) and a global one (gathered rows and means over ranks) both
// follow one trainer on the whole batch; a global loss that mixes in a local
// term is refused on every rank, naming the method.
#include <gtest/gtest.h>

#include <optional>

#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>
#include <string>
#include <thread>

#include "csrc/core/device.h"
#include "csrc/core/distributed.h"
#include "csrc/core/error.h"
#include "csrc/core/signals.h"
#include "trainers/trainer.h"
#include "tests/util/train_util.h"

namespace fs = std::filesystem;
using namespace hashlab;

namespace {

enum class Mode { local, global, mixed };

// A linear map trained on a squared error to one-hot targets (a mean over
// items) plus, in the global modes, a pairwise term over the whole batch.
class PairToy : public StepMethod {
 public:
  explicit PairToy(Mode mode) : mode_(mode), net_(torch::nn::Linear(16, 8)) {}
  std::string name() const override { return "pair_toy"; }
  int nbits() const override { return 8; }
  std::vector<ParamGroup> param_groups() override { return {{"all", net_->parameters(), 1, 1}}; }
  bool supports_data_parallel() const override { return true; }
  // Local only in the local mode; `declared` overrides it (a wrong declaration).
  LossScope training_loss_scope() const override {
    if (declared) return *declared;
    return mode_ == Mode::local ? LossScope::local : LossScope::global;
  }
  LossMap training_step(const Batch& b, StepContext& c) override {
    DataParallel& t = c.dp();
    auto h = torch::tanh(net_->forward(b.x));
    auto target = torch::nn::functional::one_hot(b.labels, 8).to(torch::kFloat32) * 2 - 1;
    auto mse = (h - target).pow(2).mean();
    if (mode_ == Mode::local) return {{"loss", mse}, {"mse", mse.detach()}};
    if (mode_ == Mode::global) mse = t.mean_over_ranks(mse);
    auto g = t.all_gather(h);
    auto s = t.all_gather(b.labels).unsqueeze(1).eq(t.all_gather(b.labels).unsqueeze(0));
    auto ip = torch::mm(g, g.t()) / 8.0;
    auto pairs = (ip - (s.to(torch::kFloat32) * 2 - 1)).pow(2).mean();
    return {{"loss", mse + pairs}, {"mse", mse.detach()}, {"pairs", pairs.detach()}};
  }
  LossMap step(const Batch& b, StepContext& c) override {
    LossMap l = StepMethod::step(b, c);
    std::vector<double> v;
    for (const auto& kv : l) v.push_back(kv.second.item<double>());
    logged.push_back(v);
    return l;
  }
  std::optional<LossScope> declared;
  torch::nn::Module* module() override { return net_.ptr().get(); }
  torch::Tensor embed(const torch::Tensor& x) override { return net_->forward(x); }
  void save(torch::serialize::OutputArchive& a) const override { net_->save(a); }
  void load(torch::serialize::InputArchive& a) override { net_->load(a); }

  Mode mode_;
  torch::nn::Linear net_;
  std::vector<std::vector<double>> logged;  // every step's logged values
};

using hashlab::testing::toy_dataset;

TrainOptions opts(int64_t batch) {
  TrainOptions t;
  t.iterations = 25;
  t.batch_size = batch;
  t.log_every = 1000;
  t.checkpoint_every = 0;
  return t;
}

OptimOptions sgd() {
  OptimOptions o;
  o.lr = 0.05;
  o.momentum = 0.9;
  o.schedule = "constant";
  return o;
}

struct Result {
  std::vector<std::vector<double>> logged;
  torch::Tensor params;
  std::string error;
};

Result run_rank(Mode mode, int rank, int world, const std::string& store) {
  Result r;
  try {
    auto ds = toy_dataset();
    PairToy m(mode);
    {
      torch::NoGradGuard ng;  // the same start everywhere (rank 0's is broadcast anyway)
      auto g = at::make_generator<at::CPUGeneratorImpl>(11);
      for (auto& p : m.net_->parameters())
        p.copy_(at::randn(p.sizes(), g, torch::TensorOptions().dtype(torch::kFloat32)) * 0.3);
    }
    data::LoaderOptions lo;
    lo.batch_size(32).shuffle(true).drop_last(true).seed(3).prefetch(0);
    lo.shard_rank(rank).shard_count(world);
    data::Loader l(ds, torch::arange(200, torch::kLong), lo);
    TrainerSetup setup;
    if (world > 1) {
      dist::DistEnv env;
      env.rank = rank;
      env.world_size = world;
      env.store_file = store;
      env.timeout = std::chrono::milliseconds(60000);
      setup.group = dist::make_gloo_group(env);
    }
    Trainer t(m, &l, opts(32), sgd(), torch::kCPU, setup);
    t.train();
    r.logged = m.logged;
    std::vector<torch::Tensor> ps;
    for (auto& p : m.net_->parameters()) ps.push_back(p.detach().reshape({-1}).clone());
    r.params = torch::cat(ps);
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

std::pair<Result, Result> two_ranks(Mode mode, const std::string& name) {
  const fs::path store =
      fs::temp_directory_path() / ("hl_ddp_engine_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(store);
  Result a, b;
  // Each trainer installs (and restores) the SIGINT handler; an outer guard
  // makes both threads save and restore the same handler, and puts the
  // original back last.
  InterruptGuard outer;
  std::thread t1([&] { b = run_rank(mode, 1, 2, store.string()); });
  a = run_rank(mode, 0, 2, store.string());
  t1.join();
  fs::remove_all(store);
  return {a, b};
}

void expect_follows_one_process(Mode mode, const std::string& name) {
  const Result one = run_rank(mode, 0, 1, "");
  ASSERT_TRUE(one.error.empty()) << one.error;
  auto [r0, r1] = two_ranks(mode, name);
  ASSERT_TRUE(r0.error.empty()) << r0.error;
  ASSERT_TRUE(r1.error.empty()) << r1.error;
  ASSERT_EQ(one.logged.size(), 25u);
  ASSERT_EQ(r0.logged.size(), 25u);
  for (size_t s = 0; s < one.logged.size(); ++s)
    for (size_t k = 0; k < one.logged[s].size(); ++k) {
      // Every logged value is the global batch's on both ranks (a local
      // loss's values are replaced by their means over ranks).
      EXPECT_NEAR(one.logged[s][k], r0.logged[s][k], 1e-5) << "step " << s << " value " << k;
      EXPECT_NEAR(r0.logged[s][k], r1.logged[s][k], 1e-6) << "step " << s << " value " << k;
    }
  EXPECT_TRUE(torch::equal(r0.params, r1.params));
  EXPECT_LT((one.params - r0.params).abs().max().item<double>(), 1e-5);
}

TEST(DataParallelEngine, LocalLossAveragesAndFollowsOneProcess) {
  expect_follows_one_process(Mode::local, "local");
}

TEST(DataParallelEngine, GlobalLossSumsAndFollowsOneProcess) {
  expect_follows_one_process(Mode::global, "global");
}

TEST(DataParallelEngine, AGlobalLossWithALocalTermIsRefusedOnEveryRank) {
  auto [r0, r1] = two_ranks(Mode::mixed, "mixed");
  for (const auto* r : {&r0, &r1}) {
    EXPECT_NE(r->error.find("method 'pair_toy' (optimizer 'model') declared a global loss"),
              std::string::npos)
        << r->error;
    EXPECT_NE(r->error.find("differs across ranks"), std::string::npos) << r->error;
  }
}

TEST(DataParallelEngine, HelpersAreIdentitiesInOneProcess) {
  PairToy m(Mode::local);
  auto ds = toy_dataset();
  data::LoaderOptions lo;
  lo.batch_size(32).prefetch(0);
  data::Loader l(ds, torch::arange(200, torch::kLong), lo);
  Trainer t(m, &l, opts(32), sgd(), torch::kCPU, "", nullptr);
  DataParallel& dp = t.dp();
  auto x = torch::randn({4, 3});
  EXPECT_TRUE(torch::equal(dp.all_gather(x), x));
  EXPECT_TRUE(torch::equal(dp.sum_over_ranks(x), x));
  EXPECT_TRUE(torch::equal(dp.mean_over_ranks(x), x));
  EXPECT_TRUE(torch::equal(dp.local_rows(x), x));
  std::vector<torch::Tensor> v = {x.clone()};
  dp.broadcast(v);
  EXPECT_TRUE(torch::equal(v[0], x));
  EXPECT_EQ(dp.world_size(), 1);
  EXPECT_FALSE(dp.active());
}

// A loss built from gathered rows but declared local is refused where it is
// made, in one process too (no ranks needed to catch the declaration); the
// same loss declared global trains.
TEST(DataParallelEngine, AGatheredLossDeclaredLocalIsRefused) {
  auto ds = toy_dataset();
  data::LoaderOptions lo;
  lo.batch_size(32).prefetch(0);
  for (bool wrong : {true, false}) {
    PairToy m(Mode::global);
    if (wrong) m.declared = LossScope::local;
    data::Loader l(ds, torch::arange(200, torch::kLong), lo);
    Trainer t(m, &l, opts(32), sgd(), torch::kCPU, "", nullptr);
    if (!wrong) {
      EXPECT_NO_THROW(t.train());
      continue;
    }
    try {
      t.train();
      ADD_FAILURE() << "a gathered loss declared local trained";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("method 'pair_toy' (optimizer 'model') declared its loss local"),
                std::string::npos)
          << msg;
      EXPECT_NE(msg.find("LossScope::global"), std::string::npos) << msg;
    }
  }
}

}  // namespace
