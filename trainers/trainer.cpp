#include "trainers/trainer.h"

#include <ATen/autocast_mode.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "csrc/core/checkpoint.h"
#include "csrc/core/device.h"
#include "csrc/core/error.h"
#include "csrc/core/progress.h"
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

Trainer::Trainer(Method& method, Loader* loader, TrainOptions train, OptimOptions optim,
                 torch::Device device, std::string checkpoint_dir, MetricsWriter* metrics)
    : method_(method),
      loader_(loader),
      train_(train),
      optim_(std::move(optim)),
      device_(device),
      checkpoint_dir_(std::move(checkpoint_dir)),
      metrics_(metrics) {
  if (method_.uses_trainer()) {
    groups_ = method_.param_groups();
    if (groups_.empty()) fail("method '{}' returned no parameters to train", method_.name());
    build_optimizer(optim_.stage_index(0));
  }
}

Trainer::~Trainer() = default;

void Trainer::build_optimizer(size_t index) {
  optimizer_ = make_optimizer(optim_.stage(index), groups_);
  optim_stage_ = index;
}

double Trainer::current_lr_factor() const {
  return staged_lr_factor(optim_, step_, train_.iterations);
}

double Trainer::current_lr() const {
  return optim_.stage(optim_.stage_index(step_)).lr * current_lr_factor();
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

std::string Trainer::last_checkpoint_path() const {
  return checkpoint_dir_.empty() ? "" : (fs::path(checkpoint_dir_) / "last.pt").string();
}

void Trainer::save_checkpoint(const std::string& path) {
  torch::serialize::OutputArchive a;
  torch::serialize::OutputArchive m;
  method_.save(m);
  a.write("method", m);
  if (optimizer_) {
    torch::serialize::OutputArchive o;
    optimizer_->save(o);
    a.write("optimizer", o);
  }
  archive_write(a, "optim_stage", static_cast<int64_t>(optim_stage_));
  archive_write(a, "step", step_);
  archive_write(a, "epoch", epoch_);
  archive_write(a, "train_seconds", train_seconds());
  archive_write(a, "method_name", method_.name());
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
  if (optimizer_) {
    // The state belongs to the stage that was training when it was saved.
    torch::Tensor stage;
    size_t index = 0;
    if (a.try_read("optim_stage", stage)) index = static_cast<size_t>(stage.item<int64_t>());
    if (index > optim_.stages.size())
      fail("{}: checkpoint was saved in optimizer stage {}, the config has {} stages", path,
           index, optim_.stages.size());
    if (index != optim_stage_) build_optimizer(index);
    torch::serialize::InputArchive o;
    if (!a.try_read("optimizer", o)) fail("{}: checkpoint has no optimizer state", path);
    optimizer_->load(o);
  }
  step_ = archive_read_int(a, "step");
  epoch_ = archive_read_int(a, "epoch");
  torch::Tensor secs;  // absent from checkpoints written before it was recorded
  seconds_before_ = a.try_read("train_seconds", secs) ? secs.item<double>() : 0.0;
  torch::Tensor rng;
  if (!a.try_read("rng_cpu", rng)) fail("{}: checkpoint has no RNG state", path);
  set_cpu_rng_state(rng);
  if (loader_) loader_->seek(step_);
  last_good_checkpoint_step_ = step_;
  log().info("resumed from {} at step {}", path, step_);
}

void Trainer::check_finite(const LossMap& losses) {
  for (const auto& [name, value] : losses) {
    double v = value.detach().to(torch::kCPU).to(torch::kFloat64).item<double>();
    if (!std::isfinite(v)) {
      std::string where =
          last_good_checkpoint_step_ >= 0
              ? fmt::format("the last good checkpoint is {} (step {})", last_checkpoint_path(),
                            last_good_checkpoint_step_)
              : std::string("no checkpoint was written yet");
      if (metrics_)
        metrics_->write("error", {{"step", step_}, {"message", "non-finite " + name}});
      fail("training diverged: '{}' is {} at step {} (lr {:.3g}); {}. Lower optim.lr or "
           "set train.grad_clip.",
           name, v, step_, current_lr(), where);
    }
  }
}

void Trainer::log_step(const LossMap& losses, double sec_per_step) {
  nlohmann::json rec;
  rec["step"] = step_;
  rec["epoch"] = epoch_;
  rec["lr"] = current_lr();
  for (const auto& [name, value] : losses)
    rec[name] = value.detach().to(torch::kCPU).to(torch::kFloat64).item<double>();
  for (const auto& [name, value] : method_.status()) rec[name] = value;
  rec["sec_per_step"] = sec_per_step;
  if (metrics_) metrics_->write("train", rec);
}

void Trainer::train() {
  if (!method_.uses_trainer()) fail("method '{}' does not train through the trainer", method_.name());
  if (!loader_) fail("trainer: no training data loader");
  InterruptGuard guard;
  session_start_ = std::chrono::steady_clock::now();
  // Stop the clock however train() leaves: return, interrupt or divergence.
  struct StopClock {
    Trainer& t;
    ~StopClock() { t.stop_clock(); }
  } stop_clock_on_exit{*this};
  method_.before_train(*this);
  if (auto* mod = method_.module()) mod->train();
  const bool on_cuda = device_.is_cuda();
  const bool amp = train_.amp && on_cuda;
  Progress progress(step_, train_.iterations, "img", train_.batch_size, train_.log_every);
  auto t_last = std::chrono::steady_clock::now();
  int64_t steps_since_log = 0;
  std::string extra;  // progress suffix, refreshed on log steps

  while (step_ < train_.iterations) {
    Batch batch = loader_->next();
    if (epoch_ < 0) {
      epoch_ = batch.epoch;
    } else if (batch.epoch != epoch_) {
      method_.after_epoch(*this);
      epoch_ = batch.epoch;
    }
    if (train_.channels_last && on_cuda && batch.x.dim() == 4)
      batch.x = batch.x.contiguous(torch::MemoryFormat::ChannelsLast);
    const size_t stage = optim_.stage_index(step_);
    if (stage != optim_stage_) {
      build_optimizer(stage);
      const OptimOptions& o = optim_.stage(stage);
      progress.clear();
      log().info("step {}: optimizer stage {} ({} lr {:g})", step_, stage, o.type, o.lr);
    }
    apply_lr(*optimizer_, optim_.stage(stage), groups_, current_lr_factor());
    optimizer_->zero_grad();
    LossMap losses;
    {
      AutocastGuard ac(amp);
      losses = method_.training_step(batch, *this);
    }
    if (losses.empty() || losses.front().first != "loss")
      fail("method '{}': training_step must return \"loss\" first", method_.name());
    // CPU: checking every step is free; CUDA: only when logging (no host sync).
    if (!on_cuda) check_finite(losses);
    losses.front().second.backward();
    if (train_.grad_clip > 0) {
      std::vector<torch::Tensor> params;
      for (const auto& g : groups_) params.insert(params.end(), g.params.begin(), g.params.end());
      torch::nn::utils::clip_grad_norm_(params, train_.grad_clip);
    }
    optimizer_->step();
    ++step_;
    ++steps_since_log;
    method_.after_step(*this);

    const bool log_now = step_ % train_.log_every == 0 || step_ == train_.iterations;
    if (log_now) {
      if (on_cuda) check_finite(losses);
      auto now = std::chrono::steady_clock::now();
      double sec = std::chrono::duration<double>(now - t_last).count() / steps_since_log;
      t_last = now;
      steps_since_log = 0;
      log_step(losses, sec);
    }
    // The loss read-out syncs with the device: refresh it only on log steps
    // (the bar shows the last logged values in between).
    if (log_now) {
      extra = fmt::format("loss {:.4f}",
                          losses.front().second.detach().to(torch::kCPU).item<double>());
      for (const auto& [name, value] : method_.status())
        extra += fmt::format(" {} {:.4g}", name, value);
    }
    progress.update(step_, extra);

    if (train_.eval_every > 0 && step_ % train_.eval_every == 0 && step_ < train_.iterations &&
        evaluate) {
      progress.clear();
      if (auto* mod = method_.module()) mod->eval();
      nlohmann::json r = evaluate();
      r["step"] = step_;
      if (metrics_) metrics_->write("eval", r);
      log().info("eval at step {}: {}", step_, r.dump());
      if (auto* mod = method_.module()) mod->train();
    }
    const bool ckpt_now = !checkpoint_dir_.empty() && train_.checkpoint_every > 0 &&
                          step_ % train_.checkpoint_every == 0;
    if (ckpt_now) {
      if (on_cuda && !log_now) check_finite(losses);
      save_checkpoint(last_checkpoint_path());
    }
    if (interrupt_requested()) {
      progress.finish();
      if (on_cuda) check_finite(losses);
      std::string where = "no checkpoint directory";
      if (!checkpoint_dir_.empty()) {
        save_checkpoint(last_checkpoint_path());
        where = last_checkpoint_path();
      }
      log().warn("interrupted by signal {} at step {}/{}; checkpoint written to {}",
                 interrupt_signal(), step_, train_.iterations, where);
      if (!resume_hint.empty()) log().warn("resume with: {}", resume_hint);
      if (metrics_) metrics_->write("interrupt", {{"step", step_}});
      throw ExitStatus(130);
    }
  }
  progress.finish();
  method_.after_train(*this);
  stop_clock();  // before the final checkpoint records the time
  if (!checkpoint_dir_.empty()) save_checkpoint(last_checkpoint_path());
  if (auto* mod = method_.module()) mod->eval();
}

}  // namespace hashlab
