#include "trainers/optimizer_set.h"

#include <set>

#include <fmt/ranges.h>

#include "csrc/core/checkpoint.h"
#include "csrc/core/error.h"
#include "csrc/core/logging.h"

namespace hashlab {

OptimizerSet::OptimizerSet(std::vector<ParameterSet> sets, OptimOptions options,
                           double grad_clip, int64_t total_steps, const std::string& method)
    : options_(std::move(options)), total_steps_(total_steps), method_(method) {
  if (sets.empty()) fail("method '{}' declares no parameters to train", method_);
  std::set<std::string> names;
  std::set<const void*> seen;
  for (auto& set : sets) {
    if (set.name.empty() || !names.insert(set.name).second)
      fail("method '{}': optimizer names must be unique and non-empty ('{}')", method_, set.name);
    size_t count = 0;
    for (const auto& g : set.groups)
      for (const auto& p : g.params) {
        if (!seen.insert(p.unsafeGetTensorImpl()).second)
          fail("method '{}': a parameter of group '{}' is also in another group or optimizer "
               "(parameter sets must be disjoint)",
               method_, g.name);
        all_params_.push_back(p);
        ++count;
      }
    if (count == 0)
      fail("method '{}' returned no parameters to train for optimizer '{}'", method_, set.name);
    named_.push_back(Named{std::move(set), nullptr, {}});
  }
  options_.check_names(this->names(), method_);
  // Every stage of every optimizer, now rather than when a stage begins hours later.
  for (size_t i = 0; i <= options_.stages.size(); ++i)
    for (const auto& n : named_) {
      OptimOptions o = options_.resolve(i, n.set.name);
      o.validate();
      if (o.is_lbfgs() && grad_clip > 0)
        fail("{}: train.grad_clip would break the line search of lbfgs (optimizer '{}'); set "
             "grad_clip: 0",
             o.where, n.set.name);
      make_optimizer(o, n.set.groups);  // e.g. lbfgs over groups with two learning rates
    }
  build(options_.stage_index(0));
}

std::vector<std::string> OptimizerSet::names() const {
  std::vector<std::string> out;
  for (const auto& n : named_) out.push_back(n.set.name);
  return out;
}

OptimizerSet::Named& OptimizerSet::named(const std::string& name) {
  for (auto& n : named_)
    if (n.set.name == name) return n;
  fail("method '{}' has no optimizer '{}' (it has {})", method_, name, fmt::join(names(), ", "));
}

const OptimizerSet::Named& OptimizerSet::named(const std::string& name) const {
  return const_cast<OptimizerSet*>(this)->named(name);
}

torch::optim::Optimizer& OptimizerSet::get(const std::string& name) {
  return *named(name).optimizer;
}

std::vector<torch::Tensor> OptimizerSet::parameters(const std::string& name) {
  std::vector<torch::Tensor> out;
  for (const auto& g : named(name).set.groups) out.insert(out.end(), g.params.begin(), g.params.end());
  return out;
}

const OptimOptions& OptimizerSet::settings(const std::string& name) { return named(name).settings; }

void OptimizerSet::build(size_t stage) {
  for (auto& n : named_) {
    n.settings = options_.resolve(stage, n.set.name);
    n.optimizer = make_optimizer(n.settings, n.set.groups);
  }
  stage_ = stage;
}

bool OptimizerSet::apply_schedule(int64_t step) {
  const size_t stage = options_.stage_index(step);
  const bool switched = stage != stage_;
  if (switched) {
    build(stage);
    for (const auto& n : named_)
      log().info("step {}: optimizer stage {}{} ({} lr {:g})", step, stage,
                 named_.size() > 1 ? " of '" + n.set.name + "'" : std::string(), n.settings.type,
                 n.settings.lr);
  }
  for (auto& n : named_)
    apply_lr(*n.optimizer, n.settings, n.set.groups,
             staged_lr_factor(options_, step, total_steps_, n.set.name));
  return switched;
}

double OptimizerSet::lr(int64_t step, const std::string& name) const {
  const std::string n = name.empty() ? named_.front().set.name : name;
  return options_.resolve(options_.stage_index(step), n).lr *
         staged_lr_factor(options_, step, total_steps_, n);
}

std::string OptimizerSet::describe_lrs(int64_t step) const {
  std::vector<std::string> lrs;
  for (const auto& n : named_)
    lrs.push_back(named_.size() == 1 ? fmt::format("lr {:.3g}", lr(step, n.set.name))
                                     : fmt::format("{} lr {:.3g}", n.set.name, lr(step, n.set.name)));
  return fmt::format("{}", fmt::join(lrs, ", "));
}

bool OptimizerSet::has_lbfgs() const {
  for (const auto& n : named_)
    if (n.settings.is_lbfgs()) return true;
  return false;
}

std::string OptimizerSet::key(const std::string& name) const {
  // One optimizer: the key checkpoints have always used.
  return named_.size() == 1 ? "optimizer" : "optimizer." + name;
}

void OptimizerSet::save(torch::serialize::OutputArchive& a) {
  for (const auto& n : named_) {
    // LibTorch's LBFGS keeps `al`, scratch space of history_size tensors
    // rewritten every iteration, of which only the filled ones are defined; it
    // cannot serialise the rest. Dropping it changes nothing (a step that finds
    // none allocates it again), so a resumed run still matches.
    if (auto* lbfgs = dynamic_cast<torch::optim::LBFGS*>(n.optimizer.get()))
      for (auto& kv : lbfgs->state())
        static_cast<torch::optim::LBFGSParamState&>(*kv.second).al(c10::nullopt);
    torch::serialize::OutputArchive o;
    n.optimizer->save(o);
    a.write(key(n.set.name), o);
  }
  archive_write(a, "optim_stage", static_cast<int64_t>(stage_));
}

void OptimizerSet::load(torch::serialize::InputArchive& a, const std::string& file) {
  // The state belongs to the stage that was training when it was saved.
  torch::Tensor stage;
  size_t index = 0;
  if (a.try_read("optim_stage", stage)) index = static_cast<size_t>(stage.item<int64_t>());
  if (index > options_.stages.size())
    fail("{}: checkpoint was saved in optimizer stage {}, the config has {} stages", file, index,
         options_.stages.size());
  if (index != stage_) build(index);
  for (auto& n : named_) {
    torch::serialize::InputArchive o;
    if (!a.try_read(key(n.set.name), o))
      fail("{}: checkpoint has no state for optimizer '{}'", file, n.set.name);
    n.optimizer->load(o);
  }
}

}  // namespace hashlab
