#include "models/auto_jacobin/method.h"

#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <cstdlib>
#include <vector>

#include "csrc/core/error.h"
#include "csrc/core/logging.h"
#include "models/auto_jacobin/jacobian_term.h"
#include "models/auto_jacobin/tangents.h"
#include "models/common/shallow.h"
#include "trainers/method_export.h"
#include "trainers/method_state.h"
#include "trainers/context.h"

namespace hashlab {
namespace {

struct AutoJacoBinOptions {
  int64_t bits = 32;
  double alpha = 0.1, epsilon = 1e-4;
  bool jacobian = true;
  double noise = 0, contractive = 0, scale = 0.8;
  bool code_bias = true;
  int64_t input_pca = 0;
  models::TangentOptions tangents;

  static AutoJacoBinOptions from_yaml(Section& s) {
    AutoJacoBinOptions o;
    s.get("bits", o.bits, Range{1, 4096});
    s.get("alpha", o.alpha, Range{0, 1e12});
    s.get("epsilon", o.epsilon, Range{1e-30, 1e12});
    s.get("jacobian", o.jacobian);
    s.get("noise", o.noise, Range{0, 0.999});
    s.get("contractive", o.contractive, Range{0, 1e12});
    s.get("scale", o.scale, Range{1e-12, 1e12});
    s.get("code_bias", o.code_bias);
    // input_pca: 0 (off), a number of directions, or "bits" (the paper's d = D).
    if (s.has("input_pca")) {
      std::string v;
      s.get("input_pca", v);
      if (v == "bits") {
        o.input_pca = o.bits;
      } else {
        char* end = nullptr;
        const long long n = std::strtoll(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0' || n < 0 || n > 1000000000)
          fail("{}: expected 0, a number of principal directions, or 'bits'; got '{}'",
               s.where("input_pca"), v);
        o.input_pca = n;
      }
    }
    Section t = s.sub("tangents");
    t.get("neighbours", o.tangents.neighbours, Range{0, 1e9});
    // k counts the point itself: one "neighbour" leaves no neighbourhood.
    if (o.tangents.neighbours == 1)
      fail("{}: 1 neighbour is the point alone (it counts itself); give at least 2, or 0 for "
           "D + d",
           t.where("neighbours"));
    t.get("energy", o.tangents.energy, Range{1e-9, 1});
    t.get("iters", o.tangents.iters, Range{0, 100});
    t.get("oversample", o.tangents.oversample, Range{0, 4096});
    t.get("block", o.tangents.block, Range{1, 1e6});
    t.finish();
    s.finish();
    o.tangents.d = o.bits;
    return o;
  }
};

// The auto-encoder's parameters (method.h): W1 [d, D], b1 [d], W2 [D, d], b2 [D].
struct AutoEncoderImpl : torch::nn::Module {
  AutoEncoderImpl(int64_t D, int64_t d)
      : W1(register_parameter("W1", torch::zeros({d, D}))),
        b1(register_parameter("b1", torch::zeros({d}))),
        W2(register_parameter("W2", torch::zeros({D, d}))),
        b2(register_parameter("b2", torch::zeros({D}))) {}
  torch::Tensor W1, b1, W2, b2;
};
TORCH_MODULE(AutoEncoder);

// A seeded uniformly random d x d rotation (QR of a Gaussian matrix, signs
// fixed by R's diagonal), float64.
torch::Tensor random_rotation(int64_t d, uint64_t seed) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto G = at::randn({d, d}, g, torch::TensorOptions().dtype(torch::kFloat64));
  auto [Q, R] = torch::linalg_qr(G);
  return Q * torch::sign(R.diagonal()).unsqueeze(0);
}

class AutoJacoBinMethod : public StepMethod {
 public:
  AutoJacoBinMethod(Section& cfg, const MethodContext& ctx)
      : o_(AutoJacoBinOptions::from_yaml(cfg)),
        D_in_(ctx.input_dim()),
        D_(o_.input_pca > 0 ? o_.input_pca : D_in_),
        seed_(ctx.seed),
        net_(D_, o_.bits) {
    HL_CHECK(o_.input_pca <= D_in_,
             "auto_jacobin: model.input_pca = {} exceeds the input dimension {}", o_.input_pca,
             D_in_);
    HL_CHECK(o_.bits <= D_,
             "auto_jacobin: model.bits = {} exceeds the {} dimension {} (PCA initialisation "
             "needs d <= D)",
             o_.bits, o_.input_pca > 0 ? "model.input_pca" : "input", D_);
    state_.add_scalar("scale", 1.0);  // s of §III-B, set by initialise()
    state_.add_scalar("initialised", 0, torch::kLong);
    // input_pca: [D_in] and [D_in, D] float64, CPU. States saved before
    // input_pca existed have neither: no input PCA.
    state_.add_tensor("pca_mean", torch::kFloat64);
    state_.add_tensor("pca_dirs", torch::kFloat64);
    state_.allow_missing("pca_mean");
    state_.allow_missing("pca_dirs");
    net_->to(ctx.device);
  }

  std::string name() const override { return "auto_jacobin"; }
  int nbits() const override { return static_cast<int>(o_.bits); }
  torch::nn::Module* module() override { return net_.ptr().get(); }

  std::vector<ParamGroup> param_groups() override {
    return {{"weights", {net_->W1, net_->W2}, 1.0, 1.0}, {"biases", {net_->b1, net_->b2}, 1.0, 0.0}};
  }

  void before_train(StepContext& ctx) override {
    const TrainingSet& ts = ctx.training_set();
    torch::Tensor X = ts.x().flatten(1).to(torch::kFloat32);
    HL_CHECK(X.size(1) == D_in_,
             "auto_jacobin: training items have {} values, the model expects {}", X.size(1),
             D_in_);
    if (!initialised() && o_.input_pca > 0) fit_input_pca(X);
    X = project(X);
    if (!initialised()) initialise(X);
    // The data scale: rank 0's, to the last bit (its parameters are broadcast by the trainer).
    state_.broadcast(ctx.dp(), {"scale"});
    if (o_.jacobian) {
      HL_CHECK(X.size(0) > D_ + o_.bits || o_.tangents.neighbours > 0,
               "auto_jacobin: the tangents need D + d = {} neighbours but the training set has {} "
               "items (set model.tangents.neighbours, or model.jacobian: false)",
               D_ + o_.bits, X.size(0));
      auto t0 = std::chrono::steady_clock::now();
      models::TangentOptions to = o_.tangents;
      to.seed = seed_;
      log().info("auto_jacobin: local tangents of {} items ({} neighbours each, d = {})...",
                 X.size(0), to.neighbours > 0 ? to.neighbours : D_ + o_.bits, o_.bits);
      models::Tangents t = models::local_tangents(X, to);
      tangents_ = t.T;
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      auto kept = t.kept.to(torch::kFloat64);
      log().info("auto_jacobin: tangents in {:.1f} s; kept directions: mean {:.2f}, min {}, max {}",
                 secs, kept.mean().item<double>(), t.kept.min().item<int64_t>(),
                 t.kept.max().item<int64_t>());
      if (ctx.metrics())
        ctx.metrics()->write("auto_jacobin",
                                 {{"scale", scale()},
                                  {"train_size", X.size(0)},
                                  {"tangent_seconds", secs},
                                  {"kept_mean", kept.mean().item<double>()},
                                  {"kept_min", t.kept.min().item<int64_t>()},
                                  {"kept_max", t.kept.max().item<int64_t>()}});
    } else if (ctx.metrics()) {
      ctx.metrics()->write("auto_jacobin", {{"scale", scale()}, {"train_size", X.size(0)}});
    }
  }

  void after_train(StepContext&) override { tangents_ = torch::Tensor(); }

  LossMap step(const Batch& batch, StepContext& ctx) override {
    torch::Tensor x = project(batch.x.flatten(1).to(torch::kFloat32)) * scale();
    torch::Tensor T;
    if (o_.jacobian) {
      HL_CHECK(tangents_.defined(), "auto_jacobin: step before the tangents were computed");
      torch::Tensor rows = ctx.training_set().rows_of(batch.index.to(torch::kCPU));
      HL_CHECK(rows.min().item<int64_t>() >= 0,
               "auto_jacobin: a batch item is not in the training set (no tangent basis)");
      T = tangents_.index_select(0, rows).to(x.device());
    }
    // DAutoBin's corruption (eq. 8), drawn once so every evaluation of the
    // line search sees the same noisy batch.
    // Data-parallel: drawn for the global batch, this rank's rows kept.
    torch::Tensor xin = x;
    if (o_.noise > 0) {
      torch::Tensor u = ctx.dp().local_rows(
          torch::rand({x.size(0) * ctx.dp().world_size(), x.size(1)}, x.options()));
      xin = x * (u > o_.noise).to(x.scalar_type());
    }
    int64_t evals = 0;
    // Global: the cost's sums and Gram matrix run over the global batch.
    LossMap out = ctx.optimize(
        "model",
        [&] {
          ++evals;
          return cost(x, xin, T, ctx);
        },
        LossScope::global);
    out.emplace_back("evals", torch::tensor(static_cast<double>(evals), torch::kFloat64));
    return out;
  }

  torch::Tensor embed(const torch::Tensor& x) override {
    HL_CHECK(initialised(), "auto_jacobin used before training");
    torch::NoGradGuard no_grad;
    auto [W, b] = hash_function();
    torch::Tensor v = torch::matmul(torch::flatten(x.to(torch::kFloat32).to(torch::kCPU), 1), W);
    return b.defined() ? v + b : v;
  }

  void save(torch::serialize::OutputArchive& a) const override {
    torch::serialize::OutputArchive net;
    net_->save(net);
    a.write("net", net);
    state_.save(a);
  }
  void load(torch::serialize::InputArchive& a) override {
    torch::serialize::InputArchive net;
    if (!a.try_read("net", net)) fail("auto_jacobin state: missing 'net'");
    net_->load(net);
    state_.set("pca_mean", torch::Tensor());  // unset unless the archive has them
    state_.set("pca_dirs", torch::Tensor());
    state_.load(a);
    const torch::Tensor pm = state_.tensor("pca_mean"), pd = state_.tensor("pca_dirs");
    if (pd.numel() > 0 && pm.numel() == 0)
      fail("auto_jacobin state: 'pca_dirs' without 'pca_mean'");
    if (pd.numel() > 0 && (pd.dim() != 2 || pd.size(0) != D_in_ || pd.size(1) != D_ ||
                           pm.numel() != D_in_))
      fail("auto_jacobin state: an input PCA of {} dimensions and {} values does not fit "
           "model.input_pca = {} on {} values",
           pd.dim(), pd.numel(), o_.input_pca, D_in_);
    if (initialised() && (pd.numel() > 0) != (o_.input_pca > 0))
      fail("auto_jacobin state: trained {} an input PCA, but model.input_pca = {}",
           pd.numel() > 0 ? "with" : "without", o_.input_pca);
    state_.set("pca_mean", pd.numel() > 0 ? pm.to(torch::kFloat64) : torch::Tensor());
    state_.set("pca_dirs", pd.numel() > 0 ? pd.to(torch::kFloat64) : torch::Tensor());
  }

  std::vector<std::string> encode_options() const override { return {"code_bias"}; }

  torch::jit::Module to_torchscript(const MethodContext& ctx) const override {
    HL_CHECK(initialised(), "auto_jacobin: nothing to export before training");
    auto [W, b] = hash_function();
    return exporter::export_linear_hasher("auto_jacobin", W, torch::Tensor(), ctx, b);
  }

 private:
  // The codes' linear function on raw inputs: W [D_in, d] and a bias (or
  // undefined), float, CPU. Without the input PCA W = s W1^T, bias b1; with
  // it W = s P W1^T and bias b1 - mu^T W (sign(W1 s P^T (x - mu) + b1)).
  std::pair<torch::Tensor, torch::Tensor> hash_function() const {
    torch::Tensor W = net_->W1.detach().to(torch::kCPU, torch::kFloat64).t() * scale();
    torch::Tensor b;
    if (o_.code_bias) b = net_->b1.detach().to(torch::kCPU, torch::kFloat64);
    if (state_.is_set("pca_dirs")) {
      W = state_.tensor("pca_dirs").matmul(W);
      torch::Tensor shift = -state_.tensor("pca_mean").matmul(W);
      b = b.defined() ? b + shift : shift;
    }
    return {W.contiguous().to(torch::kFloat32),
            b.defined() ? b.to(torch::kFloat32).contiguous() : b};
  }

  // input_pca: the training set's mean and top principal directions.
  void fit_input_pca(const torch::Tensor& X) {
    torch::NoGradGuard no_grad;
    torch::Tensor X64 = X.to(torch::kFloat64);
    torch::Tensor mean = X64.mean(0);
    state_.set("pca_dirs", models::pca_directions(X64 - mean, o_.input_pca).to(torch::kFloat64));
    state_.set("pca_mean", mean);
    log().info("auto_jacobin: inputs projected on the top {} of {} principal directions",
               o_.input_pca, D_in_);
  }

  // The model's input: (x - mu) P [N, input_pca] with the input PCA, else x.
  torch::Tensor project(const torch::Tensor& x) const {
    if (!state_.is_set("pca_dirs")) return x;
    return (x.to(torch::kFloat64) - state_.tensor("pca_mean").to(x.device()))
        .matmul(state_.tensor("pca_dirs").to(x.device()))
        .to(torch::kFloat32);
  }

  // §III-B: s = scale / max ||x||; the tied PCA initialisation.
  void initialise(const torch::Tensor& X) {
    torch::NoGradGuard no_grad;
    double max_norm = X.to(torch::kFloat64).norm(2, 1).max().item<double>();
    HL_CHECK(max_norm > 0, "auto_jacobin: every training item is zero");
    state_.set_scalar("scale", o_.scale / max_norm);
    torch::Tensor Xs = X.to(torch::kFloat64) * scale();
    torch::Tensor mu = Xs.mean(0);
    torch::Tensor P = models::pca_directions(Xs - mu, o_.bits);  // [D, d]
    torch::Tensor W1 = P.matmul(random_rotation(o_.bits, seed_)).t().contiguous();  // [d, D]
    auto dev = net_->W1.device();
    net_->W1.copy_(W1.to(dev, torch::kFloat32));
    net_->W2.copy_(W1.t().to(dev, torch::kFloat32));
    net_->b1.copy_((-W1.matmul(mu)).to(dev, torch::kFloat32));
    net_->b2.copy_(mu.to(dev, torch::kFloat32));
    state_.set_scalar("initialised", 1);
    log().info("auto_jacobin: data scale {:.6g} (= {} / max norm {:.6g}); PCA initialisation",
               scale(), o_.scale, max_norm);
  }

  double scale() const { return state_.scalar("scale"); }
  bool initialised() const { return state_.scalar("initialised") != 0;
  }

  // Eq. 5 (+ CAutoBin's term) on one batch: x clean [B, D] (scaled), xin the
  // network's input (x, or x corrupted), T [B, D, d] or undefined.
  // Data-parallel: every term is a sum over items and the binary term's Gram
  // matrix y^T y is one too, so this rank's sums and Gram are summed over
  // ranks in one collective (the global batch's cost on every rank).
  LossMap cost(const torch::Tensor& x, const torch::Tensor& xin, const torch::Tensor& T,
               StepContext& ctx) {
    const auto& W1 = net_->W1;
    const auto& b1 = net_->b1;
    const auto& W2 = net_->W2;
    const auto& b2 = net_->b2;
    const int64_t d = o_.bits;
    const double B = static_cast<double>(x.size(0) * ctx.dp().world_size());
    torch::Tensor y = torch::tanh(torch::addmm(b1, xin, W1.t()));
    torch::Tensor z = torch::tanh(torch::addmm(b2, y, W2.t()));
    std::vector<torch::Tensor> local = {torch::mm(y.t(), y).reshape({-1}),
                                        (x - z).pow(2).sum().reshape({1})};
    if (o_.jacobian) local.push_back(models::jacobian_term(x, W1, b1, W2, b2, T).reshape({1}));
    if (o_.contractive > 0) {
      // ||dy/dx||_F^2 = Σ_k (1 - y_k^2)^2 ||W1_k||^2, at the clean input.
      torch::Tensor yc = o_.noise > 0 ? torch::tanh(torch::addmm(b1, x, W1.t())) : y;
      torch::Tensor s2 = (1 - yc * yc).pow(2);  // [B, d]
      local.push_back(torch::mv(s2, W1.pow(2).sum(1)).sum().reshape({1}));
    }
    torch::Tensor sums = ctx.dp().sum_over_ranks(torch::cat(local));
    torch::Tensor M = sums.narrow(0, 0, d * d).reshape({d, d}) - B * torch::eye(d, y.options());
    torch::Tensor recon = sums[d * d];
    torch::Tensor binary = torch::sqrt(M * M + o_.epsilon).sum();
    torch::Tensor loss = recon + o_.alpha * binary;
    LossMap out;
    out.emplace_back("recon", recon.detach());
    int64_t at = d * d + 1;
    if (o_.jacobian) {
      torch::Tensor jac = sums[at++];
      loss = loss + jac;
      out.emplace_back("jacobian", jac.detach());
    }
    out.emplace_back("binary", binary.detach());
    if (o_.contractive > 0) {
      torch::Tensor contractive = sums[at++];
      loss = loss + o_.contractive * contractive;
      out.emplace_back("contractive", contractive.detach());
    }
    out.insert(out.begin(), {"loss", loss});
    return out;
  }

  // Every term is a sum over items (or the Gram matrix's), summed over ranks.
  bool supports_data_parallel() const override { return true; }

  AutoJacoBinOptions o_;
  int64_t D_in_;  // values per raw item
  int64_t D_;     // the auto-encoder's input: input_pca, or D_in_
  uint64_t seed_;
  AutoEncoder net_;
  MethodState state_{"auto_jacobin"};
  torch::Tensor tangents_;  // [N, D, d] float, CPU, by training-set row (while training)
};

}  // namespace

void register_auto_jacobin(MethodRegistry& registry) {
  registry.add("auto_jacobin", method_factory<AutoJacoBinMethod>(),
               "Auto-JacoBin (auto-encoder Jacobian binary hashing) and the AutoBin, DAutoBin, "
               "CAutoBin variants: a tanh auto-encoder fitted to local tangents, codes from its "
               "hidden signs");
}

}  // namespace hashlab
