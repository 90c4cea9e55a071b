#include "trainers/optim.h"

#include <cmath>

namespace hashlab {

OptimOptions OptimOptions::from_yaml(Section s) {
  OptimOptions o;
  s.known({"stages"});
  o.read_keys(s);
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
    if (!ss.has("until"))
      fail("{}: missing 'until' (the first step after the stage)", ss.where("until"));
    ss.get("until", stage.until, Range{1, 1e12});
    if (stage.until <= prev)
      fail("{}: until must increase from stage to stage ({} after {})", ss.where("until"),
           stage.until, prev);
    if (ss.has("stages")) fail("{}: stages do not nest", ss.where("stages"));
    stage.read_keys(ss);
    ss.finish();
    prev = stage.until;
    o.stages.push_back(std::move(stage));
  }
  return o;
}

void OptimOptions::read_keys(Section& s) {
  OptimOptions& o = *this;
  s.get_choice("type", o.type, {"sgd", "adam", "adamw"});
  s.get("lr", o.lr, Range{0.0, 10.0});
  s.get("momentum", o.momentum, Range{0.0, 1.0});
  s.get("nesterov", o.nesterov);
  s.get("weight_decay", o.weight_decay, Range{0.0, 1.0});
  s.get("betas", o.betas, Range{0.0, 1.0});
  if (o.betas.size() != 2) fail("{}: expected two values [beta1, beta2]", s.where("betas"));
  s.get("eps", o.eps, Range{0.0, 1.0});
  s.get_choice("schedule", o.schedule, {"constant", "step", "cosine"});
  s.get("step_size", o.step_size, Range{1, 1e12});
  s.get("gamma", o.gamma, Range{0.0, 1.0});
  s.get("min_lr_factor", o.min_lr_factor, Range{0.0, 1.0});
  s.get("warmup", o.warmup, Range{0, 1e12});
  if (o.nesterov && (o.type != "sgd" || o.momentum <= 0))
    fail("{}: nesterov needs type sgd and momentum > 0", s.where("nesterov"));
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

double staged_lr_factor(const OptimOptions& o, int64_t step, int64_t total) {
  size_t i = o.stage_index(step);
  auto [begin, end] = o.stage_range(i, total);
  return lr_factor(o.stage(i), step - begin, end - begin);
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimOptions& o,
                                                        const std::vector<ParamGroup>& groups) {
  using namespace torch::optim;
  std::vector<OptimizerParamGroup> pg;
  for (const auto& g : groups) {
    double lr = o.lr * g.lr_mult;
    double wd = o.weight_decay * g.weight_decay_mult;
    if (o.type == "sgd") {
      auto opt = std::make_unique<SGDOptions>(lr);
      opt->momentum(o.momentum).nesterov(o.nesterov).weight_decay(wd);
      pg.emplace_back(g.params, std::move(opt));
    } else if (o.type == "adam") {
      auto opt = std::make_unique<AdamOptions>(lr);
      opt->betas({o.betas[0], o.betas[1]}).eps(o.eps).weight_decay(wd);
      pg.emplace_back(g.params, std::move(opt));
    } else {
      auto opt = std::make_unique<AdamWOptions>(lr);
      opt->betas({o.betas[0], o.betas[1]}).eps(o.eps).weight_decay(wd);
      pg.emplace_back(g.params, std::move(opt));
    }
  }
  if (o.type == "sgd") return std::make_unique<SGD>(pg, SGDOptions(o.lr));
  if (o.type == "adam") return std::make_unique<Adam>(pg, AdamOptions(o.lr));
  return std::make_unique<AdamW>(pg, AdamWOptions(o.lr));
}

double lr_factor(const OptimOptions& o, int64_t step, int64_t total) {
  double f = 1.0;
  if (o.schedule == "step") {
    f = std::pow(o.gamma, static_cast<double>(step / o.step_size));
  } else if (o.schedule == "cosine") {
    double t = total > 0 ? std::min(1.0, static_cast<double>(step) / total) : 1.0;
    f = o.min_lr_factor + (1.0 - o.min_lr_factor) * 0.5 * (1.0 + std::cos(M_PI * t));
  }
  if (o.warmup > 0 && step < o.warmup) f *= static_cast<double>(step + 1) / o.warmup;
  return f;
}

void apply_lr(torch::optim::Optimizer& opt, const OptimOptions& o,
              const std::vector<ParamGroup>& groups, double factor) {
  auto& pgs = opt.param_groups();
  for (size_t i = 0; i < pgs.size() && i < groups.size(); ++i)
    pgs[i].options().set_lr(o.lr * groups[i].lr_mult * factor);
}

ScalarSchedule ScalarSchedule::from_yaml(Section s) {
  ScalarSchedule c;
  s.get_choice("type", c.type, {"constant", "hashnet", "step", "linear"});
  s.get("init", c.init);
  s.get("gamma", c.gamma);
  s.get("power", c.power);
  s.get("every", c.every, Range{1, 1e12});
  s.get("final", c.final_value);
  s.finish();
  return c;
}

double ScalarSchedule::at(int64_t step, int64_t total) const {
  if (type == "hashnet") {
    double t = static_cast<double>((step / every) * every);
    return init * std::pow(1.0 + gamma * t, power);
  }
  if (type == "step") return init * std::pow(gamma, static_cast<double>(step / every));
  if (type == "linear") {
    double t = total > 0 ? std::min(1.0, static_cast<double>(step) / total) : 1.0;
    return init + (final_value - init) * t;
  }
  return init;
}

}  // namespace hashlab
