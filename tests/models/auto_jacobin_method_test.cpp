// Auto-JacoBin as a Method (models/auto_jacobin/method.h): the tied PCA
// initialisation and the stored data scale, each logged cost term against an
// independent computation (the Jacobian term through autograd's D x D
// Jacobians, the contractive term through autograd's dy/dx), the cost falling
// under Wolfe steps, resume, export (with and without b1), the toy of Fig. 3,
// and option errors.
#include <csignal>
#include <filesystem>
#include <map>
#include <set>

#include <unistd.h>

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "csrc/core/config.h"
#include "csrc/core/device.h"
#include "csrc/core/error.h"
#include "csrc/core/signals.h"
#include "csrc/export/script_emitter.h"
#include "datasets/loader.h"
#include "models/auto_jacobin/jacobian_term.h"
#include "models/auto_jacobin/method.h"
#include "models/auto_jacobin/tangents.h"
#include "models/common/shallow.h"
#include "tests/util/python_client.h"
#include "tests/util/train_util.h"
#include "trainers/trainer.h"

namespace fs = std::filesystem;
using namespace hashlab;

namespace {

data::Dataset from_tensor(torch::Tensor x) {
  data::Dataset ds;
  ds.features = x.to(torch::kFloat32).contiguous();
  ds.name = "toy";
  return ds;
}

// Points near a curved 2-D surface in R^D (a manifold with tangents to find).
data::Dataset surface(int64_t n, int64_t D, uint64_t seed) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto o = torch::TensorOptions().dtype(torch::kFloat64);
  auto uv = at::rand({n, 2}, g, o) * 2 - 1;
  auto basis = at::randn({4, D}, g, o);
  auto feats = torch::stack({uv.select(1, 0), uv.select(1, 1), uv.select(1, 0).pow(2),
                             uv.select(1, 0) * uv.select(1, 1)},
                            1);
  return from_tensor(feats.matmul(basis) + 0.01 * at::randn({n, D}, g, o) + 2.0);
}

// 1,000 points uniform on the simplex x1 + x2 + x3 = 1, x > 0 (Fig. 3).
data::Dataset simplex(int64_t n, uint64_t seed) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto e = -torch::log(at::rand({n, 3}, g, torch::TensorOptions().dtype(torch::kFloat64)));
  return from_tensor(e / e.sum(1, true));
}

MethodContext ctx_for(int64_t D, uint64_t seed = 4) {
  MethodContext c;
  c.input_shape = {D};
  c.input_scale = 1.0;
  c.seed = seed;
  return c;
}

std::unique_ptr<Method> make(const std::string& yaml, const MethodContext& ctx) {
  if (!method_registry().has("auto_jacobin")) register_auto_jacobin(method_registry());
  auto cfg = Config::from_string("model: " + yaml);
  Section s = cfg.section("model");
  return method_registry().create("auto_jacobin", "test", s, ctx);
}

OptimOptions lbfgs(bool reset = true) {
  auto cfg = Config::from_string(std::string("optim: {type: lbfgs, lr: 1, history_size: 1, "
                                             "max_iter: 1, line_search: strong_wolfe, "
                                             "schedule: constant, reset_each_step: ") +
                                 (reset ? "true" : "false") + "}\n");
  return OptimOptions::from_yaml(cfg.section("optim"));
}

TrainOptions steps(int64_t n, int64_t batch) {
  TrainOptions t;
  t.iterations = n;
  t.batch_size = batch;
  t.log_every = 1000;
  t.checkpoint_every = 3;
  t.prefetch = 0;
  return t;
}

data::LoaderOptions loader_opts(int64_t batch, uint64_t seed = 2) {
  data::LoaderOptions o;
  o.batch_size(batch).drop_last(true).prefetch(0).seed(seed);
  return o;
}

// Records the losses of every step.
struct Recorder : TrainerHook {
  std::vector<std::map<std::string, double>> steps;
  void after_step(Trainer&, const LossMap& losses) override {
    std::map<std::string, double> m;
    for (const auto& [k, v] : losses) m[k] = v.item<double>();
    steps.push_back(m);
  }
};

struct Params {
  torch::Tensor W1, b1, W2, b2;
};
Params params_of(Method& m) {
  std::map<std::string, torch::Tensor> p;
  for (const auto& kv : m.module()->named_parameters()) p[kv.key()] = kv.value().detach().clone();
  return {p.at("W1"), p.at("b1"), p.at("W2"), p.at("b2")};
}

// Trains `m` for `n` steps of `batch` items (n = 0: only the initialisation).
std::shared_ptr<Recorder> train(Method& m, const data::Dataset& ds, int64_t n, int64_t batch,
                                const std::string& dir = "", bool reset = true) {
  auto rec = std::make_shared<Recorder>();
  data::Loader l(ds, torch::arange(ds.size(), torch::kLong), loader_opts(batch));
  Trainer t(m, &l, steps(n, batch), lbfgs(reset), torch::kCPU, dir, nullptr);
  t.add_hook(rec);
  t.train();
  return rec;
}

fs::path tmpdir(const std::string& name) {
  auto p = fs::temp_directory_path() / ("hl_aj_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// Distinct codes of `x` under sign(s x W1^T + b1) (with_bias) or sign(s x W1^T).
int64_t distinct_codes(Method& m, const torch::Tensor& x, bool with_bias) {
  auto v = m.embed(x);  // s x W1^T + b1 (the method is built with code_bias: true)
  if (!with_bias) v = v - params_of(m).b1;
  auto bits = (v >= 0).to(torch::kLong);
  auto key = (bits * torch::pow(2, torch::arange(bits.size(1), torch::kLong))).sum(1);
  return std::get<0>(at::_unique(key)).numel();
}

// Loads `from`'s saved state into `to` through an in-memory archive, as a checkpoint would.
void load_state(Method& from, Method& to) {
  torch::serialize::OutputArchive out;
  from.save(out);
  hashlab::testing::load_archive(out, to);
}

}  // namespace

TEST(AutoJacoBinMethod, InitialisationIsTiedPCAWithTheStoredScale) {
  set_threads(1);
  const int64_t D = 12, d = 3;
  auto ds = surface(300, D, 1);
  auto m = make("{bits: 3}", ctx_for(D));
  train(*m, ds, 0, 100);  // before_train only
  Params p = params_of(*m);
  auto X = ds.features.to(torch::kFloat64);
  const double s = 0.8 / X.norm(2, 1).max().item<double>();
  auto mu = (X * s).mean(0);
  auto W1 = p.W1.to(torch::kFloat64);
  // W2 = W1^T, b1 = -W1 mu, b2 = mu; W1's rows orthonormal, spanning the top-d PCA subspace.
  EXPECT_TRUE(torch::equal(p.W2, p.W1.t()));
  EXPECT_TRUE(torch::allclose(p.b1.to(torch::kFloat64), -W1.matmul(mu), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(p.b2.to(torch::kFloat64), mu, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(W1.matmul(W1.t()), torch::eye(d, torch::kFloat64), 1e-5, 1e-5));
  auto P = models::pca_directions(X * s - mu, d);
  EXPECT_TRUE(torch::allclose(W1.t().matmul(W1), P.matmul(P.t()), 1e-4, 1e-4));
  // A random rotation, not the PCA directions themselves.
  EXPECT_FALSE(torch::allclose(W1.abs(), P.t().abs(), 1e-2, 1e-2));
  // embed = s x W1^T + b1 with s = 0.8 / max ||x|| over the training set.
  auto expect = X.matmul(W1.t()) * s + p.b1.to(torch::kFloat64);
  EXPECT_TRUE(torch::allclose(m->embed(ds.features).to(torch::kFloat64), expect, 1e-4, 1e-5));
}

TEST(AutoJacoBinMethod, LoggedTermsEqualAnIndependentComputation) {
  set_threads(1);
  const int64_t D = 8, d = 3, B = 60;
  auto ds = surface(240, D, 2);
  for (std::string yaml : {"{bits: 3, alpha: 0.3}", "{bits: 3, jacobian: false, contractive: 0.7}"}) {
    SCOPED_TRACE(yaml);
    auto m = make(yaml, ctx_for(D));
    train(*m, ds, 0, B);
    Params p = params_of(*m);
    auto rec = train(*m, ds, 1, B);  // same loader seed: batch 0 again
    ASSERT_EQ(rec->steps.size(), 1u);
    const auto& got = rec->steps[0];
    // The first batch, the scale and the tangents, computed here.
    data::Loader l(ds, torch::arange(ds.size(), torch::kLong), loader_opts(B));
    auto batch = l.next();
    auto o = torch::TensorOptions().dtype(torch::kFloat64);
    auto Xall = ds.features.to(torch::kFloat64);
    const double s = 0.8 / Xall.norm(2, 1).max().item<double>();
    auto x = batch.x.to(torch::kFloat64) * s;
    auto W1 = p.W1.to(o).requires_grad_(), b1 = p.b1.to(o), W2 = p.W2.to(o), b2 = p.b2.to(o);
    auto y = torch::tanh(x.matmul(W1.t()) + b1);
    auto z = torch::tanh(y.matmul(W2.t()) + b2);
    double recon = (x - z).pow(2).sum().item<double>();
    auto M = y.t().matmul(y) - double(B) * torch::eye(d, o);
    double binary = torch::sqrt(M * M + 1e-4).sum().item<double>();
    EXPECT_NEAR(got.at("recon"), recon, 1e-4 * recon);
    EXPECT_NEAR(got.at("binary"), binary, 1e-4 * binary);
    double loss = recon;
    if (got.count("jacobian")) {
      models::TangentOptions to;
      to.d = d;
      to.seed = 4;
      auto T = models::local_tangents(ds.features, to).T.index_select(0, batch.index).to(o);
      double jac = models::jacobian_term_reference(x, W1.detach(), b1, W2, b2, T).item<double>();
      EXPECT_NEAR(got.at("jacobian"), jac, 1e-3 * jac);
      loss += jac + 0.3 * binary;
      EXPECT_EQ(got.count("contractive"), 0u);
    } else {
      // ||dy/dx||_F^2 summed over the batch, through autograd (one grad per hidden unit).
      auto xr = x.clone().requires_grad_();
      auto yr = torch::tanh(xr.matmul(W1.t()) + b1);
      double c = 0;
      for (int64_t k = 0; k < d; ++k)
        c += torch::autograd::grad({yr.select(1, k).sum()}, {xr}, {}, true)[0].pow(2).sum().item<double>();
      EXPECT_NEAR(got.at("contractive"), c, 1e-4 * c);
      loss += 0.1 * binary + 0.7 * c;
    }
    EXPECT_NEAR(got.at("loss"), loss, 1e-4 * loss);
    EXPECT_GE(got.at("evals"), 1.0);
  }
}

TEST(AutoJacoBinMethod, CostFallsEveryStepOnTheWholeSet) {
  // With one batch holding every item each step sees the same cost, and a
  // step accepted by the Wolfe line search must lower it (Armijo).
  set_threads(1);
  const int64_t D = 8;
  auto ds = surface(120, D, 3);
  for (std::string yaml : {"{bits: 3}", "{bits: 3, jacobian: false}"}) {
    SCOPED_TRACE(yaml);
    auto m = make(yaml, ctx_for(D));
    auto rec = train(*m, ds, 8, 120);
    ASSERT_EQ(rec->steps.size(), 8u);
    for (size_t i = 1; i < rec->steps.size(); ++i)
      EXPECT_LT(rec->steps[i].at("loss"), rec->steps[i - 1].at("loss")) << "step " << i;
  }
}

TEST(AutoJacoBinMethod, ResumedRunIsBitIdenticalAndExportMatchesEncode) {
  set_threads(1);
  const int64_t D = 10;
  auto ds = surface(200, D, 5);
  auto ctx = ctx_for(D);
  auto run = [&](const std::string& yaml, const std::string& name, int64_t interrupt_at) {
    return hashlab::testing::train_or_resume([&] { return make(yaml, ctx); }, ds,
                                             torch::arange(200, torch::kLong), loader_opts(50),
                                             steps(8, 50), lbfgs(), tmpdir(name), interrupt_at);
  };
  // Auto-JacoBin (tangents recomputed on resume) and DAutoBin (noise drawn from the restored RNG).
  for (std::string yaml :
       {"{bits: 4}", "{bits: 4, jacobian: false, noise: 0.2}", "{bits: 4, input_pca: 6}"}) {
    SCOPED_TRACE(yaml);
    auto whole = run(yaml, "whole", -1);
    auto resumed = run(yaml, "cut", 3);
    Params a = params_of(*whole), b = params_of(*resumed);
    EXPECT_TRUE(torch::equal(a.W1, b.W1));
    EXPECT_TRUE(torch::equal(a.b1, b.b1));
    EXPECT_TRUE(torch::equal(a.W2, b.W2));
    EXPECT_TRUE(torch::equal(a.b2, b.b2));
    EXPECT_TRUE(torch::equal(whole->encode(ds.features), resumed->encode(ds.features)));
  }

  // Export, with b1 and without: the reloaded module gives encode()'s codes.
  auto with_b = run("{bits: 4}", "b", -1);
  auto dir = tmpdir("export");
  for (bool bias : {true, false}) {
    SCOPED_TRACE(bias);
    auto m = make(bias ? "{bits: 4}" : "{bits: 4, code_bias: false}", ctx);
    load_state(*with_b, *m);
    exporter::save_hasher(m->to_torchscript(ctx), (dir / "h.pt").string());
    auto module = torch::jit::load((dir / "h.pt").string());
    EXPECT_TRUE(torch::equal(module.run_method("encode", ds.features).toTensor(),
                             m->encode(ds.features)));
    if (auto py = hashlab::testing::python_encode(dir / "h.pt", ds.features, 1)) {
      ASSERT_TRUE(py->defined()) << "the Python client failed";
      EXPECT_TRUE(torch::equal(*py, m->encode(ds.features)));
    }
    auto v = m->embed(ds.features);
    auto wb = with_b->embed(ds.features);
    EXPECT_TRUE(torch::allclose(bias ? wb : wb - params_of(*with_b).b1, v, 1e-5, 1e-6));
  }
  // With the input PCA the exported hash is the composite sign(W1 s P^T (x - mu) + b1).
  for (bool bias : {true, false}) {
    SCOPED_TRACE(bias);
    std::string yaml =
        bias ? "{bits: 4, input_pca: 6}" : "{bits: 4, input_pca: 6, code_bias: false}";
    auto trained = run("{bits: 4, input_pca: 6}", "pca", -1);
    auto m = make(yaml, ctx);
    load_state(*trained, *m);
    exporter::save_hasher(m->to_torchscript(ctx), (dir / "h.pt").string());
    auto module = torch::jit::load((dir / "h.pt").string());
    EXPECT_TRUE(torch::equal(module.run_method("encode", ds.features).toTensor(),
                             m->encode(ds.features)));
    // embed against the definition: PCA of the training set (all 200 items), then the net.
    auto X = ds.features.to(torch::kFloat64);
    auto mu = X.mean(0);
    auto P = models::pca_directions(X - mu, 6).to(torch::kFloat64);
    auto xp = (X - mu).matmul(P);
    const double s = 0.8 / xp.norm(2, 1).max().item<double>();
    Params p = params_of(*m);
    auto expect = (xp * s).matmul(p.W1.to(torch::kFloat64).t());
    if (bias) expect = expect + p.b1.to(torch::kFloat64);
    EXPECT_TRUE(torch::allclose(m->embed(ds.features).to(torch::kFloat64), expect, 1e-4, 1e-5));
  }
  // A checkpoint without the input PCA is refused by a model that expects one, by name.
  {
    auto plain = run("{bits: 4}", "plain", -1);
    // A state saved before input_pca existed (no PCA keys) loads as no input PCA.
    torch::serialize::OutputArchive old, net;
    plain->module()->save(net);
    old.write("net", net);
    old.write("scale", torch::tensor(0.125, torch::kFloat64));
    old.write("initialised", torch::tensor(int64_t{1}));
    auto legacy = make("{bits: 4}", ctx);
    hashlab::testing::load_archive(old, *legacy);
    Params p = params_of(*plain);
    EXPECT_TRUE(torch::allclose(legacy->embed(ds.features),
                                torch::addmm(p.b1, ds.features * 0.125, p.W1.t()), 1e-5, 1e-5));
    auto m = make("{bits: 4, input_pca: 6}", ctx);
    try {
      load_state(*plain, *m);
      ADD_FAILURE() << "no error";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find("model.input_pca = 6"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(make("{bits: 4}", ctx)->encode_options(), std::vector<std::string>{"code_bias"});
  for (const char* name : {"whole", "cut", "b", "export", "pca", "plain"})
    fs::remove_all(tmpdir(name));
}

// The codes do not depend on the unit the data is stored in: the method scales
// its input by 0.8 / max ||x|| (after the input PCA when there is one), so the
// same items 255 times larger train to the same codes.
TEST(AutoJacoBinMethod, UnitOfTheDataDoesNotChangeTheCodes) {
  set_threads(1);
  auto small = surface(200, 10, 5);
  auto large = small;
  large.features = small.features * 255;
  for (std::string yaml : {"{bits: 4}", "{bits: 4, input_pca: 6}", "{bits: 4, jacobian: false}"}) {
    SCOPED_TRACE(yaml);
    auto a = make(yaml, ctx_for(10)), b = make(yaml, ctx_for(10));
    train(*a, small, 6, 50);
    train(*b, large, 6, 50);
    auto ca = a->embed(small.features) >= 0, cb = b->embed(large.features) >= 0;
    const double agree = ca.eq(cb).to(torch::kFloat64).mean().item<double>();
    EXPECT_GE(agree, 0.99);
  }
}

TEST(AutoJacoBinMethod, ToySimplexUsesSevenCodesOnAFixedSeed) {
  // Fig. 3: 3 bits on points of a plane triangle; 3 planes cut a plane into at most
  // 7 regions. The paper's codes are sign(W1 x), without b1. 50 steps of 100 (5 epochs).
  set_threads(1);
  auto ds = simplex(1000, 0);
  auto m = make("{bits: 3}", ctx_for(3, 0));
  train(*m, ds, 50, 100);
  EXPECT_EQ(distinct_codes(*m, ds.features, /*with_bias=*/false), 7);
}

TEST(AutoJacoBinMethod, BadOptionsAreNamed) {
  auto ctx = ctx_for(5);
  auto msg = [&](const std::string& yaml) {
    try {
      make(yaml, ctx);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg("{bits: 6}").find("exceeds the input dimension 5"), std::string::npos);
  EXPECT_NE(
      msg("{bits: 3, input_pca: 6}").find("model.input_pca = 6 exceeds the input dimension 5"),
      std::string::npos);
  EXPECT_NE(msg("{bits: 4, input_pca: 3}").find("exceeds the model.input_pca dimension 3"),
            std::string::npos);
  EXPECT_NE(msg("{bits: 4, input_pca: four}").find("or 'bits'; got 'four'"), std::string::npos);
  EXPECT_EQ(msg("{bits: 4, input_pca: bits}"), "no error");
  EXPECT_NE(msg("{bits: 3, tangents: {energyy: 0.9}}").find("energyy"), std::string::npos);
  EXPECT_NE(msg("{bits: 3, noise: 1.5}").find("noise"), std::string::npos);
  // One neighbour is the point alone: the rule (at least 2, or 0) is stated.
  const std::string one = msg("{bits: 3, tangents: {neighbours: 1}}");
  EXPECT_NE(one.find("model.tangents.neighbours"), std::string::npos) << one;
  EXPECT_NE(one.find("give at least 2, or 0 for D + d"), std::string::npos) << one;
  // Too few training items for D + d neighbours is named at the start of training.
  auto m = make("{bits: 3}", ctx);
  auto ds = surface(6, 5, 1);
  try {
    train(*m, ds, 1, 6);
    ADD_FAILURE() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("D + d = 8 neighbours"), std::string::npos) << e.what();
  }
}

TEST(AutoJacoBinMethod, ToySimplexCodeCountsOverTwentySeeds) {
  // The count of Fig. 3 over seeds 0..19 (model seed = data seed), for
  // Auto-JacoBin and AutoBin, codes with and without b1; printed for the
  // README. Three lines cut the triangle into at most 7 regions, so no count
  // can exceed 7 whatever the training did.
  set_threads(1);
  std::map<std::string, std::vector<int64_t>> counts;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    auto ds = simplex(1000, seed);
    for (std::string v : {"auto_jacobin", "autobin"}) {
      auto m = make(v == "autobin" ? "{bits: 3, jacobian: false}" : "{bits: 3}", ctx_for(3, seed));
      train(*m, ds, 50, 100);
      counts[v + " without b1"].push_back(distinct_codes(*m, ds.features, false));
      counts[v + " with b1"].push_back(distinct_codes(*m, ds.features, true));
    }
  }
  for (const auto& [k, c] : counts) {
    std::map<int64_t, int> hist;
    for (int64_t n : c) {
      EXPECT_LE(n, 7) << k;
      EXPECT_GE(n, 1) << k;
      ++hist[n];
    }
    std::string line;
    for (const auto& [n, times] : hist) line += " " + std::to_string(n) + " codes x" + std::to_string(times);
    std::printf("toy simplex, %s:%s\n", k.c_str(), line.c_str());
  }
}
