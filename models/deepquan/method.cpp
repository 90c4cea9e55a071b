#include "models/deepquan/method.h"

#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "csrc/core/error.h"
#include "csrc/core/logging.h"
#include "csrc/search/kmeans.h"
#include "csrc/search/pq.h"
#include "models/deepquan/deepquan.h"
#include "models/deepquan/export.h"
#include "trainers/method_export.h"
#include "trainers/method_state.h"
#include "trainers/context.h"

namespace hashlab {

namespace {

using models::TripletForm;

int64_t input_dim(const MethodContext& ctx) {
  HL_CHECK(!ctx.input_shape.empty(), "deepquan: unknown input shape");
  return ctx.input_dim();
}

// M from `M` or `bits` (= 8 M); exactly one may be given.
int64_t read_subspaces(Section& s, int64_t fallback) {
  int64_t M = fallback, bits = 0;
  const bool has_m = s.has("M"), has_bits = s.has("bits");
  HL_CHECK(!(has_m && has_bits), "{}: give either M or bits (= 8 M), not both", s.full("M"));
  s.get("M", M, Range{1, 4096});
  if (has_bits) {
    s.get("bits", bits, Range{8, 32768});
    HL_CHECK(bits % 8 == 0, "{}: bits must be a multiple of 8 (one byte per subspace), got {}",
             s.full("bits"), bits);
    M = bits / 8;
  }
  return M;
}

struct DeepQuanOptions {
  int64_t M = 8;
  int64_t K = 256;
  int64_t code_dim = 0;  // 0 = 16 M
  std::vector<int64_t> widths = {500, 500, 2000};
  int64_t pretrain_steps = 1000;
  double margin = 1.0;
  double lambda = 0.1;
  double eta = 1.0;
  std::string loss = "triplet";
  std::string triplet = "concat";
  bool reconstruction = true;
  int kmeans_iters = 25;

  static DeepQuanOptions from_yaml(Section& s, bool pretrain_only) {
    DeepQuanOptions o;
    o.M = read_subspaces(s, o.M);
    s.get("K", o.K, Range{2, 256});
    s.get("code_dim", o.code_dim, Range{0, 1e6});
    s.get("widths", o.widths);
    s.get("eta", o.eta, Range{0, 1e6});
    s.get("kmeans_iters", o.kmeans_iters, Range{0, 1e4});
    if (!pretrain_only) {
      s.get("pretrain_steps", o.pretrain_steps, Range{0, 1e12});
      s.get("margin", o.margin, Range{0, 1e6});
      s.get("lambda", o.lambda, Range{1e-12, 1});
      s.get_choice("loss", o.loss, {"triplet", "quad"});
      s.get_choice("triplet", o.triplet, {"concat", "subspace"});
      s.get("reconstruction", o.reconstruction);
    } else {
      o.pretrain_steps = std::numeric_limits<int64_t>::max();
    }
    s.finish();
    if (o.code_dim == 0) o.code_dim = 16 * o.M;
    HL_CHECK(o.code_dim % o.M == 0, "{}: code_dim {} must be a multiple of M = {}",
             s.full("code_dim"), o.code_dim, o.M);
    for (int64_t w : o.widths)
      HL_CHECK(w > 0, "{}: widths must be positive, got {}", s.full("widths"), w);
    return o;
  }
};

// Codebooks + the quantised codes z of a PQ method, shared by the three methods.
class PQMethodBase : public virtual Method {
 public:
  PQMethodBase(const std::string& owner, int64_t M, int64_t K, int kmeans_iters, uint64_t seed)
      : M_(M), K_(K), kmeans_iters_(kmeans_iters), seed_(seed), state_(owner) {
    // float [M, K, dsub] on the model's device; unset before fitting.
    state_.add_tensor("codebooks", torch::kFloat32);
    state_.add_scalar("refreshes", 0, torch::kLong);  // k-means fits so far (each its own seed)
  }

  int nbits() const override { return static_cast<int>(8 * M_); }
  codes::CodeKind code_kind() const override { return codes::CodeKind::pq; }
  // Codeword ids uint8 [N, M] of embed(x).
  torch::Tensor encode(const torch::Tensor& x) override {
    return search::pq_encode(pq_codebooks(), embed(x));
  }

  codes::PQCodes pq_codebooks() const override {
    HL_CHECK(has_codebooks(), "method '{}': no codebooks yet (not trained)", name());
    codes::PQCodes pq;
    pq.M = static_cast<int>(M_);
    pq.K = static_cast<int>(K_);
    pq.dsub = static_cast<int>(codebooks().size(2));
    pq.codebooks = codebooks().to(torch::kCPU).contiguous();
    return pq;
  }

 protected:
  // Fits the codebooks on z float [N, L] (any device); returns the ids of z
  // (uint8 [N, M], CPU) and writes the "codebook_refresh" event.
  torch::Tensor fit_codebooks(const torch::Tensor& z, MetricsWriter* metrics, int64_t step,
                              int64_t epoch) {
    HL_CHECK(z.size(0) >= K_, "method '{}': {} training items for K = {} codewords", name(),
             z.size(0), K_);
    auto pq = search::pq_train(z, static_cast<int>(M_), static_cast<int>(K_), kmeans_iters_,
                               seed_ + static_cast<uint64_t>(refreshes()));
    state_.set_scalar("refreshes", refreshes() + 1);
    state_.set("codebooks", pq.codebooks.to(z.device()));
    if (metrics != nullptr && metrics->is_open()) {
      torch::NoGradGuard no_grad;
      auto zc = z.to(torch::kCPU, torch::kFloat);
      auto q = search::pq_decode(pq, pq.ids);
      double qerr = (zc - q).pow(2).sum(1).mean().item<double>();
      // Mean distance between distinct codewords of one codebook (Fig. 2a).
      auto c = pq.codebooks;
      auto d = (c.unsqueeze(2) - c.unsqueeze(1)).pow(2).sum(-1).sqrt();  // [M, K, K]
      double cw = d.sum().item<double>() / (double(M_) * K_ * std::max<int64_t>(K_ - 1, 1));
      nlohmann::json rec = {{"step", step},                    {"epoch", epoch},
                            {"refresh", refreshes()},           {"quantization_error", qerr},
                            {"codeword_distance", cw}};
      metrics->write("codebook_refresh", rec);
    }
    return pq.ids;
  }

  // Reads state_ and checks the codebooks against M and K.
  void load_state(torch::serialize::InputArchive& a, torch::Device device) {
    state_.load(a);
    const torch::Tensor& c = codebooks();
    if (c.numel() > 0)
      HL_CHECK(c.dim() == 3 && c.size(0) == M_ && c.size(1) == K_,
               "method '{}': saved codebooks [{}] do not match M = {}, K = {}", name(),
               fmt::join(c.sizes().vec(), ", "), M_, K_);
    state_.set("codebooks", c.to(device));
  }

  const torch::Tensor& codebooks() const { return state_.tensor("codebooks"); }
  bool has_codebooks() const { return state_.is_set("codebooks"); }
  int64_t refreshes() const { return static_cast<int64_t>(state_.scalar("refreshes")); }

  int64_t M_, K_;
  int kmeans_iters_;
  uint64_t seed_;
  MethodState state_;
};

// ------------------------------------------------------------------ deepquan / dae_pq

class DeepQuanMethod : public PQMethodBase, public StepMethod {
 public:
  DeepQuanMethod(Section& cfg, const MethodContext& ctx, bool pretrain_only)
      : DeepQuanMethod(DeepQuanOptions::from_yaml(cfg, pretrain_only), ctx, pretrain_only) {}

  DeepQuanMethod(DeepQuanOptions o, const MethodContext& ctx, bool pretrain_only)
      : PQMethodBase(pretrain_only ? "dae_pq" : "deepquan", o.M, o.K, o.kmeans_iters, ctx.seed),
        opts_(std::move(o)),
        pretrain_only_(pretrain_only),
        form_(models::parse_triplet_form(opts_.triplet)),
        net_(models::DeepQuanAutoEncoderOptions(input_dim(ctx), opts_.code_dim)
                 .widths(opts_.widths)) {
    // Training state, so that a resumed run continues exactly as an
    // uninterrupted one: the positives of eq. 2 (uint8 [N, M] CPU, the
    // assignments of the cached training set at the last refresh, not of the
    // current network) and the step of that refresh. Checkpoints written
    // before they were saved recompute the assignments on resume.
    state_.add_tensor("train_ids", torch::kFloat32);
    state_.add_scalar("last_refresh_step", -1, torch::kLong);
    state_.allow_missing("train_ids");
    state_.allow_missing("last_refresh_step", -1);
    net_->to(ctx.device);
  }

  std::string name() const override { return pretrain_only_ ? "dae_pq" : "deepquan"; }
  torch::nn::Module* module() override { return net_.ptr().get(); }

  std::vector<ParamGroup> param_groups() override {
    return {ParamGroup{"autoencoder", net_->parameters(), 1.0, 1.0}};
  }

  void before_train(StepContext& ctx) override {
    cache_training_set(ctx);
    if (has_codebooks()) {
      // Resumed: the assignments of the last refresh, as saved; recomputed from
      // the restored codebooks only when the checkpoint lacks them or was made
      // on another training set.
      state_.set("codebooks", codebooks().to(device()));
      if (!state_.is_set("train_ids") || train_ids().size(0) != train_x_.size(0))
        state_.set("train_ids", search::pq_encode(pq_codebooks(), codes_of_cache()));
    } else if (!pretrain_only_ && opts_.pretrain_steps <= ctx.step()) {
      refresh(ctx);
    }
  }

  void after_step(StepContext& ctx) override {
    if (!pretrain_only_ && !has_codebooks() && ctx.step() >= opts_.pretrain_steps)
      refresh(ctx);
  }

  void after_epoch(StepContext& ctx) override {
    // Skipped when pretraining ended on this very step (just refreshed).
    if (has_codebooks() && !pretrain_only_ && last_refresh_step() != ctx.step())
      refresh(ctx);
  }

  void after_train(StepContext& ctx) override {
    // Final codebooks for the evaluation and the checkpoint; a refresh at this
    // very step (end of pretraining or of an epoch) already fitted the final z,
    // and a second k-means (next seed) would make a resumed run start from other
    // codebooks than an uninterrupted one.
    if (train_x_.defined() && last_refresh_step() != ctx.step()) refresh(ctx);
  }

  // Its losses are means over the batch's items (local); the negatives are
  // drawn for the global batch and the k-means refresh is rank 0's, broadcast.
  bool supports_data_parallel() const override { return true; }

  LossMap training_step(const Batch& batch, StepContext& ctx) override {
    torch::Tensor x = batch.x.flatten(1);
    torch::Tensor z = net_->encode(x);
    torch::Tensor rec = models::deepquan_reconstruction_loss(x, net_->decode(z));
    if (!has_codebooks()) {
      return {{"loss", opts_.eta * rec}, {"quantization", torch::zeros({}, rec.options())},
              {"reconstruction", rec}};
    }
    torch::Tensor pos_ids = positive_ids(batch, z);
    torch::Tensor c_pos = models::gather_codewords(codebooks(), pos_ids);
    torch::Tensor quant;
    if (opts_.loss == "quad") {
      quant = models::deepquan_quadratic_loss(z, c_pos);
    } else {
      // Drawn for the global batch (every rank draws what one process
      // draws), this rank's rows kept.
      torch::Tensor neg_ids =
          ctx.dp().local_rows(models::sample_negative_ids(ctx.dp().all_gather(pos_ids), K_));
      torch::Tensor c_neg = models::gather_codewords(codebooks(), neg_ids);
      quant = models::deepquan_triplet_loss(z, c_pos, c_neg, opts_.margin, opts_.lambda, M_, form_);
    }
    torch::Tensor loss = opts_.reconstruction ? quant + opts_.eta * rec : quant;
    return {{"loss", loss}, {"quantization", quant.detach()}, {"reconstruction", rec.detach()}};
  }

  std::vector<std::pair<std::string, double>> status() const override {
    return {{"refreshes", static_cast<double>(refreshes())}};
  }

  torch::Tensor embed(const torch::Tensor& x) override {
    torch::NoGradGuard no_grad;
    const bool was_training = net_->is_training();
    net_->eval();
    torch::Tensor z = net_->encode(x.to(device()));
    if (was_training) net_->train();
    return z;
  }

  void save(torch::serialize::OutputArchive& archive) const override {
    torch::serialize::OutputArchive net;
    net_->save(net);
    archive.write("net", net);
    state_.save(archive);
  }

  void load(torch::serialize::InputArchive& archive) override {
    torch::serialize::InputArchive net;
    if (!archive.try_read("net", net)) fail("{} state: missing 'net'", name());
    net_->load(net);
    state_.set("train_ids", torch::Tensor());  // unset unless the archive has them
    load_state(archive, device());
  }

  torch::jit::Module to_torchscript(const MethodContext& ctx) const override {
    HL_CHECK(has_codebooks(), "method '{}': nothing to export before training", name());
    auto spec = exporter::hasher_spec(ctx, name(), nbits());
    return models::build_pq_hasher(spec, codebooks(), [&](exporter::ScriptEmitter& e,
                                                         const std::string& x) {
      return net_->emit_encoder(e, x);
    });
  }

 private:
  torch::Device device() const { return net_->parameters().front().device(); }
  const torch::Tensor& train_ids() const { return state_.tensor("train_ids"); }
  int64_t last_refresh_step() const {
    return static_cast<int64_t>(state_.scalar("last_refresh_step"));
  }

  // One epoch of the training stream, in the loader's order (CPU).
  void cache_training_set(StepContext& ctx) {
    const TrainingSet& ts = ctx.training_set();
    torch::Tensor rows = ts.epoch_rows(0);
    HL_CHECK(rows.size(0) > 0, "{}: empty training set", name());
    train_x_ = ts.features(rows).flatten(1);
    torch::Tensor pool = ts.index().index_select(0, rows);
    row_of_ = torch::full({pool.max().item<int64_t>() + 1}, -1, torch::kLong);
    row_of_.index_put_({pool}, torch::arange(pool.size(0), torch::kLong));
  }

  torch::Tensor codes_of_cache() {
    std::vector<torch::Tensor> zs;
    const int64_t chunk = 4096;
    for (int64_t r = 0; r < train_x_.size(0); r += chunk)
      zs.push_back(embed(train_x_.slice(0, r, std::min(train_x_.size(0), r + chunk))));
    return torch::cat(zs);
  }

  // Codebooks and assignments from the current network. Data-parallel: rank
  // 0 fits them and broadcasts both (the other ranks wait).
  void refresh(StepContext& ctx) {
    // Checked on every rank (rank 0 alone fits; the others must not wait for a failure).
    HL_CHECK(train_x_.size(0) >= K_, "method '{}': {} training items for K = {} codewords",
             name(), train_x_.size(0), K_);
    if (ctx.dp().rank() == 0) {
      torch::Tensor z = codes_of_cache();
      state_.set("train_ids", fit_codebooks(z, ctx.metrics(), ctx.step(), ctx.epoch()));
    } else {
      state_.set("codebooks", torch::empty({M_, K_, opts_.code_dim / M_}, torch::kFloat32));
      state_.set("train_ids", torch::empty({train_x_.size(0), M_}, torch::kUInt8));
      state_.set_scalar("refreshes", refreshes() + 1);
    }
    state_.broadcast(ctx.dp(), {"codebooks", "train_ids"});  // nothing with one process
    state_.set_scalar("last_refresh_step", ctx.step());
  }

  // The codeword ids each item of the batch was assigned to at the last
  // refresh: int64 [N, M] on z's device.
  torch::Tensor positive_ids(const Batch& batch, const torch::Tensor& z) {
    const int64_t n = z.size(0);
    torch::Tensor rows = torch::full({n}, -1, torch::kLong);
    if (batch.index.defined() && row_of_.defined() && state_.is_set("train_ids")) {
      torch::Tensor pool = batch.index.to(torch::kCPU, torch::kLong);
      torch::Tensor known = pool.lt(row_of_.size(0)).logical_and(pool.ge(0));
      rows = torch::where(known, row_of_.index_select(0, pool.clamp(0, row_of_.size(0) - 1)),
                          rows);
    }
    torch::Tensor ids = torch::zeros({n, M_}, torch::kLong);
    torch::Tensor seen = rows.ge(0);
    if (seen.any().item<bool>()) {
      torch::Tensor r = rows.masked_select(seen);
      ids.index_put_({seen}, train_ids().index_select(0, r).to(torch::kLong));
    }
    torch::Tensor unseen = seen.logical_not();
    if (unseen.any().item<bool>()) {
      torch::Tensor zu = z.detach().index({unseen.to(z.device())});
      ids.index_put_({unseen}, search::pq_encode(pq_codebooks(), zu).to(torch::kLong));
    }
    return ids.to(z.device());
  }

  DeepQuanOptions opts_;
  bool pretrain_only_;
  TripletForm form_;
  models::DeepQuanAutoEncoder net_;
  torch::Tensor train_x_;    // float [N, D] CPU: the cached training features
  torch::Tensor row_of_;     // int64 [max pool index + 1]: row of train_x_, or -1
};

// ------------------------------------------------------------------ pq (raw features)

class RawPQMethod : public PQMethodBase, public FitMethod {
 public:
  RawPQMethod(Section& cfg, const MethodContext& ctx)
      : RawPQMethod(parse(cfg), ctx) {}

  std::string name() const override { return "pq"; }

  void fit(const TrainingSet& data, FitContext& ctx) override {
    torch::Tensor x = data.x().flatten(1).to(torch::kFloat);
    HL_CHECK(x.size(1) == dim_, "pq: features have {} values, the context said {}", x.size(1),
             dim_);
    fit_codebooks(x, ctx.metrics(), ctx.units_done(), -1);
  }

  torch::Tensor embed(const torch::Tensor& x) override { return x.flatten(1).to(torch::kFloat); }

  void save(torch::serialize::OutputArchive& archive) const override { state_.save(archive); }
  void load(torch::serialize::InputArchive& archive) override {
    load_state(archive, torch::kCPU);
  }

  torch::jit::Module to_torchscript(const MethodContext& ctx) const override {
    HL_CHECK(has_codebooks(), "method 'pq': nothing to export before fitting");
    auto spec = exporter::hasher_spec(ctx, name(), nbits());
    return models::build_pq_hasher(spec, codebooks(), [](exporter::ScriptEmitter& e,
                                                        const std::string& x) {
      return e.let(fmt::format("torch.flatten({}, 1)", x));
    });
  }

 private:
  struct Parsed {
    int64_t M = 8, K = 256;
    int iters = 25;
  };
  static Parsed parse(Section& s) {
    Parsed p;
    p.M = read_subspaces(s, p.M);
    s.get("K", p.K, Range{2, 256});
    s.get("kmeans_iters", p.iters, Range{0, 1e4});
    s.finish();
    return p;
  }
  RawPQMethod(Parsed p, const MethodContext& ctx)
      : PQMethodBase("pq", p.M, p.K, p.iters, ctx.seed), dim_(input_dim(ctx)) {
    HL_CHECK(dim_ % M_ == 0, "pq: M = {} must divide the input dimension {}", M_, dim_);
  }
  int64_t dim_;
};

}  // namespace

void register_deepquan(MethodRegistry& registry) {
  registry.add(
      "deepquan",
      [](Section& cfg, const MethodContext& ctx) -> std::unique_ptr<Method> {
        return std::make_unique<DeepQuanMethod>(cfg, ctx, /*pretrain_only=*/false);
      },
      "DeepQuan (Chen et al., IJCAI 2018): deep auto-encoder + product quantization, "
      "weighted triplet loss");
  registry.add(
      "dae_pq",
      [](Section& cfg, const MethodContext& ctx) -> std::unique_ptr<Method> {
        return std::make_unique<DeepQuanMethod>(cfg, ctx, /*pretrain_only=*/true);
      },
      "DAE-PQ (DeepQuan ablation): product quantization of a pretrained auto-encoder's codes");
  registry.add(
      "pq", method_factory<RawPQMethod>(),
      "PQ (Jegou et al. 2011) on the raw features (DeepQuan ablation)");
}

}  // namespace hashlab
