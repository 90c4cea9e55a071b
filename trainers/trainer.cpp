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

}  // namespace

LossMap StepMethod::step(const Batch& batch, StepContext& ctx) {
  const auto names = ctx.optimizer_names();
  if (names.size() != 1)
    fail("method '{}' declares {} optimizers ({}): it must run its own step()", name(),
         names.size(), fmt::join(names, ", "));
  return ctx.optimize(names.front(), [&] { return training_step(batch, ctx); },
                      training_loss_scope());
}

Trainer::Trainer(Method& method, Loader* loader, TrainOptions train, OptimOptions optim,
                 torch::Device device, std::string checkpoint_dir, MetricsWriter* metrics)
    : Trainer(method, loader, train, std::move(optim), device, [&] {
        TrainerSetup s;
        s.checkpoint_dir = std::move(checkpoint_dir);
        s.metrics = metrics;
        return s;
      }()) {}

Trainer::Trainer(Method& method, Loader* loader, TrainOptions train, OptimOptions optim,
                 torch::Device device, TrainerSetup setup)
    : method_(method),
      step_method_(dynamic_cast<StepMethod*>(&method)),
      fit_method_(dynamic_cast<FitMethod*>(&method)),
      loader_(loader),
      train_(train),
      device_(device),
      metrics_(setup.metrics),
      dp_(setup.group, method.name()),
      checkpointer_(setup.checkpoint_dir, setup.build_record) {
  HL_CHECK((step_method_ != nullptr) != (fit_method_ != nullptr),
           "method '{}' must be a StepMethod or a FitMethod", method_.name());
  if (setup.group) check_data_parallel(method_, setup.group->getSize());
  if (step_method_) {
    optimizers_ = std::make_unique<OptimizerSet>(step_method_->parameter_sets(), std::move(optim),
                                                 train_.grad_clip, train_.iterations,
                                                 method_.name());
    hooks_ = {method_hook(*step_method_, *this), lr_schedule_hook(*optimizers_)};
  } else if (!optim.optimizers.empty()) {
    fail("{}: method '{}' fits without optimizers; optim.optimizers does not apply",
         optim.optimizers.begin()->second.where, method_.name());
  }
  hooks_.insert(hooks_.end(),
                {finite_guard_hook(checkpointer_), metrics_hook(), eval_hook(setup.evaluate)});
  final_hooks_ = {checkpoint_hook(checkpointer_),
                  interrupt_hook(checkpointer_, setup.resume_hint)};
}

Trainer::~Trainer() = default;

void Trainer::add_hook(std::shared_ptr<TrainerHook> hook) { user_hooks_.push_back(std::move(hook)); }

std::vector<std::string> Trainer::optimizer_names() const {
  return optimizers_ ? optimizers_->names() : std::vector<std::string>{};
}

bool Trainer::reevaluates(const std::string& name) {
  HL_CHECK(optimizers_ != nullptr, "method '{}' fits without optimizers", method_.name());
  return optimizers_->settings(name).is_lbfgs();
}

const TrainingSet& Trainer::training_set() {
  if (!training_set_) {
    HL_CHECK(loader_ != nullptr, "trainer: no training data (loader) for method '{}'",
             method_.name());
    training_set_ = std::make_unique<TrainingSet>(*loader_);
  }
  return *training_set_;
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

void Trainer::save_state(torch::serialize::OutputArchive& a) {
  torch::serialize::OutputArchive m;
  method_.save(m);
  a.write("method", m);
  if (optimizers_) optimizers_->save(a);
  archive_write(a, "step", step_);
  archive_write(a, "epoch", epoch_);
  archive_write(a, "train_seconds", train_seconds());
  archive_write(a, "method_name", method_.name());
  archive_write(a, "fit_finished", static_cast<int64_t>(fit_finished_ ? 1 : 0));
  a.write("rng_cpu", cpu_rng_state());
}

void Trainer::load_state(torch::serialize::InputArchive& a, const std::string& file) {
  std::string name = archive_read_string(a, "method_name");
  if (name != method_.name())
    fail("{}: checkpoint is of method '{}', the config builds '{}'", file, name, method_.name());
  torch::serialize::InputArchive m;
  if (!a.try_read("method", m)) fail("{}: checkpoint has no method state", file);
  method_.load(m);
  if (optimizers_) optimizers_->load(a, file);
  step_ = archive_read_int(a, "step");
  epoch_ = archive_read_int(a, "epoch");
  torch::Tensor secs, finished;  // absent from checkpoints written before they were recorded
  seconds_before_ = a.try_read("train_seconds", secs) ? secs.item<double>() : 0.0;
  fit_finished_ = a.try_read("fit_finished", finished) && finished.item<int64_t>() != 0;
  torch::Tensor rng;
  if (!a.try_read("rng_cpu", rng)) fail("{}: checkpoint has no RNG state", file);
  set_cpu_rng_state(rng);
  if (loader_) loader_->seek(step_);
}

void Trainer::resume(const std::string& path) {
  torch::serialize::InputArchive a;
  checkpointer_.read(path, a);
  load_state(a, path);
  checkpointer_.resumed_at(step_);
  log().info("resumed from {} at {} {}", path, fitting() ? "unit" : "step", step_);
}

void Trainer::check_finite(const LossMap& losses) {
  for (const auto& [name, value] : losses) {
    double v = value.detach().to(torch::kCPU).to(torch::kFloat64).item<double>();
    if (std::isfinite(v)) continue;
    const std::string where = checkpointer_.recovery_hint();
    if (metrics_) metrics_->write("error", {{"step", step_}, {"message", "non-finite " + name}});
    if (fitting()) fail("fit diverged: '{}' is {} in unit {}; {}.", name, v, step_ + 1, where);
    fail("training diverged: '{}' is {} at step {} ({}); {}. Lower the learning rate{}.", name, v,
         step_, optimizers_->describe_lrs(step_), where,
         optimizers_->has_lbfgs() ? "" : " or set train.grad_clip");
  }
}

LossMap Trainer::optimize(const std::string& name, const std::function<LossMap()>& closure,
                          LossScope scope) {
  HL_CHECK(optimizers_ != nullptr, "optimize: method '{}' fits without optimizers",
           method_.name());
  torch::optim::Optimizer& opt = optimizers_->get(name);
  if (optimizers_->settings(name).reset_each_step) opt.state().clear();
  const bool on_cuda = device_.is_cuda();
  const bool amp = train_.amp && on_cuda;
  const std::vector<torch::Tensor> own = optimizers_->parameters(name);
  LossMap first;
  auto evaluate_loss = [&]() -> torch::Tensor {
    // Gradients are dropped, not zeroed (PyTorch's zero_grad(set_to_none=True)):
    // backward then hands each gradient over in its fresh buffer instead of
    // adding it into a zeroed one. For a large layer (AlexNet's fc6 weight is
    // 151 MB) that is a memset and a read-add-write pass less per step.
    // Consumers treat a missing gradient as zero (DataParallel, the optimizers).
    for (const auto& n : optimizers_->names())
      for (auto& group : optimizers_->get(n).param_groups())
        for (auto& p : group.params()) p.mutable_grad().reset();
    LossMap losses;
    {
      AutocastGuard ac(amp);
      DataParallel::ScopeGuard sg(dp_, scope, name);
      losses = closure();
    }
    if (losses.empty() || losses.front().first != "loss")
      fail("method '{}': the loss of optimizer '{}' (training_step or closure) must come first "
           "and be named \"loss\"",
           method_.name(), name);
    // CPU: checking every evaluation is free; CUDA: at log steps (no host sync).
    if (!on_cuda) check_finite(losses);
    losses.front().second.backward();
    // Data-parallel: the global batch's gradient and the value every rank sees.
    torch::Tensor value = dp_.reduce_step(own, losses, scope, name);
    if (train_.grad_clip > 0) torch::nn::utils::clip_grad_norm_(own, train_.grad_clip);
    if (first.empty()) first = losses;
    return value;
  };
  opt.step(evaluate_loss);
  return first;
}

void Trainer::check_data_parallel(const Method& method, int world_size) {
  if (world_size <= 1) return;
  if (dynamic_cast<const FitMethod*>(&method))
    fail("method '{}' fits in closed form (or bit by bit), which is not distributed: run it as "
         "one process (WORLD_SIZE=1, no --nproc)",
         method.name());
  const auto* s = dynamic_cast<const StepMethod*>(&method);
  if (!s || !s->supports_data_parallel())
    fail("method '{}' does not support data-parallel training yet (its batch-coupled loss "
         "terms or epoch-level work are not shared across ranks): run it as one process",
         method.name());
}

void Trainer::begin_units(const FitPlan& plan) {
  HL_CHECK(plan.checkpoint_every >= 0 && plan.units >= 0, "begin_units: negative plan");
  plan_ = plan;
  if (progress_) progress_->clear();
  progress_ = std::make_unique<Progress>(step_, plan_.units, plan_.unit, 1, 1);
}

void Trainer::unit_done(const LossMap& values) {
  check_finite(values);
  ++step_;
  each_hook([&](TrainerHook& h) { h.after_step(*this, values); });
}

void Trainer::train() {
  InterruptGuard guard;
  session_start_ = std::chrono::steady_clock::now();
  // Stop the clock however train() leaves: return, interrupt or divergence.
  struct StopClock {
    Trainer& t;
    ~StopClock() { t.stop_clock(); }
  } stop_clock_on_exit{*this};
  if (fit_method_) {
    run_fit(*fit_method_);
  } else {
    run_loop(*step_method_);
  }
}

void Trainer::run_loop(StepMethod& method) {
  if (!loader_) fail("trainer: no training data loader");
  each_hook([&](TrainerHook& h) { h.before_train(*this); });
  auto* mod = method.module();
  if (mod) mod->train();
  const bool on_cuda = device_.is_cuda();
  // Data-parallel: rank 0 alone shows progress (batch_size is the global batch).
  if (dp_.rank() == 0)
    progress_ = std::make_unique<Progress>(step_, train_.iterations, "img", train_.batch_size,
                                           train_.log_every);
  if (mod) dp_.broadcast_module(*mod, /*buffers_only=*/false);
  // Dropout draws its masks from the CPU generator, whose state is the same
  // on every rank: each rank's rows would get the other ranks' masks. With
  // dropout, every step of rank r seeds the generator from (loader seed,
  // step, r): masks independent across ranks, and a resumed job still draws
  // what an uninterrupted one draws. (Not the one-process draws: a global
  // batch's masks cannot be cut per rank inside a module.)
  const bool rank_seeded = dp_.active() && has_active_dropout();
  if (rank_seeded && dp_.rank() == 0)
    log().info("data-parallel with dropout: each rank draws its own masks (CPU generator seeded "
               "per step and rank)");
  while (step_ < train_.iterations) {
    Batch batch = loader_->next();
    if (epoch_ < 0) {
      epoch_ = batch.epoch;
    } else if (batch.epoch != epoch_) {
      each_hook([&](TrainerHook& h) { h.after_epoch(*this); });
      epoch_ = batch.epoch;
    }
    if (train_.channels_last && on_cuda && batch.x.dim() == 4)
      batch.x = batch.x.contiguous(torch::MemoryFormat::ChannelsLast);
    each_hook([&](TrainerHook& h) { h.before_step(*this); });
    dp_.set_step(step_);
    if (mod) dp_.broadcast_module(*mod, /*buffers_only=*/true);  // as DDP: rank 0's BN statistics
    if (rank_seeded)
      seed_cpu_generator(data::mix_seed(loader_->options().seed(), static_cast<uint64_t>(step_),
                                        static_cast<uint64_t>(dp_.rank()) + 1));
    LossMap losses = method.step(batch, *this);
    ++step_;
    each_hook([&](TrainerHook& h) { h.after_step(*this, losses); });
  }
  if (progress_) progress_->finish();
  if (mod) dp_.check_parameters_agree(*mod);
  if (dp_.active()) {
    std::vector<std::string> parts;
    for (const auto& [op, sec] : dp_.comm_by_op()) parts.push_back(fmt::format("{} {:.1f} s", op, sec));
    log().info("rank {}: waited {:.1f} s on collectives this session ({})", dp_.rank(),
               dp_.comm_seconds(), fmt::join(parts, ", "));
  }
  stop_clock();  // before the final checkpoint records the time
  each_hook([&](TrainerHook& h) { h.after_train(*this); });
  if (mod) mod->eval();
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

void Trainer::run_fit(FitMethod& method) {
  if (fit_finished_) {
    log().info("method '{}' finished fitting before this session (resumed a finished run)",
               method_.name());
    return;
  }
  each_hook([&](TrainerHook& h) { h.before_train(*this); });
  method.fit(training_set(), *this);
  if (progress_) progress_->finish();
  fit_finished_ = true;
  stop_clock();  // before the final checkpoint records the time
  each_hook([&](TrainerHook& h) { h.after_train(*this); });
}

}  // namespace hashlab
