#include "trainers/optim.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include <fmt/ranges.h>

#include "trainers/fused_sgd.h"

namespace hashlab {

// ------------------------------------------------------------------ options

OptimOptions OptimOptions::from_yaml(Section s) {
  OptimOptions o;
  o.where = s.where("type");
  s.known({"stages", "optimizers"});
  o.read_keys(s);
  if (s.has("optimizers")) {
    const YAML::Node& map = s.node()["optimizers"];
    if (!map.IsMap() || map.size() == 0)
      fail("{}: expected a map of named optimizers ({{NAME: {{<optim keys>}}}})",
           s.where("optimizers"));
    Section all = s.sub("optimizers");
    for (const auto& kv : map) {
      const std::string name = kv.first.as<std::string>();
      Section ns = all.sub(name);
      for (const char* key : {"stages", "until", "optimizers"})
        if (ns.has(key))
          fail("{}: '{}' cannot be set per optimizer (stages apply to every optimizer)",
               ns.where(key), key);
      OptimOptions named;
      named.where = all.where(name);
      named.read_keys(ns);
      ns.finish();
      o.optimizers[name] = std::move(named);
    }
  }
  s.finish();
  if (!s.has("stages")) return o;
  const YAML::Node& list = s.node()["stages"];
  if (!list.IsSequence() || list.size() == 0)
    fail("{}: expected a non-empty list of stages ({{until: STEP, <optim keys>}})",
         s.where("stages"));
  const OptimOptions top = o;  // what every stage starts from
  int64_t prev = 0;
  for (size_t i = 0; i < list.size(); ++i) {
    Section ss = s.item("stages", i);
    OptimOptions stage = top;
    stage.optimizers.clear();
    stage.where = ss.where("until");
    if (!ss.has("until"))
      fail("{}: missing 'until' (the first step after the stage)", ss.where("until"));
    ss.get("until", stage.until, Range{1, 1e12});
    if (stage.until <= prev)
      fail("{}: until must increase from stage to stage ({} after {})", ss.where("until"),
           stage.until, prev);
    if (ss.has("stages")) fail("{}: stages do not nest", ss.where("stages"));
    if (ss.has("optimizers"))
      fail("{}: per-optimizer overrides go at the top level of optim (they apply in every "
           "stage)",
           ss.where("optimizers"));
    stage.read_keys(ss);
    ss.finish();
    prev = stage.until;
    o.stages.push_back(std::move(stage));
  }
  return o;
}

namespace {

// Every key of one optim level, once: how it is read and how a named
// optimizer's or a stage's value overrides the level above.
struct Key {
  const char* name;
  void (*read)(Section&, OptimOptions&);
  void (*copy)(OptimOptions&, const OptimOptions&);
};

#define HL_OPTIM_KEY(key, member, ...)                                                   \
  Key {                                                                                  \
    key, [](Section& s, OptimOptions& o) { s.get(key, o.member, ##__VA_ARGS__); },       \
        [](OptimOptions& o, const OptimOptions& n) { o.member = n.member; }              \
  }
#define HL_OPTIM_CHOICE(key, member, choices)                                            \
  Key {                                                                                  \
    key, [](Section& s, OptimOptions& o) { s.get_choice(key, o.member, choices); },      \
        [](OptimOptions& o, const OptimOptions& n) { o.member = n.member; }              \
  }

const std::vector<Key>& keys() {
  static const std::vector<Key> k = {
      HL_OPTIM_CHOICE("type", type, optimizer_registry().names()),
      HL_OPTIM_KEY("lr", lr, Range{0.0, 10.0}),
      HL_OPTIM_KEY("momentum", momentum, Range{0.0, 1.0}),
      HL_OPTIM_KEY("nesterov", nesterov),
      HL_OPTIM_KEY("weight_decay", weight_decay, Range{0.0, 1.0}),
      HL_OPTIM_KEY("betas", betas, Range{0.0, 1.0}),
      HL_OPTIM_KEY("eps", eps, Range{0.0, 1.0}),
      HL_OPTIM_KEY("history_size", history_size, Range{1, 1e6}),
      HL_OPTIM_KEY("max_iter", max_iter, Range{1, 1e9}),
      HL_OPTIM_KEY("max_eval", max_eval, Range{0, 1e9}),
      HL_OPTIM_KEY("tolerance_grad", tolerance_grad, Range{0.0, 1e12}),
      HL_OPTIM_KEY("tolerance_change", tolerance_change, Range{0.0, 1e12}),
      HL_OPTIM_CHOICE("line_search", line_search,
                      (std::vector<std::string>{"strong_wolfe", "none"})),
      HL_OPTIM_KEY("reset_each_step", reset_each_step),
      HL_OPTIM_CHOICE("schedule", schedule, lr_schedule_registry().names()),
      HL_OPTIM_KEY("step_size", step_size, Range{1, 1e12}),
      HL_OPTIM_KEY("gamma", gamma, Range{0.0, 1.0}),
      HL_OPTIM_KEY("min_lr_factor", min_lr_factor, Range{0.0, 1.0}),
      HL_OPTIM_KEY("warmup", warmup, Range{0, 1e12}),
  };
  return k;
}

#undef HL_OPTIM_KEY
#undef HL_OPTIM_CHOICE

}  // namespace

bool OptimOptions::is_lbfgs() const { return type == "lbfgs"; }

void OptimOptions::read_keys(Section& s) {
  OptimOptions& o = *this;
  for (const Key& k : keys()) {
    if (s.has(k.name)) o.given.insert(k.name);
    k.read(s, o);
  }
  if (o.betas.size() != 2) fail("{}: expected two values [beta1, beta2]", s.where("betas"));
  if (o.nesterov && (o.type != "sgd" || o.momentum <= 0))
    fail("{}: nesterov needs type sgd and momentum > 0", s.where("nesterov"));
  if (o.is_lbfgs() && o.given.count("weight_decay") && o.weight_decay > 0)
    fail("{}: lbfgs has no weight decay (got {}); set it to 0 or add the penalty to the loss",
         s.where("weight_decay"), o.weight_decay);
}

void OptimOptions::validate() const {
  if (nesterov && (type != "sgd" || momentum <= 0))
    fail("{}: nesterov needs type sgd and momentum > 0 (here: {} with momentum {})", where, type,
         momentum);
  if (is_lbfgs() && given.count("weight_decay") && weight_decay > 0)
    fail("{}: lbfgs has no weight decay, but weight_decay {} applies to it; set weight_decay: 0 "
         "for it or add the penalty to the loss",
         where, weight_decay);
}

void OptimOptions::override_with(const OptimOptions& n) {
  for (const Key& k : keys())
    if (n.given.count(k.name)) {
      given.insert(k.name);
      k.copy(*this, n);
    }
  where = n.where;
}

size_t OptimOptions::stage_index(int64_t step) const {
  for (size_t i = 0; i < stages.size(); ++i)
    if (step < stages[i].until) return i;
  return stages.size();
}

const OptimOptions& OptimOptions::stage(size_t index) const {
  return index < stages.size() ? stages[index] : *this;
}

std::pair<int64_t, int64_t> OptimOptions::stage_range(size_t index, int64_t total) const {
  // index <= stages.size(): stage `index` starts where the previous one ends.
  int64_t begin = index == 0 ? 0 : stages[index - 1].until;
  int64_t end = index < stages.size() ? stages[index].until : std::max(total, begin);
  return {begin, end};
}

OptimOptions OptimOptions::resolve(size_t index, const std::string& name) const {
  OptimOptions r = stage(index);
  r.stages.clear();
  r.optimizers.clear();
  auto it = optimizers.find(name);
  if (it != optimizers.end()) r.override_with(it->second);
  return r;
}

void OptimOptions::check_names(const std::vector<std::string>& names,
                               const std::string& method) const {
  for (const auto& [name, o] : optimizers) {
    if (std::find(names.begin(), names.end(), name) != names.end()) continue;
    std::string hint = did_you_mean(name, names);
    fail("{}: method '{}' has no optimizer '{}' (it has {}){}", o.where, method, name,
         fmt::join(names, ", "), hint.empty() ? "" : " (did you mean '" + hint + "'?)");
  }
}

// ------------------------------------------------------------------ optimizers

namespace {

using namespace torch::optim;

template <typename Opt, typename Options>
std::unique_ptr<Optimizer> per_group(const OptimOptions& o, const std::vector<ParamGroup>& groups,
                                     const std::function<void(Options&, double wd)>& set) {
  std::vector<OptimizerParamGroup> pg;
  for (const auto& g : groups) {
    auto opt = std::make_unique<Options>(o.lr * g.lr_mult);
    set(*opt, o.weight_decay * g.weight_decay_mult);
    pg.emplace_back(g.params, std::move(opt));
  }
  return std::make_unique<Opt>(pg, Options(o.lr));
}

void register_optimizers(OptimizerRegistry& r) {
  r.add("sgd", [](const OptimOptions& o, const std::vector<ParamGroup>& groups) {
    return per_group<FusedSGD, SGDOptions>(o, groups, [&](SGDOptions& s, double wd) {
      s.momentum(o.momentum).nesterov(o.nesterov).weight_decay(wd);
    });
  }, "SGD with momentum / Nesterov and weight decay (one fused pass per parameter on the CPU)");
  r.add("adam", [](const OptimOptions& o, const std::vector<ParamGroup>& groups) {
    return per_group<Adam, AdamOptions>(o, groups, [&](AdamOptions& s, double wd) {
      s.betas({o.betas[0], o.betas[1]}).eps(o.eps).weight_decay(wd);
    });
  }, "Adam (L2 weight decay)");
  r.add("adamw", [](const OptimOptions& o, const std::vector<ParamGroup>& groups) {
    return per_group<AdamW, AdamWOptions>(o, groups, [&](AdamWOptions& s, double wd) {
      s.betas({o.betas[0], o.betas[1]}).eps(o.eps).weight_decay(wd);
    });
  }, "AdamW (decoupled weight decay)");
  r.add("lbfgs", [](const OptimOptions& o, const std::vector<ParamGroup>& groups)
                     -> std::unique_ptr<Optimizer> {
    // torch::optim::LBFGS takes one parameter group: one learning rate.
    std::vector<torch::Tensor> params;
    for (const auto& g : groups) {
      HL_CHECK(g.lr_mult == groups.front().lr_mult,
               "{}: lbfgs uses one learning rate for all parameters, but group '{}' has lr_mult "
               "{} and group '{}' {}",
               o.where, groups.front().name, groups.front().lr_mult, g.name, g.lr_mult);
      params.insert(params.end(), g.params.begin(), g.params.end());
    }
    LBFGSOptions opt(o.lr * (groups.empty() ? 1.0 : groups.front().lr_mult));
    opt.history_size(o.history_size).max_iter(o.max_iter);
    opt.tolerance_grad(o.tolerance_grad).tolerance_change(o.tolerance_change);
    if (o.max_eval > 0) opt.max_eval(o.max_eval);
    if (o.line_search == "strong_wolfe") opt.line_search_fn("strong_wolfe");
    return std::make_unique<LBFGS>(std::vector<OptimizerParamGroup>{OptimizerParamGroup(params)},
                                   opt);
  }, "L-BFGS (torch::optim::LBFGS) with a strong-Wolfe line search; steps through the closure");
}

class ConstantLR : public LRSchedule {
 public:
  explicit ConstantLR(const OptimOptions&) {}
  double factor(int64_t, int64_t) const override { return 1.0; }
};

class StepLR : public LRSchedule {
 public:
  explicit StepLR(const OptimOptions& o) : gamma_(o.gamma), step_size_(o.step_size) {}
  double factor(int64_t step, int64_t) const override {
    return std::pow(gamma_, static_cast<double>(step / step_size_));
  }

 private:
  double gamma_;
  int64_t step_size_;
};

class CosineLR : public LRSchedule {
 public:
  explicit CosineLR(const OptimOptions& o) : min_(o.min_lr_factor) {}
  double factor(int64_t step, int64_t total) const override {
    double t = total > 0 ? std::min(1.0, static_cast<double>(step) / total) : 1.0;
    return min_ + (1.0 - min_) * 0.5 * (1.0 + std::cos(M_PI * t));
  }

 private:
  double min_;
};

template <typename T>
LRScheduleRegistry::Factory lr_entry() {
  return [](const OptimOptions& o) -> std::unique_ptr<LRSchedule> {
    return std::make_unique<T>(o);
  };
}

}  // namespace

OptimizerRegistry& optimizer_registry() {
  static OptimizerRegistry r = [] {
    OptimizerRegistry reg("optimizer");
    register_optimizers(reg);
    return reg;
  }();
  return r;
}

LRScheduleRegistry& lr_schedule_registry() {
  static LRScheduleRegistry r = [] {
    LRScheduleRegistry reg("lr schedule");
    reg.add("constant", lr_entry<ConstantLR>(), "the base learning rate throughout");
    reg.add("step", lr_entry<StepLR>(), "lr *= gamma every step_size steps");
    reg.add("cosine", lr_entry<CosineLR>(), "cosine decay to min_lr_factor over the stage");
    return reg;
  }();
  return r;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimOptions& o,
                                                        const std::vector<ParamGroup>& groups) {
  return optimizer_registry().create(o.type, o.where, o, groups);
}

double lr_factor(const OptimOptions& o, int64_t step, int64_t total) {
  double f = lr_schedule_registry().create(o.schedule, o.where, o)->factor(step, total);
  if (o.warmup > 0 && step < o.warmup) f *= static_cast<double>(step + 1) / o.warmup;
  return f;
}

double staged_lr_factor(const OptimOptions& o, int64_t step, int64_t total,
                        const std::string& name) {
  size_t i = o.stage_index(step);
  auto [begin, end] = o.stage_range(i, total);
  return lr_factor(o.resolve(i, name), step - begin, end - begin);
}

void apply_lr(torch::optim::Optimizer& opt, const OptimOptions& o,
              const std::vector<ParamGroup>& groups, double factor) {
  auto& pgs = opt.param_groups();
  for (size_t i = 0; i < pgs.size() && i < groups.size(); ++i)
    pgs[i].options().set_lr(o.lr * groups[i].lr_mult * factor);
}

}  // namespace hashlab
