// The HashNet Method end to end on a tiny synthetic dataset: a short Trainer
// run lowers both losses, beta follows the continuation, the code histogram
// is logged, state round-trips, and bad options are rejected.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "csrc/core/config.h"
#include "csrc/core/logging.h"
#include "datasets/loader.h"
#include "models/hashnet/method.h"
#include "trainers/trainer.h"

namespace fs = std::filesystem;
using namespace hashlab;

namespace {

// Four classes of 10x10 grayscale images: a class prototype plus noise.
data::Dataset toy_dataset(int64_t n, int64_t classes, int64_t side) {
  torch::manual_seed(3);
  auto protos = torch::rand({classes, 1, side, side}) * 255;
  auto labels = torch::randint(classes, {n}, torch::kLong);
  auto x = protos.index_select(0, labels) + torch::randn({n, 1, side, side}) * 40;
  data::Dataset ds;
  ds.features = x.clamp(0, 255).to(torch::kUInt8);
  ds.labels = labels;
  ds.num_classes = classes;
  ds.name = "toy";
  return ds;
}

MethodContext toy_context(int64_t side, int64_t total_steps) {
  MethodContext ctx;
  ctx.input_shape = {1, side, side};
  ctx.num_classes = 4;
  ctx.total_steps = total_steps;
  ctx.input_scale = 255.0;
  return ctx;
}

std::unique_ptr<Method> make_hashnet(const std::string& model_yaml, const MethodContext& ctx) {
  if (!method_registry().has("hashnet")) register_hashnet(method_registry());
  auto cfg = Config::from_string("model: " + model_yaml);
  Section s = cfg.section("model");
  return method_registry().create("hashnet", "test", s, ctx);
}

double loss_named(const LossMap& losses, const std::string& name) {
  for (const auto& kv : losses)
    if (kv.first == name) return kv.second.item<double>();
  ADD_FAILURE() << "no loss named " << name;
  return 0;
}

}  // namespace

TEST(HashNetMethod, ShortTrainingLowersLossAndLogsHistogram) {
  const int64_t side = 10, steps = 60;
  auto ds = toy_dataset(256, 4, side);
  data::LoaderOptions lo;
  lo.batch_size(32).shuffle(true).drop_last(true).augment(false).seed(5).prefetch(0);
  data::Loader loader(ds, torch::arange(256, torch::kLong), lo);

  torch::manual_seed(11);
  auto m = make_hashnet(
      "{bits: 16, backbone: {name: small_cnn, feature_dim: 32},"
      " continuation: {type: hashnet, every: 20}}",
      toy_context(side, steps));
  EXPECT_EQ(m->name(), "hashnet");
  EXPECT_EQ(m->nbits(), 16);
  auto groups = dynamic_cast<StepMethod&>(*m).param_groups();
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].lr_mult, 1.0);
  EXPECT_EQ(groups[1].lr_mult, 10.0);
  ASSERT_EQ(groups[1].params.size(), 2u);  // fch weight and bias
  EXPECT_EQ(groups[1].params[0].sizes(), (std::vector<int64_t>{16, 32}));

  TrainOptions t;
  t.iterations = steps;
  t.batch_size = 32;
  t.log_every = 1000;
  t.checkpoint_every = 0;
  t.prefetch = 0;
  OptimOptions o;
  o.lr = 0.01;
  o.step_size = 1000;
  std::string metrics_path =
      (fs::temp_directory_path() / ("hashlab_hn_" + std::to_string(::getpid()) + ".jsonl"))
          .string();
  MetricsWriter metrics(metrics_path, /*append=*/false);
  Trainer trainer(*m, &loader, t, o, torch::kCPU, "", &metrics);

  data::Batch fixed = loader.batch_at(3);
  auto measure = [&] {
    torch::NoGradGuard no_grad;
    m->module()->train();
    return dynamic_cast<StepMethod&>(*m).training_step(fixed, trainer);
  };
  auto before = measure();
  trainer.train();
  // The last step was step 59: beta = (1 + 0.005 * 40)^0.5.
  ASSERT_EQ(m->status().size(), 1u);
  EXPECT_EQ(m->status()[0].first, "beta");
  EXPECT_NEAR(m->status()[0].second, std::sqrt(1.2), 1e-9);
  auto after = measure();
  EXPECT_LT(loss_named(after, "loss"), 0.8 * loss_named(before, "loss"));
  EXPECT_LT(loss_named(after, "loss_binary"), loss_named(before, "loss_binary"));

  // Codes: same-class items should now be closer in Hamming space than others.
  auto codes = m->embed(fixed.x);
  EXPECT_EQ(codes.sizes(), (std::vector<int64_t>{32, 16}));
  auto h = codes.sign();
  auto same = fixed.labels.unsqueeze(1).eq(fixed.labels.unsqueeze(0));
  auto ip = torch::matmul(h, h.t());
  double ip_same = ip.masked_select(same).mean().item<double>();
  double ip_diff = ip.masked_select(same.logical_not()).mean().item<double>();
  EXPECT_GT(ip_same, ip_diff + 4);

  std::ifstream in(metrics_path);
  std::string line;
  bool found = false;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.dump().find("code_histogram") == std::string::npos) continue;
    found = true;
    auto counts = j["counts"].get<std::vector<int64_t>>();
    ASSERT_EQ(counts.size(), 100u);
    int64_t total = 0;
    for (auto c : counts) total += c;
    EXPECT_EQ(total, 256 * 16);
    EXPECT_EQ(j["values"].get<int64_t>(), 256 * 16);
  }
  EXPECT_TRUE(found) << "no code_histogram event in " << metrics_path;
  fs::remove(metrics_path);
}

TEST(HashNetMethod, HalvesPairingAndWeightingsGiveFiniteLosses) {
  auto ds = toy_dataset(16, 4, 8);
  data::LoaderOptions lo;
  lo.batch_size(8).augment(false).prefetch(0);
  data::Loader loader(ds, torch::arange(16, torch::kLong), lo);
  for (const char* yaml :
       {"{bits: 8, pairs: halves, backbone: {feature_dim: 8}}",
        "{bits: 8, weighting: code, class_weight: 3, backbone: {feature_dim: 8}}",
        "{bits: 8, weighting: none, continuation: {type: constant, init: 1},"
        " backbone: {feature_dim: 8}}"}) {
    auto m = make_hashnet(yaml, toy_context(8, 10));
    TrainOptions t;
    t.iterations = 2;
    t.checkpoint_every = 0;
    t.prefetch = 0;
    Trainer trainer(*m, &loader, t, OptimOptions(), torch::kCPU, "", nullptr);
    auto losses = dynamic_cast<StepMethod&>(*m).training_step(loader.batch_at(0), trainer);
    ASSERT_EQ(losses[0].first, "loss") << yaml;
    EXPECT_TRUE(std::isfinite(loss_named(losses, "loss"))) << yaml;
    EXPECT_TRUE(std::isfinite(loss_named(losses, "loss_binary"))) << yaml;
    EXPECT_NO_THROW(trainer.train()) << yaml;
  }
}

TEST(HashNetMethod, SaveLoadRoundTripsCodes) {
  auto ctx = toy_context(8, 10);
  torch::manual_seed(1);
  auto a = make_hashnet("{bits: 24, backbone: {feature_dim: 16}}", ctx);
  torch::manual_seed(2);
  auto b = make_hashnet("{bits: 24, backbone: {feature_dim: 16}}", ctx);
  auto x = torch::randn({5, 1, 8, 8});
  ASSERT_FALSE(torch::equal(a->encode(x), b->encode(x)));
  std::stringstream buf;
  {
    torch::serialize::OutputArchive out;
    a->save(out);
    out.save_to(buf);
  }
  torch::serialize::InputArchive in;
  in.load_from(buf);
  b->load(in);
  EXPECT_TRUE(torch::equal(a->encode(x), b->encode(x)));
  EXPECT_EQ(a->encode(x).sizes(), (std::vector<int64_t>{5, 3}));
}

TEST(HashNetMethod, RejectsBadOptions) {
  auto ctx = toy_context(8, 10);
  EXPECT_THROW(make_hashnet("{bits: 8, weighting: balanced}", ctx), Error);
  EXPECT_THROW(make_hashnet("{bits: 8, pairs: everything}", ctx), Error);
  EXPECT_THROW(make_hashnet("{bits: 8, hash_lr: 10}", ctx), Error);
  EXPECT_THROW(make_hashnet("{bits: 0}", ctx), Error);
  EXPECT_THROW(make_hashnet("{bits: 8, backbone: {name: resnet19}}", ctx), Error);
}
