#include "models/sigah/method.h"

#include <cmath>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>

#include "csrc/core/error.h"
#include "csrc/core/logging.h"
#include "models/common/shallow.h"
#include "models/sigah/sigah.h"
#include "trainers/method_export.h"
#include "trainers/method_state.h"
#include "trainers/context.h"

namespace hashlab {
namespace {

struct SiGAHOptions {
  int64_t bits = 32;
  double alpha = 1e-3, lambda = 1e-4, beta = 0.1, gamma = 1e-4, adv_weight = 1.0;
  std::string quant = "bound", graph = "mean";
  double sigma = 0;
  std::string sigma_rule = "knn";
  int64_t sigma_k = 10;
  std::string input_norm = "rms";
  bool straight_through = false;
  double init_gain = 0;
  std::string activation = "leaky_relu";
  double slope = 0.2;
  bool discriminator = true;
  int64_t gen_dim = 0, disc_hidden = 50;

  static SiGAHOptions from_yaml(Section& s) {
    SiGAHOptions o;
    s.get("bits", o.bits, Range{1, 4096});
    s.get("alpha", o.alpha, Range{0, 1e6});
    s.get("lambda", o.lambda, Range{0, 1e6});
    s.get("beta", o.beta, Range{0, 1e6});
    s.get("gamma", o.gamma, Range{0, 1e6});
    s.get("adv_weight", o.adv_weight, Range{0, 1e6});
    s.get_choice("quant", o.quant, {"bound", "literal"});
    s.get_choice("graph", o.graph, {"mean", "paper"});
    s.get("sigma", o.sigma, Range{0, 1e12});
    s.get_choice("sigma_rule", o.sigma_rule, {"knn", "mean"});
    s.get("sigma_k", o.sigma_k, Range{1, 1e6});
    s.get_choice("input_norm", o.input_norm, {"rms", "none"});
    s.get("straight_through", o.straight_through);
    s.get("init_gain", o.init_gain, Range{0, 1e6});
    s.get_choice("activation", o.activation, {"leaky_relu", "relu"});
    s.get("slope", o.slope, Range{0, 1});
    s.get("discriminator", o.discriminator);
    s.get("gen_dim", o.gen_dim, Range{0, 1e8});
    s.get("disc_hidden", o.disc_hidden, Range{1, 1e8});
    s.finish();
    return o;
  }
};

// Parameters that do not require gradients while in scope (the frozen
// discriminator during the generator's update).
struct FreezeGuard {
  std::vector<torch::Tensor> params;
  explicit FreezeGuard(std::vector<torch::Tensor> p) : params(std::move(p)) {
    for (auto& t : params) t.requires_grad_(false);
  }
  ~FreezeGuard() {
    for (auto& t : params) t.requires_grad_(true);
  }
};

class SiGAHMethod : public StepMethod {
 public:
  SiGAHMethod(Section& cfg, const MethodContext& ctx)
      : o_(SiGAHOptions::from_yaml(cfg)), net_(net_options(o_, ctx)), seed_(ctx.seed) {
    state_.add_tensor("mean", torch::kFloat32);  // [d] on the model's device; set by before_train
    state_.add_scalar("sigma", 0);               // the graph's; set by before_train
    // The input unit: RMS of the centred training values (input_norm: rms).
    // Runs saved before it existed were trained on x - mean: rho 1 gives
    // their codes back (a resumed run continues in that unit).
    state_.add_scalar("rho", 1);
    state_.allow_missing("rho", 1.0);
    net_->to(ctx.device);
  }

  std::string name() const override { return "sigah"; }
  int nbits() const override { return static_cast<int>(o_.bits); }
  torch::nn::Module* module() override { return net_.ptr().get(); }

  std::vector<ParameterSet> parameter_sets() override {
    std::vector<ParameterSet> sets = {
        {"generator",
         {{"weights", {net_->W->weight, net_->gen->weight}, 1.0, 1.0},
          {"biases", {net_->gen->bias}, 1.0, 0.0}}}};
    if (o_.discriminator)
      sets.push_back({"discriminator",
                      {{"weights", {net_->enc->weight, net_->dec->weight}, 1.0, 1.0},
                       {"biases", {net_->enc->bias, net_->dec->bias}, 1.0, 0.0}}});
    return sets;
  }

  void before_train(StepContext& ctx) override {
    for (const auto& n : ctx.optimizer_names())
      HL_CHECK(!ctx.reevaluates(n),
               "sigah: each loss is evaluated once per step (one forward pass), but optimizer "
               "'{}' is lbfgs, which re-evaluates it; use sgd, adam or adamw",
               n);
    const TrainingSet& ts = ctx.training_set();
    if (!state_.is_set("mean")) {
      torch::Tensor X = ts.x().flatten(1).to(torch::kFloat32);
      state_.set("mean", X.mean(0));
      state_.set_scalar("rho", 1);
      if (o_.input_norm == "rms") {
        // The root mean square of the centred values, over items and dimensions.
        state_.set_scalar("rho", std::sqrt((X - mean()).to(torch::kFloat64).pow(2).mean().item<double>()));
        HL_CHECK(rho() > 0, "sigah: every training item is the same; nothing to hash");
      }
      if (o_.init_gain > 0) gaussian_init();
    }
    if (sigma() <= 0)
      state_.set_scalar("sigma", o_.sigma > 0 ? o_.sigma : sigma_from(ts, ctx.batch_size()));
    // Every rank computed them from the same data; rank 0's, to the last bit.
    state_.broadcast(ctx.dp(), {"mean", "sigma", "rho"});
    state_.to(ctx.device());
    log().info("sigah: inputs (x - mean) / {:.6g}; graph sigma {:.6g} ({})", rho(), sigma(),
               o_.sigma > 0 ? "given" : o_.sigma_rule == "knn"
                                          ? fmt::format("1 / mean distance to the {}th nearest "
                                                        "item of a batch",
                                                        o_.sigma_k)
                                          : std::string("1 / mean pairwise distance"));
    if (ctx.metrics())
      ctx.metrics()->write("sigah",
                               {{"sigma", sigma()}, {"rho", rho()}, {"train_size", ts.size()}});
  }

  LossMap step(const Batch& batch, StepContext& ctx) override {
    torch::Tensor x = normalise(batch.x);
    // The forward pass, once: both updates use it (the discriminator's step
    // does not touch W, W_g, c_g).
    torch::Tensor h = torch::tanh(net_->project(x));
    // straight_through: the generator reads the codes sign(h) (its input in
    // the paper), the gradient passes through tanh as if it read h.
    torch::Tensor g =
        net_->generate(o_.straight_through ? h + (torch::sign(h) - h).detach() : h);
    torch::Tensor xhat = net_->reconstruct(g);
    LossMap out;
    if (o_.discriminator) {
      LossMap d = ctx.optimize("discriminator", [&] {
        torch::Tensor e_real = net_->energy(x), e_fake = net_->energy(xhat.detach());
        torch::Tensor loss = e_real.mean() + torch::relu(o_.beta - e_fake).mean();
        return LossMap{{"loss", loss},
                       {"energy_real", e_real.mean().detach()},
                       {"energy_fake", e_fake.mean().detach()}};
      }, LossScope::local);
      out.emplace_back("loss_d", d[0].second.detach());
      out.insert(out.end(), d.begin() + 1, d.end());
    }
    LossMap gl = ctx.optimize("generator", [&] {
      FreezeGuard frozen({net_->enc->weight, net_->enc->bias, net_->dec->weight, net_->dec->bias});
      // The batch means, over the global batch when data-parallel (one
      // collective for the four); the graph couples items, so it is built
      // over every rank's rows (the gradient flows through this rank's h).
      torch::Tensor adv_local = o_.discriminator && o_.adv_weight > 0
                                    ? net_->energy(xhat).mean()
                                    : torch::zeros({}, x.options());
      std::vector<torch::Tensor> means =
          ctx.dp().mean_over_ranks(torch::stack({(xhat - x).norm(2, 1).mean(),
                                             models::sigah_quantization(h, o_.quant),
                                             g.norm(2, 1).mean(), adv_local}))
              .unbind();
      const torch::Tensor &recon = means[0], &quant = means[1], &sparsity = means[2],
                          &adv = means[3];
      torch::Tensor graph = models::sigah_graph_loss(
          ctx.dp().all_gather(h),
          models::sigah_similarity(ctx.dp().all_gather(x.detach()), sigma()), o_.graph);
      torch::Tensor loss = recon + o_.alpha * quant + o_.lambda * sparsity + o_.gamma * graph +
                           o_.adv_weight * adv;
      return LossMap{{"loss", loss},           {"recon", recon.detach()},
                     {"quant", quant.detach()}, {"sparsity", sparsity.detach()},
                     {"graph", graph.detach()}, {"adv", adv.detach()}};
    }, LossScope::global);
    out.emplace_back("loss_g", gl[0].second.detach());
    out.insert(out.end(), gl.begin() + 1, gl.end());
    return out;
  }

  // The discriminator's loss is a mean over items (local); the generator's
  // is the global batch's (gathered graph, means over ranks).
  bool supports_data_parallel() const override { return true; }

  torch::Tensor embed(const torch::Tensor& x) override {
    TORCH_CHECK(state_.is_set("mean"), "sigah used before training");
    torch::NoGradGuard no_grad;
    return linear().project(x.flatten(1).to(torch::kFloat32).to(torch::kCPU));
  }

  void save(torch::serialize::OutputArchive& a) const override {
    torch::serialize::OutputArchive net;
    net_->save(net);
    a.write("net", net);
    state_.save(a);
  }
  void load(torch::serialize::InputArchive& a) override {
    torch::serialize::InputArchive net;
    if (!a.try_read("net", net)) fail("sigah state: missing 'net'");
    net_->load(net);
    state_.load(a);
    state_.to(net_->W->weight.device());
  }

  torch::jit::Module to_torchscript(const MethodContext& ctx) const override {
    HL_CHECK(state_.is_set("mean"), "sigah: nothing to export before training");
    models::LinearHash h = linear();
    return exporter::export_linear_hasher("sigah", h.W, h.mean, ctx);
  }

 private:
  static models::SiGAHNetOptions net_options(const SiGAHOptions& o, const MethodContext& ctx) {
    models::SiGAHNetOptions n;
    n.input_dim = ctx.input_dim();
    n.bits = o.bits;
    n.gen_dim = o.gen_dim;
    n.disc_hidden = o.disc_hidden;
    n.activation = o.activation;
    n.slope = o.slope;
    n.seed = ctx.seed;
    return n;
  }

  // The network's input: (x - mean) / rho, flattened [N, d].
  torch::Tensor normalise(const torch::Tensor& x) const {
    return (x.flatten(1).to(torch::kFloat32) - mean()) / rho();
  }

  const torch::Tensor& mean() const { return state_.tensor("mean"); }
  double rho() const { return state_.scalar("rho"); }
  double sigma() const { return state_.scalar("sigma"); }

  // The codes' hash: (x - mean) W^T / rho, with the same ATen calls as the
  // export (sign is unchanged by rho > 0; the projection is the network's).
  models::LinearHash linear() const {
    return {mean().to(torch::kCPU, torch::kFloat32),
            (net_->W->weight.detach().to(torch::kCPU, torch::kFloat64) / rho())
                .t()
                .contiguous()
                .to(torch::kFloat32)};
  }

  // init_gain > 0: every weight ~ N(0, gain^2 / fan_in), biases 0 (the
  // paper's "random Gaussian matrices"; the gain sets how saturated tanh
  // starts: W x has standard deviation ~gain on the normalised inputs).
  void gaussian_init() {
    torch::NoGradGuard no_grad;
    auto g = at::make_generator<at::CPUGeneratorImpl>(seed_ ^ 0x9a55u);
    for (torch::nn::Linear* l : {&net_->W, &net_->gen, &net_->enc, &net_->dec}) {
      torch::Tensor w = (*l)->weight;
      w.copy_(at::randn(w.sizes(), g, torch::TensorOptions().dtype(torch::kFloat32)) *
              (o_.init_gain / std::sqrt(static_cast<double>(w.size(1)))));
      if ((*l)->bias.defined()) (*l)->bias.zero_();
    }
  }

  // sigma of S_ij = exp(-sigma ||x_i - x_j||) from the stream's first batches
  // (up to 4) of normalised inputs. knn: 1 / the mean distance from an item
  // to its sigma_k-th nearest other item of the batch, so S is e^-1 at the
  // typical k-th neighbour and falls off beyond (a local scale: with the mean
  // pairwise distance S is nearly flat across classes). mean: 1 / the mean
  // distance between distinct items.
  double sigma_from(const TrainingSet& ts, int64_t batch) const {
    torch::NoGradGuard no_grad;
    torch::Tensor rows = ts.epoch_rows(0);
    double sum = 0;
    int64_t count = 0;
    const bool knn = o_.sigma_rule == "knn";
    HL_CHECK(!knn || o_.sigma_k < batch,
             "sigah: model.sigma_k = {} needs batches of more than {} items (train.batch_size "
             "is {})",
             o_.sigma_k, o_.sigma_k, batch);
    for (int64_t b = 0; b < 4 && (b + 1) * batch <= rows.size(0); ++b) {
      torch::Tensor x = normalise(ts.features(rows.narrow(0, b * batch, batch)).to(mean().device()));
      torch::Tensor dist = torch::cdist(x, x);
      if (knn) {
        // The k-th smallest of each row after the item itself (distance 0).
        sum += std::get<0>(torch::kthvalue(dist, o_.sigma_k + 1, 1)).sum().item<double>();
        count += batch;
      } else {
        sum += dist.sum().item<double>();
        count += batch * (batch - 1);
      }
    }
    HL_CHECK(count > 0 && sum > 0, "sigah: cannot estimate sigma (batches of {} items from {})",
             batch, rows.size(0));
    return static_cast<double>(count) / sum;
  }

  SiGAHOptions o_;
  models::SiGAHNet net_;
  MethodState state_{"sigah"};
  uint64_t seed_ = 0;
};

}  // namespace

void register_sigah(MethodRegistry& registry) {
  registry.add("sigah", method_factory<SiGAHMethod>(),
               "SiGAH (sparsity-induced generative adversarial hashing): a tanh hash layer, a "
               "sparse generator over a random dictionary, an energy discriminator");
}

}  // namespace hashlab
