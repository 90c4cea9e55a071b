#include "trainers/trainer.h"

#include <ATen/autocast_mode.h>

#include <chrono>
#include <map>
#include <cmath>
#include <filesystem>
#include <set>

#include <fmt/ranges.h>

#include "csrc/core/checkpoint.h"
#include "csrc/core/device.h"
#include "csrc/core/distributed.h"
#include "csrc/core/error.h"
#include "csrc/core/signals.h"

namespace hashlab {
namespace fs = std::filesystem;

TrainOptions TrainOptions::from_yaml(Section s) {
  TrainOptions t;
  s.get("iterations", t.iterations, Range{0, 1e12});
  s.get("batch_size", t.batch_size, Range{1, 1e7});
  s.get("log_every", t.log_every, Range{1, 1e12});
  s.get("eval_every", t.eval_every, Range{0, 1e12});
  s.get("checkpoint_every", t.checkpoint_every, Range{0, 1e12});
  s.get("amp", t.amp);
  s.get("channels_last", t.channels_last);
  s.get("grad_clip", t.grad_clip, Range{0.0, 1e12});
  s.get("prefetch", t.prefetch, Range{0, 1024});
  s.finish();
  return t;
}

namespace {
// Enables bf16 autocast on CUDA for the lifetime of the guard.
struct AutocastGuard {
  bool on;
  explicit AutocastGuard(bool enable) : on(enable) {
    if (on) {
      at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
      at::autocast::set_enabled(true);
    }
  }
  ~AutocastGuard() {
    if (on) {
      at::autocast::clear_cache();
      at::autocast::set_enabled(false);
    }
  }
};

std::string optimizer_key(const std::vector<std::string>& names, const std::string& name) {
  // One optimizer: the key checkpoints have always used.
  return names.size() == 1 ? "optimizer" : "optimizer." + name;
}
}  // namespace

LossMap Method::step(const Batch& batch, Trainer& trainer) { return trainer.default_step(batch); }

Trainer::Trainer(Method& method, Loader* loader, TrainOptions train, OptimOptions optim,
                 torch::Device device, std::string checkpoint_dir, MetricsWriter* metrics)
    : method_(method),
      loader_(loader),
      train_(train),
      optim_(std::move(optim)),
      device_(device),
      checkpoint_dir_(std::move(checkpoint_dir)),
      metrics_(metrics) {
  if (!method_.fits()) {
    std::vector<ParameterSet> sets = method_.parameter_sets();
    if (sets.empty()) fail("method '{}' declares no parameters to train", method_.name());
    std::set<std::string> names;
    std::set<const void*> seen;
    for (auto& set : sets) {
      if (set.name.empty() || !names.insert(set.name).second)
        fail("method '{}': optimizer names must be unique and non-empty ('{}')", method_.name(),
             set.name);
      size_t count = 0;
      for (const auto& g : set.groups)
        for (const auto& p : g.params) {
          if (!seen.insert(p.unsafeGetTensorImpl()).second)
            fail("method '{}': a parameter of group '{}' is also in another group or optimizer "
                 "(parameter sets must be disjoint)",
                 method_.name(), g.name);
          trained_params_.push_back(p);
          ++count;
        }
      if (count == 0)
        fail("method '{}' returned no parameters to train for optimizer '{}'", method_.name(),
             set.name);
      optimizers_.push_back(Named{std::move(set), nullptr, {}});
    }
    optim_.check_names(optimizer_names(), method_.name());
    // Every stage of every optimizer, now rather than when a stage begins hours later.
    for (size_t i = 0; i <= optim_.stages.size(); ++i)
      for (const auto& n : optimizers_) {
        OptimOptions o = optim_.resolve(i, n.set.name);
        o.validate();
        if (o.type == "lbfgs" && train_.grad_clip > 0)
          fail("{}: train.grad_clip would break the line search of lbfgs (optimizer '{}'); set "
               "grad_clip: 0",
               o.where, n.set.name);
        make_optimizer(o, n.set.groups);  // e.g. lbfgs over groups with two learning rates
      }
    build_optimizers(optim_.stage_index(0));
  } else if (!optim_.optimizers.empty()) {
    fail("{}: method '{}' fits without optimizers; optim.optimizers does not apply",
         optim_.optimizers.begin()->second.where, method_.name());
  }
  hooks_ = {method_hook(method_), lr_schedule_hook(), finite_guard_hook(), metrics_hook(),
            eval_hook(), checkpoint_hook(), interrupt_hook()};
  user_hooks_at_ = 5;
}

Trainer::~Trainer() = default;

void Trainer::add_hook(std::shared_ptr<TrainerHook> hook) {
  hooks_.insert(hooks_.begin() + static_cast<std::ptrdiff_t>(user_hooks_at_), std::move(hook));
  ++user_hooks_at_;
}

std::vector<std::string> Trainer::optimizer_names() const {
  std::vector<std::string> out;
  for (const auto& n : optimizers_) out.push_back(n.set.name);
  return out;
}

Trainer::Named& Trainer::named(const std::string& name) {
  for (auto& n : optimizers_)
    if (n.set.name == name) return n;
  fail("method '{}' has no optimizer '{}' (it has {})", method_.name(), name,
       fmt::join(optimizer_names(), ", "));
}

const Trainer::Named& Trainer::named(const std::string& name) const {
  return const_cast<Trainer*>(this)->named(name);
}

torch::optim::Optimizer& Trainer::optimizer(const std::string& name) {
  return *named(name).optimizer;
}

void Trainer::build_optimizers(size_t index) {
  for (auto& n : optimizers_) {
    n.settings = optim_.resolve(index, n.set.name);
    n.optimizer = make_optimizer(n.settings, n.set.groups);
  }
  optim_stage_ = index;
}

const TrainingSet& Trainer::training_set() {
  if (!training_set_) {
    HL_CHECK(loader_ != nullptr, "trainer: no training data (loader) for method '{}'",
             method_.name());
    training_set_ = std::make_unique<TrainingSet>(*loader_);
  }
  return *training_set_;
}

double Trainer::current_lr_factor(const std::string& name) const {
  const std::string n = name.empty() && !optimizers_.empty() ? optimizers_.front().set.name : name;
  return staged_lr_factor(optim_, step_, train_.iterations, n);
}

double Trainer::current_lr(const std::string& name) const {
  const std::string n = name.empty() && !optimizers_.empty() ? optimizers_.front().set.name : name;
  return optim_.resolve(optim_.stage_index(step_), n).lr * current_lr_factor(n);
}

void Trainer::apply_lr_schedule() {
  const size_t stage = optim_.stage_index(step_);
  if (stage != optim_stage_) {
    build_optimizers(stage);
    if (progress_) progress_->clear();
    for (const auto& n : optimizers_)
      log().info("step {}: optimizer stage {}{} ({} lr {:g})", step_, stage,
                 optimizers_.size() > 1 ? " of '" + n.set.name + "'" : std::string(),
                 n.settings.type, n.settings.lr);
  }
  for (auto& n : optimizers_)
    apply_lr(*n.optimizer, n.settings, n.set.groups, current_lr_factor(n.set.name));
}

double Trainer::train_seconds() const {
  if (!session_start_) return seconds_before_;
  return seconds_before_ +
         std::chrono::duration<double>(std::chrono::steady_clock::now() - *session_start_).count();
}

void Trainer::stop_clock() {
  seconds_before_ = train_seconds();
  session_start_.reset();
}

int64_t Trainer::checkpoint_every() const {
  return fitting() ? plan_.checkpoint_every : train_.checkpoint_every;
}

int64_t Trainer::planned_steps() const { return fitting() ? plan_.units : train_.iterations; }

std::string Trainer::last_checkpoint_path() const {
  return checkpoint_dir_.empty() ? "" : (fs::path(checkpoint_dir_) / "last.pt").string();
}

void Trainer::save_checkpoint(const std::string& path) {
  torch::serialize::OutputArchive a;
  torch::serialize::OutputArchive m;
  method_.save(m);
  a.write("method", m);
  const auto names = optimizer_names();
  for (const auto& n : optimizers_) {
    // LibTorch's LBFGS keeps `al`, scratch space of history_size tensors
    // rewritten every iteration, of which only the filled ones are defined; it
    // cannot serialise the rest. Dropping it changes nothing (a step that finds
    // none allocates it again), so a resumed run still matches.
    if (auto* lbfgs = dynamic_cast<torch::optim::LBFGS*>(n.optimizer.get()))
      for (auto& kv : lbfgs->state())
        static_cast<torch::optim::LBFGSParamState&>(*kv.second).al(c10::nullopt);
    torch::serialize::OutputArchive o;
    n.optimizer->save(o);
    a.write(optimizer_key(names, n.set.name), o);
  }
  archive_write(a, "optim_stage", static_cast<int64_t>(optim_stage_));
  archive_write(a, "step", step_);
  archive_write(a, "epoch", epoch_);
  archive_write(a, "train_seconds", train_seconds());
  archive_write(a, "method_name", method_.name());
  if (!build_record.empty()) archive_write(a, "build", build_record);
  archive_write(a, "fit_finished", static_cast<int64_t>(fit_finished_ ? 1 : 0));
  a.write("rng_cpu", cpu_rng_state());
  write_checkpoint(path, a);
  last_good_checkpoint_step_ = step_;
}

void Trainer::resume(const std::string& path) {
  torch::serialize::InputArchive a;
  read_checkpoint(path, a);
  std::string name = archive_read_string(a, "method_name");
  if (name != method_.name())
    fail("{}: checkpoint is of method '{}', the config builds '{}'", path, name, method_.name());
  torch::serialize::InputArchive m;
  if (!a.try_read("method", m)) fail("{}: checkpoint has no method state", path);
  method_.load(m);
  if (!optimizers_.empty()) {
    // The state belongs to the stage that was training when it was saved.
    torch::Tensor stage;
    size_t index = 0;
    if (a.try_read("optim_stage", stage)) index = static_cast<size_t>(stage.item<int64_t>());
    if (index > optim_.stages.size())
      fail("{}: checkpoint was saved in optimizer stage {}, the config has {} stages", path,
           index, optim_.stages.size());
    if (index != optim_stage_) build_optimizers(index);
    const auto names = optimizer_names();
    for (auto& n : optimizers_) {
      torch::serialize::InputArchive o;
      if (!a.try_read(optimizer_key(names, n.set.name), o))
        fail("{}: checkpoint has no state for optimizer '{}'", path, n.set.name);
      n.optimizer->load(o);
    }
  }
  step_ = archive_read_int(a, "step");
  epoch_ = archive_read_int(a, "epoch");
  torch::Tensor secs, finished;  // absent from checkpoints written before they were recorded
  seconds_before_ = a.try_read("train_seconds", secs) ? secs.item<double>() : 0.0;
  fit_finished_ = a.try_read("fit_finished", finished) && finished.item<int64_t>() != 0;
  torch::Tensor rng;
  if (!a.try_read("rng_cpu", rng)) fail("{}: checkpoint has no RNG state", path);
  set_cpu_rng_state(rng);
  if (loader_) loader_->seek(step_);
  last_good_checkpoint_step_ = step_;
  log().info("resumed from {} at {} {}", path, method_.fits() ? "unit" : "step", step_);
}

void Trainer::check_finite(const LossMap& losses) {
  for (const auto& [name, value] : losses) {
    double v = value.detach().to(torch::kCPU).to(torch::kFloat64).item<double>();
    if (std::isfinite(v)) continue;
    std::string where =
        last_good_checkpoint_step_ >= 0
            ? fmt::format("the last good checkpoint is {} (step {})", last_checkpoint_path(),
                          last_good_checkpoint_step_)
            : std::string("no checkpoint was written yet");
    if (metrics_) metrics_->write("error", {{"step", step_}, {"message", "non-finite " + name}});
    if (fitting()) fail("fit diverged: '{}' is {} in unit {}; {}.", name, v, step_ + 1, where);
    std::vector<std::string> lrs;
    bool lbfgs = false;
    for (const auto& n : optimizers_) {
      lbfgs = lbfgs || n.settings.type == "lbfgs";
      lrs.push_back(optimizers_.size() == 1
                        ? fmt::format("lr {:.3g}", current_lr(n.set.name))
                        : fmt::format("{} lr {:.3g}", n.set.name, current_lr(n.set.name)));
    }
    fail("training diverged: '{}' is {} at step {} ({}); {}. Lower the learning rate{}.", name, v,
         step_, fmt::join(lrs, ", "), where, lbfgs ? "" : " or set train.grad_clip");
  }
}

LossMap Trainer::optimize(const std::string& name, const std::function<LossMap()>& closure) {
  Named& n = named(name);
  if (n.settings.reset_each_step) n.optimizer->state().clear();
  const bool on_cuda = device_.is_cuda();
  const bool amp = train_.amp && on_cuda;
  std::vector<torch::Tensor> own;
  if (train_.grad_clip > 0)
    for (const auto& g : n.set.groups) own.insert(own.end(), g.params.begin(), g.params.end());
  std::vector<torch::Tensor> set_params;  // data-parallel: the gradients to all-reduce
  if (group_)
    for (const auto& g : n.set.groups) set_params.insert(set_params.end(), g.params.begin(), g.params.end());
  LossMap first;
  auto evaluate_loss = [&]() -> torch::Tensor {
    for (auto& o : optimizers_) o.optimizer->zero_grad();
    LossMap losses;
    {
      AutocastGuard ac(amp);
      losses = closure();
    }
    if (losses.empty() || losses.front().first != "loss")
      fail("method '{}': the loss of optimizer '{}' (training_step or closure) must come first "
           "and be named \"loss\"",
           method_.name(), name);
    // CPU: checking every evaluation is free; CUDA: at log steps (no host sync).
    if (!on_cuda) check_finite(losses);
    losses.front().second.backward();
    torch::Tensor value = losses.front().second;
    if (group_) {
      // Data-parallel: the gradient of the global batch's loss. A global loss
      // (gathered rows, sums over ranks) is the same on every rank and its
      // gradients, each through this rank's rows, add up; a local loss (a mean
      // over this rank's rows) is one share of the mean: they average.
      allreduce_gradients(set_params, global_loss_);
      if (global_loss_) {
        // One value on every rank (L-BFGS's line search branches on it).
        value = torch::tensor(check_global_loss(value, name), torch::kFloat64)
                    .to(value.dtype())
                    .reshape({});
      } else {
        mean_values_over_ranks(losses);  // the loss the optimizer sees, and the logged values
        value = losses.front().second;
      }
      global_loss_ = false;
    }
    if (!own.empty()) torch::nn::utils::clip_grad_norm_(own, train_.grad_clip);
    if (first.empty()) first = losses;
    return value;
  };
  n.optimizer->step(evaluate_loss);
  return first;
}

void Trainer::wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
  std::string why;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    work->wait();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    comm_seconds_ += dt;
    comm_by_op_[what] += dt;
    return;
  } catch (...) {
    why = dist::current_exception_text();
  }
  // Gloo's own words ("Connection closed by peer", "Timed out waiting ...")
  // with what was being done and the two usual causes.
  fail("data-parallel training, rank {} of {} at step {}: {} failed: another rank died, or was "
       "busy longer than the job's timeout (dist.timeout, or HASHLAB_DIST_TIMEOUT; rank 0's "
       "periodic evaluation and DeepQuan's k-means refresh must fit in it). Gloo: {}",
       rank(), world_size(), step_, what, why);
}

void Trainer::check_data_parallel(const Method& method, int world_size) {
  if (world_size > 1 && method.fits())
    fail("method '{}' fits in closed form (or bit by bit), which is not distributed: run it as "
         "one process (WORLD_SIZE=1, no --nproc)",
         method.name());
  if (world_size > 1 && !method.supports_data_parallel())
    fail("method '{}' does not support data-parallel training yet (its batch-coupled loss "
         "terms or epoch-level work are not shared across ranks): run it as one process",
         method.name());
}

void Trainer::set_process_group(c10::intrusive_ptr<c10d::ProcessGroup> group) {
  if (group) check_data_parallel(method_, group->getSize());
  group_ = group && group->getSize() > 1 ? group : c10::intrusive_ptr<c10d::ProcessGroup>();
}

int Trainer::rank() const { return group_ ? group_->getRank() : 0; }
int Trainer::world_size() const { return group_ ? group_->getSize() : 1; }

torch::Tensor Trainer::all_gather(const torch::Tensor& x) {
  if (!group_) return x;
  HL_CHECK(x.device().is_cpu(),
           "all_gather: data-parallel training runs on the CPU (Gloo); got a tensor on {}",
           x.device().str());
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < world_size(); ++r) out[0].push_back(torch::empty_like(x.detach()));
  std::vector<at::Tensor> in = {x.detach().contiguous()};
  wait(group_->allgather(out, in), "all_gather");
  out[0][rank()] = x;  // this rank's rows keep their graph
  if (x.requires_grad()) global_loss_ = true;
  return torch::cat(out[0]);
}

torch::Tensor Trainer::sum_over_ranks(const torch::Tensor& local) {
  if (!group_) return local;
  HL_CHECK(local.device().is_cpu(),
           "sum_over_ranks: data-parallel training runs on the CPU (Gloo); got a tensor on {}",
           local.device().str());
  std::vector<at::Tensor> v = {local.detach().to(torch::kFloat64).contiguous().clone()};
  wait(group_->allreduce(v), "sum_over_ranks");
  if (local.requires_grad()) global_loss_ = true;
  // The sum's value, the same bits on every rank (local - local.detach() is
  // an exact zero), and the gradient of `local` (the other ranks' parts are
  // constants here).
  return v[0].to(local.scalar_type()) + (local - local.detach());
}

torch::Tensor Trainer::mean_over_ranks(const torch::Tensor& local_mean) {
  if (!group_) return local_mean;
  return sum_over_ranks(local_mean) / static_cast<double>(world_size());
}

torch::Tensor Trainer::local_rows(const torch::Tensor& global) const {
  if (!group_) return global;
  const int64_t n = global.size(0), w = world_size();
  HL_CHECK(n % w == 0, "local_rows: {} rows do not split over {} ranks", n, w);
  const auto [lo, hi] = data::shard_rows(n, rank(), w);  // the loader's split
  return global.narrow(0, lo, hi - lo);
}

void Trainer::broadcast(std::vector<torch::Tensor>& tensors) {
  if (!group_ || tensors.empty()) return;
  torch::NoGradGuard ng;
  // One flattened broadcast per dtype (Gloo takes one dtype per call): a
  // step's buffers (float statistics, int64 counters) cost two round trips,
  // not one per tensor.
  std::map<c10::ScalarType, std::vector<torch::Tensor*>> by_type;
  for (auto& t : tensors) {
    HL_CHECK(t.defined() && t.device().is_cpu(), "broadcast: needs defined CPU tensors");
    by_type[t.scalar_type()].push_back(&t);
  }
  for (auto& [type, ts] : by_type) {
    std::vector<torch::Tensor> flat;
    for (const auto* t : ts) flat.push_back(t->detach().reshape({-1}));
    std::vector<at::Tensor> v = {torch::cat(flat)};
    wait(group_->broadcast(v), "broadcast");
    int64_t off = 0;
    for (auto* t : ts) {
      t->detach().copy_(v[0].narrow(0, off, t->numel()).view_as(*t));
      off += t->numel();
    }
  }
}

double Trainer::check_global_loss(const torch::Tensor& value, const std::string& name) {
  // Max and min over ranks in one collective.
  const double v = value.detach().to(torch::kCPU, torch::kFloat64).item<double>();
  std::vector<at::Tensor> mm = {torch::tensor({v, -v}, torch::kFloat64)};
  wait(group_->allreduce(mm, c10d::AllreduceOptions{c10d::ReduceOp::MAX}), "the global loss check");
  const double hi = mm[0][0].item<double>(), lo = -mm[0][1].item<double>();
  if (!(hi - lo <= 1e-5 * std::max(1.0, std::abs(hi))))
    fail("data-parallel training: method '{}' (optimizer '{}') computed a global loss (it "
         "gathered rows or summed over ranks) that differs across ranks: {:.9g} to {:.9g}. Every "
         "term of such a loss must be global: gather the rows (Trainer::all_gather) or reduce "
         "this rank's means (Trainer::mean_over_ranks)",
         method_.name(), name, lo, hi);
  return hi;
}

void Trainer::mean_values_over_ranks(LossMap& losses) {
  std::vector<double> local;
  for (const auto& kv : losses)
    local.push_back(kv.second.numel() == 1
                        ? kv.second.detach().to(torch::kCPU, torch::kFloat64).item<double>()
                        : 0.0);
  std::vector<at::Tensor> v = {torch::tensor(local, torch::kFloat64)};
  wait(group_->allreduce(v), "the mean of the logged values");
  v[0].div_(static_cast<double>(world_size()));
  const double* m = v[0].data_ptr<double>();
  for (size_t i = 0; i < losses.size(); ++i) {
    if (losses[i].second.numel() != 1) continue;
    losses[i].second =
        torch::tensor(m[i], torch::kFloat64).to(losses[i].second.dtype()).reshape({});
  }
}

bool Trainer::stop_requested() {
  bool stop = interrupt_requested();
  if (!group_) return stop;
  std::vector<at::Tensor> v = {torch::full({1}, stop ? 1 : 0, torch::kInt32)};
  wait(group_->allreduce(v, c10d::AllreduceOptions{c10d::ReduceOp::MAX}), "the stop flag");
  return v[0].item<int>() != 0;
}

void Trainer::broadcast_parameters(bool buffers_only) {
  auto* mod = method_.module();
  if (!group_ || !mod) return;
  std::vector<torch::Tensor> all;
  if (!buffers_only)
    for (const auto& p : mod->parameters()) all.push_back(p);
  for (const auto& b : mod->buffers()) all.push_back(b);
  broadcast(all);
}

void Trainer::allreduce_gradients(const std::vector<torch::Tensor>& params, bool sum) {
  // Flattened buckets of about 16 MB (DDP's reducer does the same with 25 MB).
  constexpr int64_t kBucketElems = int64_t{4} << 20;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);  // unused this step
    grads.push_back(p.grad());
  }
  for (size_t i = 0; i < grads.size();) {
    size_t j = i;
    int64_t elems = 0;
    std::vector<torch::Tensor> flat;
    while (j < grads.size() && (j == i || elems + grads[j].numel() <= kBucketElems)) {
      flat.push_back(grads[j].reshape({-1}).to(torch::kCPU, torch::kFloat32));
      elems += grads[j].numel();
      ++j;
    }
    std::vector<at::Tensor> bucket = {torch::cat(flat)};
    wait(group_->allreduce(bucket), "the gradient all-reduce");
    if (!sum) bucket[0].div_(double(world_size()));
    int64_t off = 0;
    for (size_t g = i; g < j; ++g) {
      const int64_t n = grads[g].numel();
      grads[g].copy_(bucket[0].narrow(0, off, n).view_as(grads[g]));
      off += n;
    }
    i = j;
  }
}

void Trainer::check_parameters_agree() {
  auto* mod = method_.module();
  if (!group_ || !mod) return;
  torch::NoGradGuard ng;
  // A fingerprint of every parameter (weighted sums, double): equal on every
  // rank unless the replicas drifted apart.
  double f = 0;
  int64_t k = 0;
  for (const auto& p : mod->parameters())
    f += (p.detach().to(torch::kCPU, torch::kFloat64).reshape({-1}) *
          torch::arange(1, p.numel() + 1, torch::kFloat64).mul_(1e-6).add_(double(++k)))
             .sum()
             .item<double>();
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < world_size(); ++r) out[0].push_back(torch::empty({1}, torch::kFloat64));
  std::vector<at::Tensor> in = {torch::full({1}, f, torch::kFloat64)};
  wait(group_->allgather(out, in), "the parameter check");
  for (int r = 1; r < world_size(); ++r)
    if (out[0][r].item<double>() != out[0][0].item<double>())
      fail("data-parallel training: the parameters of rank {} differ from rank 0's "
           "(fingerprints {:.17g} and {:.17g}); the replicas drifted apart",
           r, out[0][r].item<double>(), out[0][0].item<double>());
  if (rank() == 0)
    log().info("parameters agree on all {} ranks (fingerprint {:.17g})", world_size(), f);
}

LossMap Trainer::default_step(const Batch& batch) {
  if (optimizers_.size() != 1)
    fail("method '{}' declares {} optimizers ({}): it must run its own step()", method_.name(),
         optimizers_.size(), fmt::join(optimizer_names(), ", "));
  return optimize(optimizers_.front().set.name,
                  [&] { return method_.training_step(batch, *this); });
}

void Trainer::begin_units(const FitPlan& plan) {
  HL_CHECK(fitting(), "begin_units: method '{}' trains in steps, not units", method_.name());
  HL_CHECK(plan.checkpoint_every >= 0 && plan.units >= 0, "begin_units: negative plan");
  plan_ = plan;
  if (progress_) progress_->clear();
  progress_ = std::make_unique<Progress>(step_, plan_.units, plan_.unit, 1, 1);
}

void Trainer::unit_done(const LossMap& values) {
  HL_CHECK(fitting(), "unit_done: method '{}' trains in steps, not units", method_.name());
  check_finite(values);
  ++step_;
  for (auto& h : hooks_) h->after_step(*this, values);
}

void Trainer::train() {
  InterruptGuard guard;
  session_start_ = std::chrono::steady_clock::now();
  // Stop the clock however train() leaves: return, interrupt or divergence.
  struct StopClock {
    Trainer& t;
    ~StopClock() { t.stop_clock(); }
  } stop_clock_on_exit{*this};
  if (method_.fits()) {
    run_fit();
  } else {
    run_loop();
  }
}

void Trainer::run_loop() {
  if (!loader_) fail("trainer: no training data loader");
  for (auto& h : hooks_) h->before_train(*this);
  if (auto* mod = method_.module()) mod->train();
  const bool on_cuda = device_.is_cuda();
  // Data-parallel: rank 0 alone shows progress (batch_size is the global batch).
  if (rank() == 0)
    progress_ = std::make_unique<Progress>(step_, train_.iterations, "img", train_.batch_size,
                                         train_.log_every);
  broadcast_parameters();
  // Dropout draws its masks from the CPU generator, whose state is the same
  // on every rank: each rank's rows would get the other ranks' masks. With
  // dropout, every step of rank r seeds the generator from (loader seed,
  // step, r): masks independent across ranks, and a resumed job still draws
  // what an uninterrupted one draws. (Not the one-process draws: a global
  // batch's masks cannot be cut per rank inside a module.)
  const bool rank_seeded = group_ && has_active_dropout();
  if (rank_seeded && rank() == 0)
    log().info("data-parallel with dropout: each rank draws its own masks (CPU generator seeded "
               "per step and rank)");
  while (step_ < train_.iterations) {
    Batch batch = loader_->next();
    if (epoch_ < 0) {
      epoch_ = batch.epoch;
    } else if (batch.epoch != epoch_) {
      for (auto& h : hooks_) h->after_epoch(*this);
      epoch_ = batch.epoch;
    }
    if (train_.channels_last && on_cuda && batch.x.dim() == 4)
      batch.x = batch.x.contiguous(torch::MemoryFormat::ChannelsLast);
    for (auto& h : hooks_) h->before_step(*this);
    if (group_) broadcast_parameters(/*buffers_only=*/true);  // as DDP: rank 0's BN statistics
    if (rank_seeded)
      seed_cpu_generator(data::mix_seed(loader_->options().seed(), static_cast<uint64_t>(step_),
                                        static_cast<uint64_t>(rank()) + 1));
    LossMap losses = method_.step(batch, *this);
    ++step_;
    for (auto& h : hooks_) h->after_step(*this, losses);
  }
  if (progress_) progress_->finish();
  check_parameters_agree();
  if (group_) {
    std::vector<std::string> parts;
    for (const auto& [op, sec] : comm_by_op_) parts.push_back(fmt::format("{} {:.1f} s", op, sec));
    log().info("rank {}: waited {:.1f} s on collectives this session ({})", rank(), comm_seconds_,
               fmt::join(parts, ", "));
  }
  for (auto& h : hooks_) h->after_train(*this);
  if (auto* mod = method_.module()) mod->eval();
}

bool Trainer::has_active_dropout() {
  auto* mod = method_.module();
  if (!mod) return false;
  auto active = [](const auto* d) { return d != nullptr && d->options.p() > 0; };
  for (const auto& m : mod->modules())
    if (active(m->as<torch::nn::Dropout>()) || active(m->as<torch::nn::Dropout2d>()) ||
        active(m->as<torch::nn::Dropout3d>()) || active(m->as<torch::nn::AlphaDropout>()) ||
        active(m->as<torch::nn::FeatureAlphaDropout>()))
      return true;
  return false;
}

void Trainer::run_fit() {
  if (fit_finished_) {
    log().info("method '{}' finished fitting before this session (resumed a finished run)",
               method_.name());
    return;
  }
  for (auto& h : hooks_) h->before_train(*this);
  method_.fit(training_set(), *this);
  if (progress_) progress_->finish();
  fit_finished_ = true;
  // A fit that does not work in units sees a signal only here: stop with its
  // result saved (a resume goes straight to the evaluation).
  if (interrupt_requested()) interrupt_hook()->after_step(*this, {});
  for (auto& h : hooks_) h->after_train(*this);
}

}  // namespace hashlab
