// DeepQuan (models/deepquan, trainers/deepquan): the losses of eq. 1-3
// against hand-computed values and naive loops, negative sampling, the
// auto-encoder's shape, a short training run (pretraining, codebook
// refreshes, falling loss, consistent assignments), save/load, TorchScript
// export (C++ reload and a Python client) and the "pq" / "dae_pq" ablations.
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/script.h>
#include <torch/torch.h>

#include "csrc/core/config.h"
#include "csrc/core/error.h"
#include "csrc/core/logging.h"
#include "csrc/core/signals.h"
#include "csrc/export/script_emitter.h"
#include "csrc/search/pq.h"
#include "datasets/loader.h"
#include "models/deepquan/deepquan.h"
#include "models/deepquan/method.h"
#include "trainers/trainer.h"

namespace fs = std::filesystem;
using namespace hashlab;
using models::TripletForm;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("hashlab_dq_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// Four classes of 8x8 grayscale images: a class prototype plus noise.
data::Dataset toy_dataset(int64_t n, int64_t side = 8) {
  torch::manual_seed(3);
  auto protos = torch::rand({4, 1, side, side}) * 255;
  auto labels = torch::randint(4, {n}, torch::kLong);
  auto x = protos.index_select(0, labels) + torch::randn({n, 1, side, side}) * 30;
  data::Dataset ds;
  ds.features = x.clamp(0, 255).to(torch::kUInt8);
  ds.labels = labels;
  ds.num_classes = 4;
  ds.name = "toy";
  return ds;
}

MethodContext toy_context(int64_t side = 8) {
  MethodContext ctx;
  ctx.input_shape = {1, side, side};
  ctx.num_classes = 4;
  ctx.input_scale = 255.0;
  ctx.seed = 7;
  return ctx;
}

std::unique_ptr<Method> make(const std::string& name, const std::string& model_yaml,
                             const MethodContext& ctx) {
  if (!method_registry().has("deepquan")) register_deepquan(method_registry());
  auto cfg = Config::from_string("model: " + model_yaml);
  Section s = cfg.section("model");
  return method_registry().create(name, "test", s, ctx);
}

double loss_named(const LossMap& losses, const std::string& name) {
  for (const auto& kv : losses)
    if (kv.first == name) return kv.second.item<double>();
  ADD_FAILURE() << "no loss named " << name;
  return 0;
}

std::vector<nlohmann::json> read_events(const std::string& path, const std::string& event) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.value("event", "") == event) out.push_back(j);
  }
  return out;
}

TrainOptions short_run(int64_t steps) {
  TrainOptions t;
  t.iterations = steps;
  t.batch_size = 32;
  t.log_every = 1;
  t.checkpoint_every = 0;
  t.prefetch = 0;
  return t;
}

OptimOptions plain_sgd(double lr) {
  OptimOptions o;
  o.lr = lr;
  o.momentum = 0.9;
  o.weight_decay = 0;
  o.schedule = "constant";
  return o;
}

void write_raw(const std::string& path, const torch::Tensor& t) {
  auto c = t.contiguous().to(torch::kCPU);
  std::ofstream(path, std::ios::binary)
      .write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
}

torch::Tensor read_raw(const std::string& path, std::vector<int64_t> shape, torch::Dtype dtype) {
  auto t = torch::empty(shape, dtype);
  std::ifstream in(path, std::ios::binary);
  in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  EXPECT_EQ(static_cast<size_t>(in.gcount()), t.nbytes()) << path;
  return t;
}

}  // namespace

// ---------------------------------------------------------------- losses

TEST(DeepQuanLoss, TripletMatchesHandComputedCase) {
  // Item 0: ||z − C+|| = 5, ||z − C−|| = 5, λ = 0.5, s = 1: 1 − (2.5 − 5) = 3.5.
  // Item 1: the negative is far: 1 − (0.5·50 − 0) < 0 -> 0. Mean: 1.75.
  auto z = torch::tensor({3.f, 4.f, 0.f, 0.f}).reshape({2, 2}).requires_grad_(true);
  auto pos = torch::tensor({0.f, 0.f, 0.f, 0.f}).reshape({2, 2});
  auto neg = torch::tensor({6.f, 8.f, 30.f, 40.f}).reshape({2, 2});
  auto loss = models::deepquan_triplet_loss(z, pos, neg, 1.0, 0.5);
  EXPECT_NEAR(loss.item<double>(), 1.75, 1e-6);
  loss.backward();
  // dJ/dz_0 = (z − C+)/||z − C+|| − λ (z − C−)/||z − C−|| = (0.6, 0.8) + 0.5 (0.6, 0.8), / N = 2;
  // item 1 is inactive, and its ||z − C+|| = 0 must not give NaN.
  auto g = z.grad();
  EXPECT_NEAR(g[0][0].item<double>(), 0.45, 1e-6);
  EXPECT_NEAR(g[0][1].item<double>(), 0.60, 1e-6);
  EXPECT_EQ(g[1][0].item<double>(), 0.0);
  EXPECT_EQ(g[1][1].item<double>(), 0.0);

  // Per subspace (M = 2), item 0: 1 − (0.5·3 − 3) = 2.5 and 1 − (0.5·4 − 4) = 3; sum 5.5. Mean 2.75.
  auto sub = models::deepquan_triplet_loss(z.detach(), pos, neg, 1.0, 0.5, 2,
                                           TripletForm::kSubspace);
  EXPECT_NEAR(sub.item<double>(), 2.75, 1e-6);
  // With M = 1 both forms are eq. 2.
  EXPECT_NEAR(models::deepquan_triplet_loss(z.detach(), pos, neg, 1.0, 0.5, 1,
                                            TripletForm::kSubspace)
                  .item<double>(),
              1.75, 1e-6);
}

TEST(DeepQuanLoss, MatchNaiveLoopsOnRandomData) {
  torch::manual_seed(1);
  const int64_t n = 7, L = 12, M = 3, dsub = L / M;
  auto z = torch::randn({n, L});
  auto pos = z + 0.3 * torch::randn({n, L});
  auto neg = torch::randn({n, L});
  auto x = torch::rand({n, 20});
  auto xr = torch::rand({n, 20});
  const double s = 0.7, lambda = 0.4;
  double concat = 0, subspace = 0, quad = 0, rec = 0;
  for (int64_t i = 0; i < n; ++i) {
    double dp = 0, dn = 0;
    for (int64_t m = 0; m < M; ++m) {
      double sp = 0, sn = 0;
      for (int64_t j = m * dsub; j < (m + 1) * dsub; ++j) {
        double a = z[i][j].item<double>() - pos[i][j].item<double>();
        double b = z[i][j].item<double>() - neg[i][j].item<double>();
        sp += a * a;
        sn += b * b;
      }
      dp += sp;
      dn += sn;
      subspace += std::max(0.0, s - (lambda * std::sqrt(sn) - std::sqrt(sp)));
    }
    concat += std::max(0.0, s - (lambda * std::sqrt(dn) - std::sqrt(dp)));
    quad += dp;
    for (int64_t j = 0; j < 20; ++j) {
      double d = x[i][j].item<double>() - xr[i][j].item<double>();
      rec += d * d;
    }
  }
  EXPECT_NEAR(models::deepquan_triplet_loss(z, pos, neg, s, lambda, M).item<double>(),
              concat / n, 1e-5);
  EXPECT_NEAR(models::deepquan_triplet_loss(z, pos, neg, s, lambda, M, TripletForm::kSubspace)
                  .item<double>(),
              subspace / n, 1e-5);
  EXPECT_NEAR(models::deepquan_quadratic_loss(z, pos).item<double>(), quad / n, 1e-5);
  EXPECT_NEAR(models::deepquan_reconstruction_loss(x, xr).item<double>(), rec / n, 1e-5);
  EXPECT_THROW(models::deepquan_triplet_loss(z, pos, neg, s, lambda, 5), c10::Error);
  EXPECT_THROW(models::deepquan_quadratic_loss(z, pos.narrow(1, 0, 6)), c10::Error);
  EXPECT_THROW(models::parse_triplet_form("squared"), Error);
}

TEST(DeepQuanLoss, NegativeSamplingNeverPicksThePositive) {
  torch::manual_seed(2);
  for (int64_t K : {2, 3, 17, 256}) {
    auto pos = torch::randint(K, {4000, 4}, torch::kLong);
    auto neg = models::sample_negative_ids(pos, K);
    ASSERT_EQ(neg.sizes(), pos.sizes());
    EXPECT_FALSE(neg.eq(pos).any().item<bool>()) << "K = " << K;
    EXPECT_GE(neg.min().item<int64_t>(), 0);
    EXPECT_LT(neg.max().item<int64_t>(), K);
    if (K == 2) EXPECT_TRUE(torch::equal(neg, 1 - pos));
    if (K == 3) {
      // Uniform over the two others: each of the 16,000 draws picks "pos + 1"
      // with probability 1/2 (8,000 ± 63 sd).
      auto plus_one = neg.eq((pos + 1).remainder(3)).sum().item<int64_t>();
      EXPECT_NEAR(static_cast<double>(plus_one), 8000.0, 400.0);
    }
  }
  // A seeded generator gives reproducible draws.
  auto pos = torch::randint(256, {10, 8}, torch::kLong);
  auto a = models::sample_negative_ids(pos, 256, at::detail::createCPUGenerator(5));
  auto b = models::sample_negative_ids(pos, 256, at::detail::createCPUGenerator(5));
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_THROW(models::sample_negative_ids(pos, 1), c10::Error);
}

TEST(DeepQuanLoss, GatherCodewordsMatchesPQDecode) {
  torch::manual_seed(4);
  codes::PQCodes pq;
  pq.M = 3;
  pq.K = 5;
  pq.dsub = 2;
  pq.codebooks = torch::randn({3, 5, 2});
  auto ids = torch::randint(5, {6, 3}, torch::kLong).to(torch::kUInt8);
  EXPECT_TRUE(torch::equal(models::gather_codewords(pq.codebooks, ids), search::pq_decode(pq, ids)));
}

TEST(DeepQuanNet, AutoEncoderIsSymmetricWithLinearCodeAndOutput) {
  models::DeepQuanAutoEncoder net(models::DeepQuanAutoEncoderOptions(64, 16).widths({40, 30}));
  // encoder: 64-40 ReLU 40-30 ReLU 30-16; decoder: 16-30 ReLU 30-40 ReLU 40-64.
  ASSERT_EQ(net->encoder->size(), 5u);
  ASSERT_EQ(net->decoder->size(), 5u);
  std::vector<std::vector<int64_t>> enc, dec;
  for (const auto& c : net->encoder->children())
    if (auto* fc = c->as<torch::nn::Linear>()) enc.push_back(fc->weight.sizes().vec());
  for (const auto& c : net->decoder->children())
    if (auto* fc = c->as<torch::nn::Linear>()) dec.push_back(fc->weight.sizes().vec());
  EXPECT_EQ(enc, (std::vector<std::vector<int64_t>>{{40, 64}, {30, 40}, {16, 30}}));
  EXPECT_EQ(dec, (std::vector<std::vector<int64_t>>{{30, 16}, {40, 30}, {64, 40}}));
  auto x = torch::randn({5, 1, 8, 8});
  auto z = net->encode(x);
  EXPECT_EQ(z.sizes(), (std::vector<int64_t>{5, 16}));
  EXPECT_TRUE(z.lt(0).any().item<bool>());  // no ReLU on the code layer
  auto r = net->decode(z);
  EXPECT_EQ(r.sizes(), (std::vector<int64_t>{5, 64}));
  EXPECT_TRUE(r.lt(0).any().item<bool>());  // nor on the output
}

// ---------------------------------------------------------------- method

TEST(DeepQuanMethod, TrainingRefreshesCodebooksAndLowersTheLoss) {
  const int64_t n = 256, pretrain = 40, steps = 160;  // 8 steps per epoch
  auto ds = toy_dataset(n);
  data::LoaderOptions lo;
  lo.batch_size(32).shuffle(true).drop_last(true).augment(false).seed(5).prefetch(0);
  data::Loader loader(ds, torch::arange(n, torch::kLong), lo);
  torch::manual_seed(11);
  auto m = make("deepquan",
                "{M: 2, K: 8, code_dim: 8, widths: [32], pretrain_steps: 40, margin: 1.0,"
                " lambda: 0.5, kmeans_iters: 10}",
                toy_context());
  EXPECT_EQ(m->name(), "deepquan");
  EXPECT_EQ(m->nbits(), 16);
  EXPECT_EQ(m->code_kind(), codes::CodeKind::pq);
  EXPECT_THROW(m->pq_codebooks(), Error);  // nothing fitted yet

  TempDir dir;
  MetricsWriter metrics(dir / "metrics.jsonl", /*append=*/false);
  Trainer trainer(*m, &loader, short_run(steps), plain_sgd(0.01), torch::kCPU, "", &metrics);
  trainer.train();

  // Refreshes: at the end of pretraining (step 40), at each epoch change
  // after it (epochs 6..19 start at steps 48, 56, ..., 152: 14), and at the end.
  auto refreshes = read_events(dir / "metrics.jsonl", "codebook_refresh");
  ASSERT_EQ(refreshes.size(), 16u);
  EXPECT_EQ(refreshes.front()["step"].get<int64_t>(), pretrain);
  EXPECT_EQ(refreshes.back()["step"].get<int64_t>(), steps);
  for (const auto& r : refreshes) {
    EXPECT_GT(r["codeword_distance"].get<double>(), 0.0);
    EXPECT_GT(r["quantization_error"].get<double>(), 0.0);
  }

  // Pretraining lowers the reconstruction; the joint phase lowers eq. 4.
  auto train = read_events(dir / "metrics.jsonl", "train");
  ASSERT_EQ(train.size(), static_cast<size_t>(steps));
  auto mean_of = [&](int64_t from, int64_t to, const char* key) {
    double s = 0;
    for (int64_t i = from; i < to; ++i) s += train[i][key].get<double>();
    return s / double(to - from);
  };
  EXPECT_LT(mean_of(pretrain - 8, pretrain, "reconstruction"), 0.8 * mean_of(0, 8, "reconstruction"));
  EXPECT_EQ(train[pretrain - 1]["quantization"].get<double>(), 0.0);
  EXPECT_GT(train[pretrain]["quantization"].get<double>(), 0.0);
  EXPECT_LT(mean_of(steps - 16, steps, "loss"), mean_of(pretrain, pretrain + 16, "loss"));

  // After the final refresh the positives of a training batch are the
  // nearest codewords of its codes: replay the step's one random draw.
  auto pq = m->pq_codebooks();
  EXPECT_EQ(pq.codebooks.sizes(), (std::vector<int64_t>{2, 8, 4}));
  data::Batch b = loader.batch_at(3);
  auto z = m->embed(b.x);
  auto pos = m->encode(b.x).to(torch::kLong);
  EXPECT_TRUE(torch::equal(pos.to(torch::kUInt8), search::pq_encode(pq, z)));
  torch::manual_seed(21);
  auto neg = models::sample_negative_ids(pos, 8);
  auto want = models::deepquan_triplet_loss(z, models::gather_codewords(pq.codebooks, pos),
                                            models::gather_codewords(pq.codebooks, neg), 1.0,
                                            0.5, 2);
  torch::manual_seed(21);
  LossMap got;
  {
    torch::NoGradGuard no_grad;
    got = dynamic_cast<StepMethod&>(*m).training_step(b, trainer);
  }
  EXPECT_NEAR(loss_named(got, "quantization"), want.item<double>(), 1e-5);
}

// A run continued from a checkpoint must train exactly like an uninterrupted
// one (same codebooks, network and codes): after a run that ended with
// pretraining (how tools/deepquan_ablation.sh shares one pretraining between
// variants), and after interrupts mid-epoch and at an epoch's end, where the
// positives of eq. 2 are still those of the last refresh.
TEST(DeepQuanMethod, ResumedRunsMatchAnUninterruptedRun) {
  const int64_t n = 256, pretrain = 16, steps = 40;  // 8 steps per epoch
  auto ds = toy_dataset(n);
  data::LoaderOptions lo;
  lo.batch_size(32).shuffle(true).drop_last(true).augment(false).seed(5).prefetch(0);
  const std::string yaml =
      "{M: 2, K: 8, code_dim: 8, widths: [32], pretrain_steps: 16, kmeans_iters: 10}";
  auto x = data::Loader(ds, torch::arange(n, torch::kLong), lo).batch_at(3).x;

  torch::manual_seed(11);
  auto whole = make("deepquan", yaml, toy_context());
  {
    data::Loader loader(ds, torch::arange(n, torch::kLong), lo);
    Trainer t(*whole, &loader, short_run(steps), plain_sgd(0.01), torch::kCPU, "", nullptr);
    t.train();
  }

  for (int64_t stop : {pretrain, int64_t{21}, int64_t{24}}) {
    SCOPED_TRACE("stopped at step " + std::to_string(stop));
    const bool interrupt = stop != pretrain;
    TempDir dir;
    torch::manual_seed(11);
    auto first = make("deepquan", yaml, toy_context());
    double first_seconds = 0;
    {
      MetricsWriter metrics(dir / "metrics.jsonl", /*append=*/false);
      data::Loader loader(ds, torch::arange(n, torch::kLong), lo);
      TrainOptions opts = short_run(interrupt ? steps : pretrain);
      opts.eval_every = interrupt ? stop : 0;
      TrainerSetup setup;
      setup.checkpoint_dir = dir.path.string();
      setup.metrics = &metrics;
      setup.evaluate = [] {
        request_interrupt(SIGINT);
        return nlohmann::json::object();
      };
      Trainer t(*first, &loader, opts, plain_sgd(0.01), torch::kCPU, setup);
      EXPECT_EQ(interrupt, [&] {
        try {
          t.train();
          return false;
        } catch (const ExitStatus&) {
          return true;
        }
      }());
      EXPECT_EQ(t.step(), stop);
      first_seconds = t.train_seconds();
    }
    if (!interrupt) {
      // One k-means when pretraining ends, not a second one after training.
      auto refreshes = read_events(dir / "metrics.jsonl", "codebook_refresh");
      ASSERT_EQ(refreshes.size(), 1u);
      EXPECT_EQ(refreshes[0]["step"].get<int64_t>(), pretrain);
    }

    torch::manual_seed(99);  // other initial weights: everything must come from the checkpoint
    auto resumed = make("deepquan", yaml, toy_context());
    {
      data::Loader loader(ds, torch::arange(n, torch::kLong), lo);
      Trainer t(*resumed, &loader, short_run(steps), plain_sgd(0.01), torch::kCPU,
                dir.path.string(), nullptr);
      t.resume(dir / "last.pt");
      ASSERT_EQ(t.step(), stop);
      if (!interrupt) EXPECT_EQ(t.train_seconds(), first_seconds);  // carried by the checkpoint
      t.train();
      EXPECT_GT(t.train_seconds(), first_seconds);
    }
    EXPECT_TRUE(torch::equal(whole->pq_codebooks().codebooks, resumed->pq_codebooks().codebooks));
    EXPECT_TRUE(torch::equal(whole->embed(x), resumed->embed(x)));
    EXPECT_TRUE(torch::equal(whole->encode(x), resumed->encode(x)));
  }
}

TEST(DeepQuanMethod, QuadAndNoReconstructionVariantsTrain) {
  auto ds = toy_dataset(128);
  data::LoaderOptions lo;
  lo.batch_size(32).drop_last(true).augment(false).prefetch(0);
  data::Loader loader(ds, torch::arange(128, torch::kLong), lo);
  for (const char* yaml :
       {"{M: 2, K: 4, code_dim: 8, widths: [16], pretrain_steps: 0, loss: quad,"
        " reconstruction: false}",
        "{bits: 16, K: 4, code_dim: 8, widths: [16], pretrain_steps: 2, triplet: subspace,"
        " reconstruction: false}"}) {
    torch::manual_seed(3);
    auto m = make("deepquan", yaml, toy_context());
    Trainer trainer(*m, &loader, short_run(10), plain_sgd(0.01), torch::kCPU, "", nullptr);
    EXPECT_NO_THROW(trainer.train()) << yaml;
    // Without the reconstruction term the loss is the quantization term alone.
    auto losses = dynamic_cast<StepMethod&>(*m).training_step(loader.batch_at(0), trainer);
    EXPECT_NEAR(loss_named(losses, "loss"), loss_named(losses, "quantization"), 1e-6) << yaml;
    EXPECT_GT(loss_named(losses, "reconstruction"), 0.0) << yaml;
  }
}

TEST(DeepQuanMethod, SaveLoadRoundTripsCodesAndCodebooks) {
  auto ds = toy_dataset(128);
  data::LoaderOptions lo;
  lo.batch_size(32).drop_last(true).augment(false).prefetch(0);
  data::Loader loader(ds, torch::arange(128, torch::kLong), lo);
  const std::string yaml = "{M: 2, K: 8, code_dim: 8, widths: [16], pretrain_steps: 4}";
  torch::manual_seed(1);
  auto a = make("deepquan", yaml, toy_context());
  Trainer trainer(*a, &loader, short_run(12), plain_sgd(0.01), torch::kCPU, "", nullptr);
  trainer.train();
  torch::manual_seed(2);
  auto b = make("deepquan", yaml, toy_context());
  auto x = loader.batch_at(1).x;
  std::stringstream buf;
  {
    torch::serialize::OutputArchive out;
    a->save(out);
    out.save_to(buf);
  }
  torch::serialize::InputArchive in;
  in.load_from(buf);
  b->load(in);
  EXPECT_TRUE(torch::equal(a->embed(x), b->embed(x)));
  EXPECT_TRUE(torch::equal(a->pq_codebooks().codebooks, b->pq_codebooks().codebooks));
  EXPECT_TRUE(torch::equal(a->encode(x), b->encode(x)));
  EXPECT_EQ(a->encode(x).sizes(), (std::vector<int64_t>{32, 2}));
}

TEST(DeepQuanMethod, ExportedHasherGivesTheEagerIdsInCppAndPython) {
  auto ds = toy_dataset(128);
  data::LoaderOptions lo;
  lo.batch_size(32).drop_last(true).augment(false).prefetch(0);
  data::Loader loader(ds, torch::arange(128, torch::kLong), lo);
  torch::manual_seed(6);
  auto ctx = toy_context();
  auto m = make("deepquan", "{M: 4, K: 16, code_dim: 16, widths: [24], pretrain_steps: 4}", ctx);
  Trainer trainer(*m, &loader, short_run(12), plain_sgd(0.01), torch::kCPU, "", nullptr);
  trainer.train();

  TempDir dir;
  exporter::save_hasher(m->to_torchscript(ctx), dir / "hasher.pt");
  auto module = torch::jit::load(dir / "hasher.pt");
  auto raw = torch::randint(0, 256, {37, 1, 8, 8}).to(torch::kFloat32);
  auto eager = m->encode(raw / 255.0);
  auto ids = module.run_method("encode", raw).toTensor();
  EXPECT_EQ(ids.dtype(), torch::kUInt8);
  EXPECT_TRUE(torch::equal(ids, eager));
  EXPECT_TRUE(torch::equal(module.forward({raw}).toTensor(), eager));
  EXPECT_TRUE(torch::equal(module.run_method("embed", raw).toTensor(), m->embed(raw / 255.0)));
  EXPECT_TRUE(torch::equal(module.run_method("decode", eager).toTensor(),
                           search::pq_decode(m->pq_codebooks(), eager)));
  EXPECT_EQ(module.attr("nbits").toInt(), 32);
  EXPECT_EQ(module.attr("M").toInt(), 4);
  EXPECT_EQ(module.attr("K").toInt(), 16);
  EXPECT_EQ(module.attr("method").toStringRef(), "deepquan");

  if (std::system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "/usr/bin/python3 cannot import torch";
  write_raw(dir / "input.f32", raw);
  std::ofstream(dir / "client.py") << R"(import sys, numpy as np, torch
d = sys.argv[1]
m = torch.jit.load(d + "/hasher.pt")
x = torch.from_numpy(np.fromfile(d + "/input.f32", dtype=np.float32).reshape([-1] + list(m.input_shape)))
ids = m.encode(x)
assert ids.dtype == torch.uint8 and ids.shape == (x.shape[0], m.M), (ids.dtype, ids.shape)
ids.numpy().tofile(d + "/ids_py.u8")
)";
  std::string cmd = "/usr/bin/python3 " + (dir / "client.py") + " " + dir.path.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  EXPECT_TRUE(torch::equal(read_raw(dir / "ids_py.u8", {37, 4}, torch::kUInt8), eager));
}

TEST(DeepQuanMethod, RejectsBadOptions) {
  auto ctx = toy_context();
  EXPECT_THROW(make("deepquan", "{bits: 12}", ctx), Error);           // not 8 M
  EXPECT_THROW(make("deepquan", "{bits: 16, M: 2}", ctx), Error);     // both
  EXPECT_THROW(make("deepquan", "{M: 3, code_dim: 8}", ctx), Error);  // M does not divide L
  EXPECT_THROW(make("deepquan", "{M: 2, lambda: 2}", ctx), Error);
  EXPECT_THROW(make("deepquan", "{M: 2, loss: hinge}", ctx), Error);
  EXPECT_THROW(make("deepquan", "{M: 2, margn: 1}", ctx), Error);
  EXPECT_THROW(make("dae_pq", "{M: 2, margin: 1}", ctx), Error);      // not a dae_pq option
  EXPECT_THROW(make("pq", "{M: 3}", ctx), Error);                     // 3 does not divide 64
  EXPECT_THROW(make("deepquan", "{M: 2, K: 300}", ctx), Error);
}

// ---------------------------------------------------------------- ablations

TEST(DeepQuanAblations, DaePQTrainsOnlyTheAutoEncoderThenQuantizes) {
  auto ds = toy_dataset(128);
  data::LoaderOptions lo;
  lo.batch_size(32).drop_last(true).augment(false).prefetch(0);
  data::Loader loader(ds, torch::arange(128, torch::kLong), lo);
  torch::manual_seed(9);
  auto m = make("dae_pq", "{M: 2, K: 8, code_dim: 8, widths: [16]}", toy_context());
  EXPECT_EQ(m->name(), "dae_pq");
  TempDir dir;
  MetricsWriter metrics(dir / "metrics.jsonl", false);
  Trainer trainer(*m, &loader, short_run(20), plain_sgd(0.01), torch::kCPU, "", &metrics);
  trainer.train();
  for (const auto& r : read_events(dir / "metrics.jsonl", "train"))
    EXPECT_EQ(r["quantization"].get<double>(), 0.0);
  auto refreshes = read_events(dir / "metrics.jsonl", "codebook_refresh");
  ASSERT_EQ(refreshes.size(), 1u);  // once, after training
  auto x = loader.batch_at(0).x;
  EXPECT_TRUE(torch::equal(m->encode(x), search::pq_encode(m->pq_codebooks(), m->embed(x))));
}

TEST(DeepQuanAblations, RawPQFitsAndExports) {
  auto ds = toy_dataset(300);
  auto ctx = toy_context();
  auto m = make("pq", "{bits: 32, K: 16, kmeans_iters: 5}", ctx);
  EXPECT_NE(dynamic_cast<FitMethod*>(m.get()), nullptr);
  EXPECT_EQ(m->nbits(), 32);
  data::LoaderOptions lo;
  lo.batch_size(32).prefetch(0);
  data::Loader loader(ds, torch::arange(300, torch::kLong), lo);
  Trainer trainer(*m, &loader, short_run(0), OptimOptions(), torch::kCPU, "", nullptr);
  trainer.train();
  torch::Tensor x = ds.features.to(torch::kFloat32) / 255.0;
  EXPECT_TRUE(torch::equal(trainer.training_set().x(), x));
  auto pq = m->pq_codebooks();
  EXPECT_EQ(pq.codebooks.sizes(), (std::vector<int64_t>{4, 16, 16}));
  // Same as PQ trained directly on the flattened features with the same seed.
  auto ref = search::pq_train(x.flatten(1), 4, 16, 5, ctx.seed);
  EXPECT_TRUE(torch::equal(pq.codebooks, ref.codebooks));
  EXPECT_TRUE(torch::equal(m->encode(x), ref.ids));

  TempDir dir;
  exporter::save_hasher(m->to_torchscript(ctx), dir / "pq.pt");
  auto module = torch::jit::load(dir / "pq.pt");
  auto raw = ds.features.narrow(0, 0, 20).to(torch::kFloat32);
  EXPECT_TRUE(torch::equal(module.run_method("encode", raw).toTensor(), m->encode(raw / 255.0)));
}
