#include "models/hashnet/method.h"

#include <nlohmann/json.hpp>

#include "csrc/core/error.h"
#include "datasets/similarity.h"
#include "models/hashnet/hashnet.h"
#include "trainers/method_export.h"
#include "trainers/method_state.h"
#include "trainers/schedules.h"
#include "trainers/context.h"

namespace hashlab {

namespace {

using models::PairWeighting;

struct HashNetOptions {
  int64_t bits = 64;
  models::BackboneOptions backbone;
  double alpha = 0.0;
  std::string weighting = "paper";
  double class_weight = 0.0;
  std::string pairs = "all";
  // thuml/HashNet's defaults unless the config says otherwise.
  std::shared_ptr<ScalarSchedule> continuation = std::make_shared<models::HashNetContinuation>();
  double hash_lr_mult = 10.0;

  static HashNetOptions from_yaml(Section& s) {
    HashNetOptions o;
    s.get("bits", o.bits, Range{1, 4096});
    if (s.has("backbone")) o.backbone = models::BackboneOptions::from_yaml(s.sub("backbone"));
    s.get("alpha", o.alpha, Range{0, 1e6});
    s.get_choice("weighting", o.weighting, {"paper", "code", "none"});
    s.get("class_weight", o.class_weight, Range{0, 1e9});
    s.get_choice("pairs", o.pairs, {"all", "halves"});
    if (s.has("continuation")) o.continuation = make_scalar_schedule(s.sub("continuation"), "hashnet");
    s.get("hash_lr_mult", o.hash_lr_mult, Range{0, 1e6});
    s.finish();
    return o;
  }
};

class HashNetMethod : public StepMethod {
 public:
  HashNetMethod(Section& cfg, const MethodContext& ctx)
      : opts_(HashNetOptions::from_yaml(cfg)),
        weighting_(models::parse_pair_weighting(opts_.weighting)),
        alpha_(opts_.alpha > 0 ? opts_.alpha : 10.0 / static_cast<double>(opts_.bits)),
        class_weight_(opts_.class_weight > 0 ? opts_.class_weight
                                             : std::max<double>(1.0, ctx.num_classes)),
        net_(models::make_backbone(opts_.backbone, ctx.input_shape), opts_.bits) {
    // beta: the continuation's value at the last step (embed() uses it).
    state_.add_scalar("beta", opts_.continuation->at(0, ctx.total_steps));
    net_->to(ctx.device);
  }

  std::string name() const override { return "hashnet"; }
  int nbits() const override { return static_cast<int>(opts_.bits); }
  torch::nn::Module* module() override { return net_.ptr().get(); }

  std::vector<ParamGroup> param_groups() override {
    return {ParamGroup{"backbone", net_->backbone->parameters(), 1.0, 1.0},
            ParamGroup{"fch", net_->fch->parameters(), opts_.hash_lr_mult, 1.0}};
  }

  LossMap training_step(const Batch& batch, StepContext& ctx) override {
    HL_CHECK(batch.labels.defined(), "hashnet: needs labelled training data");
    state_.set_scalar("beta", opts_.continuation->at(ctx.step(), ctx.total_steps()));
    const double beta = state_.scalar("beta");
    torch::Tensor z = net_->forward(batch.x);
    // Pairs span the whole global batch: with several ranks, every rank's
    // codes and labels (the gradient flows through this rank's rows).
    const torch::Tensor zg = ctx.dp().all_gather(z);
    torch::Tensor g = torch::tanh(beta * zg);
    torch::Tensor h = ((zg >= 0).to(g.dtype()) * 2 - 1).detach();  // sgn, sgn(0) = +1
    const torch::Tensor labels = ctx.dp().all_gather(batch.labels);
    const int64_t n = g.size(0);
    auto loss_on = [&](const torch::Tensor& codes) {
      if (opts_.pairs == "halves") {
        HL_CHECK(n >= 2, "hashnet: pairs: halves needs batches of at least 2");
        int64_t m = n / 2;
        torch::Tensor s = data::label_similarity(labels.narrow(0, 0, m),
                                                 labels.narrow(0, m, n - m));
        return models::hashnet_pairwise_loss(codes.narrow(0, 0, m), codes.narrow(0, m, n - m),
                                             s, alpha_, weighting_, class_weight_);
      }
      torch::Tensor s = data::label_similarity(labels, labels);
      torch::Tensor distinct =
          torch::eye(n, torch::TensorOptions().dtype(torch::kBool).device(g.device()))
              .logical_not();
      return models::hashnet_pairwise_loss(codes, codes, s, alpha_, weighting_, class_weight_,
                                           distinct);
    };
    torch::Tensor loss = loss_on(g);
    torch::Tensor loss_binary;
    {
      torch::NoGradGuard no_grad;
      loss_binary = loss_on(h);
    }
    return {{"loss", loss}, {"loss_binary", loss_binary}};
  }

  // Its pairs span the global batch through ctx.dp().all_gather.
  bool supports_data_parallel() const override { return true; }
  // Global: the loss couples every item of the global batch (gathered rows).
  LossScope training_loss_scope() const override { return LossScope::global; }

  std::vector<std::pair<std::string, double>> status() const override {
    return {{"beta", state_.scalar("beta")}};
  }

  void after_train(StepContext& ctx) override {
    MetricsWriter* metrics = ctx.metrics();
    if (metrics == nullptr || !metrics->is_open() || !ctx.has_training_data()) return;
    const TrainingSet& ts = ctx.training_set();
    torch::Tensor rows = ts.epoch_rows(0);
    rows = rows.narrow(0, 0, std::min<int64_t>(rows.size(0), 512));
    if (rows.size(0) == 0) return;
    torch::Tensor x = ts.features(rows);
    std::vector<torch::Tensor> g;
    for (int64_t r = 0; r < x.size(0); r += ctx.batch_size())
      g.push_back(embed(x.slice(0, r, r + ctx.batch_size()).to(ctx.device()))
                      .abs()
                      .to(torch::kCPU));
    torch::Tensor all = torch::cat(g).to(torch::kFloat32).flatten();
    torch::Tensor counts = torch::histc(all, 100, 0.0, 1.0).to(torch::kInt64).contiguous();
    std::vector<int64_t> c(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + 100);
    double binary = (all > 0.99).to(torch::kFloat64).mean().item<double>();
    metrics->write("code_histogram", {{"step", ctx.step()},
                                      {"beta", state_.scalar("beta")},
                                      {"bins", 100},
                                      {"range", {0.0, 1.0}},
                                      {"values", all.numel()},
                                      {"counts", c},
                                      {"fraction_above_0.99", binary}});
  }

  torch::Tensor embed(const torch::Tensor& x) override {
    torch::NoGradGuard no_grad;
    const bool was_training = net_->is_training();
    net_->eval();
    torch::Tensor v = torch::tanh(state_.scalar("beta") * net_->forward(x));
    if (was_training) net_->train();
    return v;
  }

  void save(torch::serialize::OutputArchive& archive) const override {
    torch::serialize::OutputArchive net;
    net_->save(net);
    archive.write("net", net);
    state_.save(archive);
  }

  void load(torch::serialize::InputArchive& archive) override {
    torch::serialize::InputArchive net;
    archive.read("net", net);
    net_->load(net);
    state_.load(archive);
  }

  torch::jit::Module to_torchscript(const MethodContext& ctx) const override {
    auto spec = exporter::hasher_spec(ctx, "hashnet", opts_.bits);
    const double beta = state_.scalar("beta");
    auto module = exporter::build_hasher(spec, [&](exporter::ScriptEmitter& e,
                                                   const std::string& x) {
      std::string z = net_->emit_torchscript(e, x);
      // Same op as embed(): tanh(beta * z); codes are sign(z) either way.
      return e.let(fmt::format("torch.tanh({} * {})", z, exporter::float_literal(beta)));
    });
    module.register_attribute("beta", c10::FloatType::get(), beta);
    return module;
  }

 private:
  HashNetOptions opts_;
  PairWeighting weighting_;
  double alpha_;
  double class_weight_;
  models::HashNet net_;
  MethodState state_{"hashnet"};
};

}  // namespace

void register_hashnet(MethodRegistry& registry) {
  scalar_schedule_registry().add(
      "hashnet",
      [](Section& s) -> std::unique_ptr<ScalarSchedule> {
        return std::make_unique<models::HashNetContinuation>(s);
      },
      "init * (1 + gamma t)^power, t = floor(step / every) * every (thuml/HashNet)");
  registry.add(
      "hashnet", method_factory<HashNetMethod>(),
      "HashNet (Cao et al., ICCV 2017): deep hashing by continuation");
}

}  // namespace hashlab
