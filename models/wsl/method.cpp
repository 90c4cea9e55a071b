#include "models/wsl/method.h"

#include <ATen/CPUGeneratorImpl.h>
#include <nlopt.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

#include <fmt/ranges.h>

#include "csrc/core/error.h"
#include "csrc/core/logging.h"
#include "datasets/splits.h"
#include "csrc/export/script_emitter.h"
#include "models/backbones/backbone.h"
#include "models/common/shallow.h"
#include "models/wsl/wsl.h"
#include "trainers/method_export.h"
#include "trainers/method_state.h"
#include "trainers/context.h"

namespace hashlab {
namespace {

struct WSLOptions {
  int64_t bits = 32;
  double mu = 0.05;
  double nu = 0.6;
  std::string scaling = "normalized";
  std::string value = "quartic";
  int64_t knn = 10;
  double heat_t = 0;
  std::string init = "pca";
  int64_t max_rounds = 5;
  int64_t mma_maxeval = 50;
  double mma_xtol_rel = 1e-6;
  int64_t max_train = 10000;

  static WSLOptions from_yaml(Section& s) {
    WSLOptions o;
    s.get("bits", o.bits, Range{1, 4096});
    s.get("mu", o.mu, Range{0, 1e12});
    s.get("nu", o.nu, Range{0, 1e12});
    s.get_choice("scaling", o.scaling, {"normalized", "paper"});
    s.get_choice("value", o.value, {"quartic", "ln"});
    s.get("knn", o.knn, Range{1, 1e6});
    s.get("heat_t", o.heat_t, Range{0, 1e30});
    s.get_choice("init", o.init, {"pca", "random", "itq"});
    s.get("max_rounds", o.max_rounds, Range{1, 1e6});
    s.get("mma_maxeval", o.mma_maxeval, Range{1, 1e9});
    s.get("mma_xtol_rel", o.mma_xtol_rel, Range{0, 1});
    s.get("max_train", o.max_train, Range{0, 1e12});
    s.finish();
    return o;
  }
};

// What NLopt's callback needs.
struct MMAContext {
  const models::LinearBitProblem* problem;
  int64_t evaluations = 0;
};

double mma_objective(unsigned n, const double* x, double* grad, void* data) {
  auto* c = static_cast<MMAContext*>(data);
  ++c->evaluations;
  torch::Tensor w = torch::from_blob(const_cast<double*>(x), {static_cast<int64_t>(n)},
                                     torch::TensorOptions().dtype(torch::kFloat64));
  torch::Tensor g;
  const double v = c->problem->evaluate(w, grad != nullptr ? &g : nullptr);
  if (grad != nullptr) std::memcpy(grad, g.contiguous().data_ptr<double>(), n * sizeof(double));
  return v;
}

class WSLMethod : public FitMethod {
 public:
  WSLMethod(Section& cfg, const MethodContext& ctx)
      : o_(WSLOptions::from_yaml(cfg)), seed_(ctx.seed) {
    state_.add_tensor("mean", torch::kFloat64);  // [D], set by fit()
    state_.add_tensor("W", torch::kFloat64);     // [D, K], updated a bit at a time
    // Bits accepted in the current round (a resumed fit continues the round).
    state_.add_scalar("accepted_in_round", 0, torch::kLong);
    const int64_t d = ctx.input_dim();
    if ((o_.init == "pca" || o_.init == "itq") && o_.bits > d)
      fail("{}: init {} gives at most {} bits (the input dimension), not {}", cfg.where("init"),
           o_.init, d, o_.bits);
  }

  std::string name() const override { return "wsl"; }
  int nbits() const override { return static_cast<int>(o_.bits); }

  void fit(const TrainingSet& data, FitContext& ctx) override {
    torch::NoGradGuard no_grad;
    torch::Tensor x = data.x().flatten(1).to(torch::kFloat64);
    const int64_t n_all = x.size(0), K = o_.bits;
    if (o_.max_train > 0 && n_all > o_.max_train) {
      std::vector<int64_t> perm = data::permutation(n_all, seed_ ^ 0x5157u);
      perm.resize(static_cast<size_t>(o_.max_train));
      std::sort(perm.begin(), perm.end());
      x = x.index_select(0, torch::tensor(perm, torch::kLong));
    }
    HL_CHECK(x.size(0) > o_.knn, "wsl: {} training items for knn = {}", x.size(0), o_.knn);
    if (!state_.is_set("mean")) state_.set("mean", x.mean(0));
    const torch::Tensor X = (x - state_.tensor("mean")).contiguous();
    auto t0 = std::chrono::steady_clock::now();
    models::KnnGraph graph = models::knn_heat_graph(X, o_.knn, o_.heat_t);
    if (ctx.metrics())
      ctx.metrics()->write(
          "wsl_graph",
          {{"train_size", X.size(0)}, {"dim", X.size(1)}, {"knn", o_.knn}, {"t", graph.t},
           {"mean_degree", graph.mean_degree()},
           {"seconds",
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}});
    if (!state_.is_set("W")) state_.set("W", initial_projections(X));
    const torch::Tensor& W = state_.tensor("W");  // updated in place
    torch::Tensor F = X.mm(W);  // [N, K]: every bit's outputs, updated as bits are accepted

    ctx.begin_units({o_.max_rounds * K, "bit", 1});
    for (int64_t u = ctx.units_done(); u < o_.max_rounds * K; ++u) {
      const int64_t round = u / K, k = u % K;
      if (k == 0) {
        if (round > 0 && accepted_in_round() == 0) {
          log().info("wsl: round {} accepted no bit; stopping", round);
          break;
        }
        state_.set_scalar("accepted_in_round", 0);
      }
      // C_k from the other bits: w_1^t..w_{k-1}^t and w_{k+1}^{t-1}..w_K^{t-1}.
      torch::Tensor F_other = torch::cat({F.slice(1, 0, k), F.slice(1, k + 1, K)}, 1);
      models::LinearBitProblem p(X, graph, F_other, o_.mu, o_.nu, o_.scaling == "normalized",
                                 o_.value);
      torch::Tensor w_prev = W.select(1, k).contiguous();
      const models::WSLTerms before = p.terms(w_prev);
      const double lag_prev = before.lagrangian(o_.mu, o_.nu, o_.value);

      std::vector<double> w(w_prev.data_ptr<double>(), w_prev.data_ptr<double>() + w_prev.numel());
      MMAContext mc{&p};
      nlopt::opt opt(nlopt::LD_MMA, static_cast<unsigned>(w.size()));
      opt.set_min_objective(mma_objective, &mc);
      opt.set_maxeval(static_cast<int>(o_.mma_maxeval));
      opt.set_xtol_rel(o_.mma_xtol_rel);
      double minf = 0;
      std::string status = "ok";
      bool solved = true;
      try {
        opt.optimize(w, minf);
      } catch (const nlopt::roundoff_limited&) {
        status = "roundoff_limited";  // w holds the best point found
      } catch (const std::exception& e) {
        status = e.what();
        solved = false;
      }
      torch::Tensor w_new = torch::tensor(w, torch::kFloat64);
      const models::WSLTerms after = p.terms(w_new);
      const double lag_new = after.lagrangian(o_.mu, o_.nu, o_.value);
      // Eq. 12: the Lagrangian fell, and by more than the orthogonality term rose.
      const double d_lag = lag_prev - lag_new;
      const double d_orth = after.orthogonality - before.orthogonality;
      const bool accept = solved && std::isfinite(lag_new) && d_lag > 0 && d_lag > d_orth;
      if (accept) {
        W.select(1, k).copy_(w_new);
        F.select(1, k).copy_(X.mv(w_new));
        state_.set_scalar("accepted_in_round", accepted_in_round() + 1);
      } else if (!solved) {
        log().warn("wsl: MMA failed on bit {} of round {} ({}); the bit keeps its projection", k,
                   round + 1, status);
      }
      const models::WSLTerms& kept = accept ? after : before;
      auto val = [](double v) { return torch::tensor(v, torch::kFloat64); };
      ctx.unit_done({{"lagrangian", val(accept ? lag_new : lag_prev)},
                         {"loss", val(kept.loss_ln)},
                         {"loss_quartic", val(kept.loss_quartic)},
                         {"consistency", val(kept.consistency)},
                         {"orthogonality", val(kept.orthogonality)},
                         {"accepted", val(accept ? 1.0 : 0.0)},
                         {"round", val(static_cast<double>(round + 1))},
                         {"bit", val(static_cast<double>(k))},
                         {"evaluations", val(static_cast<double>(mc.evaluations))},
                         {"accepted_in_round", val(static_cast<double>(accepted_in_round()))}});
    }
  }

  torch::Tensor embed(const torch::Tensor& x) override {
    TORCH_CHECK(state_.is_set("W"), "wsl used before fit()");
    return linear().project(x.flatten(1).to(torch::kFloat32));
  }

  void save(torch::serialize::OutputArchive& a) const override {
    state_.save(a);
  }
  void load(torch::serialize::InputArchive& a) override {
    state_.load(a);
    const torch::Tensor& W = state_.tensor("W");
    if (state_.is_set("W"))
      HL_CHECK(W.dim() == 2 && W.size(1) == o_.bits, "wsl state: W is [{}], the config has {} bits",
               fmt::join(W.sizes().vec(), ", "), o_.bits);
  }

  torch::jit::Module to_torchscript(const MethodContext& ctx) const override {
    HL_CHECK(state_.is_set("W"), "wsl: nothing to export before fitting");
    models::LinearHash h = linear();
    return exporter::export_linear_hasher("wsl", h.W, h.mean, ctx);
  }

 private:
  // The float32 hash the codes and the export use.
  models::LinearHash linear() const {
    return {state_.tensor("mean").to(torch::kFloat32), state_.tensor("W").to(torch::kFloat32)};
  }

  int64_t accepted_in_round() const {
    return static_cast<int64_t>(state_.scalar("accepted_in_round"));
  }

  // Starting projections [D, K] (double), each scaled so that f = X w has
  // unit standard deviation on the training items.
  torch::Tensor initial_projections(const torch::Tensor& X) const {
    const int64_t D = X.size(1), K = o_.bits;
    torch::Tensor W;
    if (o_.init == "random") {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(seed_);
      W = at::randn({D, K}, gen, torch::TensorOptions().dtype(torch::kFloat64));
    } else if (o_.init == "pca") {
      W = models::pca_directions(X, K);
    } else {
      W = models::fit_itq(X.to(torch::kFloat32), K, 50, seed_).W.to(torch::kFloat64);
    }
    torch::Tensor sd = X.mm(W).std(0).clamp_min(1e-12);
    return (W / sd.unsqueeze(0)).contiguous();
  }

  WSLOptions o_;
  uint64_t seed_;
  MethodState state_{"wsl"};
};


// ------------------------------------------------------------------ wsl_mlp

// f = head(backbone(x)): no tanh, the W-shape loss pulls f towards +-1.
class WSLNetImpl : public torch::nn::Module {
 public:
  WSLNetImpl(models::Backbone bb, int64_t bits) : backbone(std::move(bb)) {
    register_module("backbone", backbone);
    head = register_module("head", torch::nn::Linear(backbone->feature_dim(), bits));
  }
  torch::Tensor forward(const torch::Tensor& x) { return head->forward(backbone->forward(x)); }
  std::string emit_torchscript(exporter::ScriptEmitter& e, const std::string& x) const {
    return exporter::emit_linear(e, "head.", *head, backbone->emit_torchscript(e, "backbone.", x));
  }
  models::Backbone backbone;
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(WSLNet);

struct WSLDeepOptions {
  int64_t bits = 32;
  models::BackboneOptions backbone;
  double mu = 0.05;
  double nu = 0.6;
  std::string scaling = "normalized";
  int64_t knn = 10;

  static WSLDeepOptions from_yaml(Section& s) {
    WSLDeepOptions o;
    o.backbone.name = "mlp";
    o.backbone.widths = {1024};
    s.get("bits", o.bits, Range{1, 4096});
    if (s.has("backbone")) o.backbone = models::BackboneOptions::from_yaml(s.sub("backbone"));
    s.get("mu", o.mu, Range{0, 1e12});
    s.get("nu", o.nu, Range{0, 1e12});
    s.get_choice("scaling", o.scaling, {"normalized", "paper"});
    s.get("knn", o.knn, Range{1, 1e6});
    s.finish();
    return o;
  }
};

class WSLDeepMethod : public StepMethod {
 public:
  WSLDeepMethod(Section& cfg, const MethodContext& ctx)
      : o_(WSLDeepOptions::from_yaml(cfg)),
        net_(models::make_backbone(o_.backbone, ctx.input_shape), o_.bits) {
    net_->to(ctx.device);
  }

  std::string name() const override { return "wsl_mlp"; }
  int nbits() const override { return static_cast<int>(o_.bits); }
  torch::nn::Module* module() override { return net_.ptr().get(); }
  std::vector<ParamGroup> param_groups() override {
    return {ParamGroup{"net", net_->parameters(), 1.0, 1.0}};
  }

  // Every term is the global batch's: the kNN graph and the orthogonality
  // couple items, so the outputs and inputs of every rank are gathered.
  bool supports_data_parallel() const override { return true; }
  // Global: the loss couples every item of the global batch (gathered rows).
  LossScope training_loss_scope() const override { return LossScope::global; }

  LossMap training_step(const Batch& batch, StepContext& ctx) override {
    HL_CHECK(batch.x.size(0) * ctx.dp().world_size() > 1, "wsl_mlp: batches need at least 2 items");
    torch::Tensor F = ctx.dp().all_gather(net_->forward(batch.x));
    const torch::Tensor x = ctx.dp().all_gather(batch.x.detach().flatten(1).to(torch::kCPU));
    // The batch's kNN graph on its inputs (no gradient through it).
    models::KnnGraph g = models::knn_heat_graph(x, std::min<int64_t>(o_.knn, x.size(0) - 1));
    g.src = g.src.to(F.device());
    g.dst = g.dst.to(F.device());
    g.weight = g.weight.to(F.device());
    g.degree = g.degree.to(F.device());
    models::WSLBatchTerms t = models::wsl_batch_terms(F, g, o_.scaling == "normalized");
    torch::Tensor loss = t.loss + o_.mu * t.consistency + o_.nu * t.orthogonality;
    return {{"loss", loss},
            {"loss_quartic", t.loss_quartic},
            {"consistency", t.consistency.detach()},
            {"orthogonality", t.orthogonality.detach()}};
  }

  torch::Tensor embed(const torch::Tensor& x) override {
    torch::NoGradGuard no_grad;
    const bool was_training = net_->is_training();
    net_->eval();
    torch::Tensor f = net_->forward(x);
    if (was_training) net_->train();
    return f;
  }

  void save(torch::serialize::OutputArchive& a) const override {
    torch::serialize::OutputArchive net;
    net_->save(net);
    a.write("net", net);
  }
  void load(torch::serialize::InputArchive& a) override {
    torch::serialize::InputArchive net;
    if (!a.try_read("net", net)) fail("wsl_mlp state: no 'net'");
    net_->load(net);
  }

  torch::jit::Module to_torchscript(const MethodContext& ctx) const override {
    auto spec = exporter::hasher_spec(ctx, name(), o_.bits);
    return exporter::build_hasher(spec, [&](exporter::ScriptEmitter& e, const std::string& x) {
      return net_->emit_torchscript(e, x);
    });
  }

 private:
  WSLDeepOptions o_;
  WSLNet net_;
};

}  // namespace

void register_wsl(MethodRegistry& registry) {
  registry.add(
      "wsl", method_factory<WSLMethod>(),
      "WSL (Zheng & Huang, AAAI 2018): W-shape loss, bitwise divide and conquer with MMA");
  registry.add(
      "wsl_mlp", method_factory<WSLDeepMethod>(),
      "WSL's objective on a deep network (beyond the paper): W-shape loss with the batch's "
      "kNN consistency and orthogonality, trained by gradient steps");
}

}  // namespace hashlab
