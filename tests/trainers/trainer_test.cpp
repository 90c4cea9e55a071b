#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>

#include <ATen/CPUGeneratorImpl.h>

#include "csrc/core/device.h"
#include "csrc/core/error.h"
#include "csrc/core/signals.h"
#include "trainers/optim.h"
#include "trainers/trainer.h"

namespace fs = std::filesystem;
using namespace hashlab;

namespace {

// A tiny method for exercising the loop: linear layer + dropout (so the RNG
// state matters) trained with a pairwise-free squared loss.
class ToyMethod : public Method {
 public:
  explicit ToyMethod(int64_t dim) : net_(torch::nn::Linear(dim, 8)) {}
  std::string name() const override { return "toy"; }
  int nbits() const override { return 8; }
  std::vector<ParamGroup> param_groups() override {
    return {{"w", {net_->weight}, 1.0, 1.0}, {"b", {net_->bias}, 10.0, 0.0}};
  }
  LossMap training_step(const Batch& b, Trainer& t) override {
    auto h = torch::dropout(net_->forward(b.x), 0.3, true);
    auto target = torch::nn::functional::one_hot(b.labels, 8).to(torch::kFloat32) * 2 - 1;
    auto loss = (h - target).pow(2).mean();
    if (nan_at >= 0 && t.step() == nan_at) loss = loss * std::numeric_limits<float>::quiet_NaN();
    return {{"loss", loss}, {"aux", h.abs().mean()}};
  }
  void after_step(Trainer& t) override {
    if (interrupt_at >= 0 && t.step() == interrupt_at) request_interrupt(SIGINT);
  }
  torch::nn::Module* module() override { return net_.ptr().get(); }
  torch::Tensor embed(const torch::Tensor& x) override { return net_->forward(x); }
  void save(torch::serialize::OutputArchive& a) const override { net_->save(a); }
  void load(torch::serialize::InputArchive& a) override { net_->load(a); }
  torch::nn::Linear net_;
  int64_t interrupt_at = -1;
  int64_t nan_at = -1;
};

data::Dataset toy_dataset() {
  data::Dataset d;
  auto g = at::make_generator<at::CPUGeneratorImpl>(5);
  d.features = at::randn({200, 16}, g, torch::TensorOptions().dtype(torch::kFloat32));
  d.labels = at::randint(0, 8, {200}, g, torch::TensorOptions().dtype(torch::kLong));
  d.num_classes = 8;
  d.name = "toy";
  return d;
}

data::LoaderOptions loader_opts() {
  data::LoaderOptions o;
  o.batch_size(32).shuffle(true).drop_last(true).seed(3).prefetch(2);
  return o;
}

TrainOptions train_opts(int64_t iters) {
  TrainOptions t;
  t.iterations = iters;
  t.log_every = 5;
  t.checkpoint_every = 5;
  return t;
}

OptimOptions sgd() {
  OptimOptions o;
  o.lr = 0.05;
  o.momentum = 0.9;
  o.nesterov = true;
  o.weight_decay = 1e-3;
  o.schedule = "step";
  o.step_size = 7;
  o.gamma = 0.5;
  return o;
}

std::vector<torch::Tensor> params_of(ToyMethod& m) {
  std::vector<torch::Tensor> out;
  for (auto& p : m.net_->parameters()) out.push_back(p.detach().clone());
  return out;
}

fs::path tmpdir(const std::string& name) {
  auto p = fs::temp_directory_path() / ("hl_trainer_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

TEST(Trainer, InterruptedAndResumedRunIsBitIdentical) {
  set_threads(2);
  auto ds = toy_dataset();
  auto idx = torch::arange(200, torch::kLong);

  // Uninterrupted.
  seed_everything(1);
  ToyMethod a(16);
  std::vector<torch::Tensor> pa;
  {
    data::Loader la(ds, idx, loader_opts());
    Trainer ta(a, &la, train_opts(23), sgd(), torch::kCPU, tmpdir("a").string(), nullptr);
    ta.train();
    pa = params_of(a);
  }

  // Interrupted at step 12 (a SIGINT during training), then resumed by a
  // fresh process-like setup with a different seed (state must come from
  // the checkpoint).
  auto dir = tmpdir("b");
  seed_everything(1);
  ToyMethod b(16);
  b.interrupt_at = 12;
  {
    data::Loader lb(ds, idx, loader_opts());
    Trainer tb(b, &lb, train_opts(23), sgd(), torch::kCPU, dir.string(), nullptr);
    try {
      tb.train();
      FAIL() << "expected the interrupt to stop training";
    } catch (const ExitStatus& e) {
      EXPECT_EQ(e.code, 130);
    }
    EXPECT_EQ(tb.step(), 12);
  }
  EXPECT_TRUE(fs::exists(dir / "last.pt"));

  seed_everything(999);
  ToyMethod c(16);
  data::Loader lc(ds, idx, loader_opts());
  Trainer tc(c, &lc, train_opts(23), sgd(), torch::kCPU, dir.string(), nullptr);
  tc.resume((dir / "last.pt").string());
  EXPECT_EQ(tc.step(), 12);
  tc.train();
  auto pc = params_of(c);
  ASSERT_EQ(pa.size(), pc.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pc[i])) << "param " << i;
  // And training actually changed something relative to a fresh init.
  seed_everything(1);
  ToyMethod fresh(16);
  EXPECT_FALSE(torch::equal(fresh.net_->weight, c.net_->weight));
}

// Two optimizer stages (Adam, then the top-level SGD): interrupting before,
// exactly at and after the switch and resuming gives the uninterrupted run.
TEST(Trainer, OptimizerStagesSwitchAndResumeBitIdentical) {
  set_threads(2);
  auto ds = toy_dataset();
  auto idx = torch::arange(200, torch::kLong);
  OptimOptions staged = sgd();
  OptimOptions adam = sgd();
  adam.type = "adam";
  adam.nesterov = false;
  adam.lr = 0.01;
  adam.schedule = "constant";
  adam.until = 10;
  staged.stages = {adam};
  auto run = [&](const std::string& name, int64_t interrupt_at, const OptimOptions& o) {
    auto dir = tmpdir(name);
    seed_everything(1);
    ToyMethod m(16);
    m.interrupt_at = interrupt_at;
    {
      data::Loader l(ds, idx, loader_opts());
      Trainer t(m, &l, train_opts(23), o, torch::kCPU, dir.string(), nullptr);
      try {
        t.train();
      } catch (const ExitStatus&) {
      }
    }
    if (interrupt_at < 0) return params_of(m);
    seed_everything(7);
    ToyMethod r(16);
    data::Loader l(ds, idx, loader_opts());
    Trainer t(r, &l, train_opts(23), o, torch::kCPU, dir.string(), nullptr);
    t.resume((dir / "last.pt").string());
    EXPECT_EQ(t.step(), interrupt_at);
    t.train();
    return params_of(r);
  };
  auto whole = run("staged", -1, staged);
  for (int64_t at : {6, 10, 15}) {
    auto resumed = run("staged_" + std::to_string(at), at, staged);
    for (size_t i = 0; i < whole.size(); ++i)
      EXPECT_TRUE(torch::equal(whole[i], resumed[i])) << "interrupted at " << at << ", param " << i;
  }
  // The stage matters: without it the run differs.
  auto plain = run("plain", -1, sgd());
  EXPECT_FALSE(torch::equal(whole[0], plain[0]));
}

TEST(Trainer, NonFiniteLossStopsWithPointerToLastGoodCheckpoint) {
  auto ds = toy_dataset();
  seed_everything(1);
  ToyMethod m(16);
  m.nan_at = 7;
  auto dir = tmpdir("nan");
  data::Loader l(ds, torch::arange(200, torch::kLong), loader_opts());
  Trainer t(m, &l, train_opts(20), sgd(), torch::kCPU, dir.string(), nullptr);
  try {
    t.train();
    FAIL() << "expected divergence to be detected";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("diverged"), std::string::npos) << msg;
    EXPECT_NE(msg.find("step 7"), std::string::npos) << msg;
    EXPECT_NE(msg.find("last good checkpoint"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(step 5)"), std::string::npos) << msg;
  }
  // The checkpoint on disk is the good one from step 5.
  ToyMethod r(16);
  data::Loader l2(ds, torch::arange(200, torch::kLong), loader_opts());
  Trainer t2(r, &l2, train_opts(20), sgd(), torch::kCPU, dir.string(), nullptr);
  t2.resume((dir / "last.pt").string());
  EXPECT_EQ(t2.step(), 5);
  EXPECT_TRUE(torch::isfinite(r.net_->weight).all().item<bool>());
}

TEST(Optim, StepCosineAndWarmupSchedules) {
  OptimOptions o;
  o.schedule = "step";
  o.step_size = 2000;
  o.gamma = 0.5;
  EXPECT_DOUBLE_EQ(lr_factor(o, 0, 10000), 1.0);
  EXPECT_DOUBLE_EQ(lr_factor(o, 1999, 10000), 1.0);
  EXPECT_DOUBLE_EQ(lr_factor(o, 2000, 10000), 0.5);
  EXPECT_DOUBLE_EQ(lr_factor(o, 9999, 10000), 0.0625);
  o.schedule = "cosine";
  o.min_lr_factor = 0.1;
  EXPECT_DOUBLE_EQ(lr_factor(o, 0, 100), 1.0);
  EXPECT_NEAR(lr_factor(o, 50, 100), 0.55, 1e-12);
  EXPECT_NEAR(lr_factor(o, 100, 100), 0.1, 1e-12);
  o.warmup = 10;
  EXPECT_NEAR(lr_factor(o, 0, 100), 0.1, 1e-12);
}

TEST(Optim, StagesInheritOverrideAndScheduleWithinTheStage) {
  auto cfg = Config::from_string(
      "optim: {type: sgd, lr: 0.01, momentum: 0.9, schedule: step, step_size: 10, gamma: 0.5,\n"
      "        stages: [{until: 100, type: adam, lr: 0.001, schedule: constant},\n"
      "                 {until: 150, lr: 0.1}]}\n"
      "bad_order: {stages: [{until: 50}, {until: 50}]}\n"
      "no_until: {stages: [{lr: 0.1}]}\n"
      "typo: {stages: [{until: 5, lrr: 0.1}]}\n"
      "not_list: {stages: {until: 5}}\n");
  auto o = OptimOptions::from_yaml(cfg.section("optim"));
  ASSERT_EQ(o.stages.size(), 2u);
  EXPECT_EQ(o.stage_index(0), 0u);
  EXPECT_EQ(o.stage_index(99), 0u);
  EXPECT_EQ(o.stage_index(100), 1u);
  EXPECT_EQ(o.stage_index(150), 2u);
  EXPECT_EQ(o.stage(0).type, "adam");
  EXPECT_DOUBLE_EQ(o.stage(0).momentum, 0.9);  // inherited
  EXPECT_EQ(o.stage(1).type, "sgd");           // inherited from the top level
  EXPECT_DOUBLE_EQ(o.stage(1).lr, 0.1);
  EXPECT_EQ(o.stage(1).schedule, "step");
  EXPECT_EQ(&o.stage(2), &o);
  EXPECT_EQ(o.stage_range(1, 300), (std::pair<int64_t, int64_t>{100, 150}));
  EXPECT_EQ(o.stage_range(2, 300), (std::pair<int64_t, int64_t>{150, 300}));
  // Schedules count from the stage's first step.
  EXPECT_DOUBLE_EQ(staged_lr_factor(o, 99, 300), 1.0);
  EXPECT_DOUBLE_EQ(staged_lr_factor(o, 100, 300), 1.0);
  EXPECT_DOUBLE_EQ(staged_lr_factor(o, 110, 300), 0.5);
  EXPECT_DOUBLE_EQ(staged_lr_factor(o, 150, 300), 1.0);
  EXPECT_DOUBLE_EQ(staged_lr_factor(o, 165, 300), 0.5);
  for (const char* bad : {"bad_order", "no_until", "typo", "not_list"}) {
    try {
      OptimOptions::from_yaml(cfg.section(bad));
      ADD_FAILURE() << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string(bad) + ".stages"), std::string::npos)
          << e.what();
    }
  }
  // The error points at the line of the stage.
  try {
    OptimOptions::from_yaml(cfg.section("typo"));
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(":6:"), std::string::npos) << e.what();
  }
}

TEST(Optim, GroupMultipliersAndOptimizerKinds) {
  ToyMethod m(4);
  auto groups = m.param_groups();
  for (const char* type : {"sgd", "adam", "adamw"}) {
    OptimOptions o;
    o.type = type;
    o.lr = 0.01;
    auto opt = make_optimizer(o, groups);
    ASSERT_EQ(opt->param_groups().size(), 2u);
    apply_lr(*opt, o, groups, 0.5);
    EXPECT_DOUBLE_EQ(opt->param_groups()[0].options().get_lr(), 0.005);
    EXPECT_DOUBLE_EQ(opt->param_groups()[1].options().get_lr(), 0.05);
  }
}

TEST(ScalarScheduleTest, HashNetContinuationMatchesAuthorsFormula) {
  ScalarSchedule s;
  s.type = "hashnet";
  s.init = 1.0;
  s.gamma = 0.005;
  s.power = 0.5;
  s.every = 200;
  EXPECT_DOUBLE_EQ(s.at(0, 10000), 1.0);
  EXPECT_DOUBLE_EQ(s.at(199, 10000), 1.0);
  EXPECT_DOUBLE_EQ(s.at(200, 10000), std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(s.at(10000, 10000), std::sqrt(51.0));
}

}  // namespace
