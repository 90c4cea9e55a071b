#include "trainers/hooks.h"

#include <chrono>

#include <nlohmann/json.hpp>

#include "csrc/core/error.h"
#include "csrc/core/json_text.h"
#include "csrc/core/logging.h"
#include "csrc/core/signals.h"
#include "trainers/trainer.h"

namespace hashlab {

namespace {

bool is_log_step(Trainer& t) {
  if (t.fitting()) return true;
  return t.step() % t.options().log_every == 0 || t.step() == t.options().iterations;
}

bool is_checkpoint_step(Trainer& t) {
  const int64_t every = t.checkpoint_every();
  return !t.last_checkpoint_path().empty() && every > 0 && t.step() % every == 0;
}

double scalar(const torch::Tensor& v) {
  return v.detach().to(torch::kCPU).to(torch::kFloat64).item<double>();
}

class MethodHook : public TrainerHook {
 public:
  explicit MethodHook(Method& m) : m_(m) {}
  void before_train(Trainer& t) override {
    if (!t.fitting()) m_.before_train(t);
  }
  void after_step(Trainer& t, const LossMap&) override {
    if (!t.fitting()) m_.after_step(t);
  }
  void after_epoch(Trainer& t) override { m_.after_epoch(t); }
  void after_train(Trainer& t) override {
    if (!t.fitting()) m_.after_train(t);
  }

 private:
  Method& m_;
};

class LRScheduleHook : public TrainerHook {
 public:
  void before_step(Trainer& t) override { t.apply_lr_schedule(); }
};

class FiniteGuardHook : public TrainerHook {
 public:
  void after_step(Trainer& t, const LossMap& losses) override {
    if (t.device().is_cuda() && !t.fitting() && (is_log_step(t) || is_checkpoint_step(t)))
      t.check_finite(losses);
  }
};

class MetricsHook : public TrainerHook {
 public:
  void before_train(Trainer& t) override {
    t_last_ = std::chrono::steady_clock::now();
    since_log_ = 0;
    comm_last_ = t.comm_seconds();
  }
  void after_step(Trainer& t, const LossMap& losses) override {
    ++since_log_;
    // The loss read-out syncs with the device: only on log steps (the bar
    // shows the last logged values in between).
    if (is_log_step(t)) {
      auto now = std::chrono::steady_clock::now();
      const double steps = static_cast<double>(since_log_);
      double sec = std::chrono::duration<double>(now - t_last_).count() / steps;
      t_last_ = now;
      since_log_ = 0;
      nlohmann::json rec;
      rec["step"] = t.step();
      if (t.fitting()) {
        if (t.planned_steps() > 0) rec["planned_units"] = t.planned_steps();
      } else {
        rec["epoch"] = t.epoch();
        const auto names = t.optimizer_names();
        rec["lr"] = t.current_lr();
        if (names.size() > 1)
          for (const auto& n : names) rec["lr_" + n] = t.current_lr(n);
      }
      extra_.clear();
      for (const auto& [name, value] : losses) {
        double v = scalar(value);
        rec[name] = v;
        if (extra_.size() < 60) extra_ += fmt::format("{}{} {:.4g}", extra_.empty() ? "" : " ", name, v);
      }
      for (const auto& [name, value] : t.method().status()) {
        rec[name] = value;
        extra_ += fmt::format(" {} {:.4g}", name, value);
      }
      rec[t.fitting() ? "sec_per_unit" : "sec_per_step"] = sec;
      if (t.world_size() > 1) {
        rec["comm_sec_per_step"] = (t.comm_seconds() - comm_last_) / steps;
        comm_last_ = t.comm_seconds();
      }
      if (t.metrics()) t.metrics()->write("train", rec);
    }
    if (t.progress()) t.progress()->update(t.step(), extra_);
  }

 private:
  std::chrono::steady_clock::time_point t_last_;
  int64_t since_log_ = 0;
  double comm_last_ = 0;  // comm_seconds() at the last record
  std::string extra_;  // progress suffix, refreshed on log steps
};

class EvalHook : public TrainerHook {
 public:
  void after_step(Trainer& t, const LossMap&) override {
    const int64_t every = t.options().eval_every;
    const int64_t planned = t.planned_steps();
    if (every <= 0 || t.step() % every != 0 || !t.evaluate) return;
    if (planned > 0 && t.step() >= planned) return;  // the final evaluation is the job's
    if (t.progress()) t.progress()->clear();
    auto* mod = t.method().module();
    if (mod) mod->eval();
    nlohmann::json r = t.evaluate();
    r["step"] = t.step();
    if (t.metrics()) t.metrics()->write("eval", r);
    log().info("eval at {} {}: {}", t.fitting() ? "unit" : "step", t.step(), json_text(r));
    if (mod && !t.fitting()) mod->train();
  }
};

class CheckpointHook : public TrainerHook {
 public:
  void after_step(Trainer& t, const LossMap&) override {
    if (is_checkpoint_step(t)) t.save_checkpoint(t.last_checkpoint_path());
  }
  void after_train(Trainer& t) override {
    t.stop_clock();  // before the final checkpoint records the time
    if (!t.last_checkpoint_path().empty()) t.save_checkpoint(t.last_checkpoint_path());
  }
};

class InterruptHook : public TrainerHook {
 public:
  void after_step(Trainer& t, const LossMap& losses) override {
    if (!t.stop_requested()) return;
    if (t.progress()) t.progress()->finish();
    if (t.device().is_cuda() && !t.fitting()) t.check_finite(losses);
    std::string where = "no checkpoint directory";
    if (!t.last_checkpoint_path().empty()) {
      t.save_checkpoint(t.last_checkpoint_path());
      where = t.last_checkpoint_path();
    } else if (t.world_size() > 1 && t.rank() != 0) {
      where = "rank 0's run directory (rank 0 writes it)";
    }
    // A data-parallel rank stops with the others when any one was signalled.
    const int sig = interrupt_signal();
    const std::string why =
        sig != 0 ? fmt::format("interrupted by signal {}", sig)
                 : std::string("stopped because another rank of the job was interrupted");
    const int64_t planned = t.planned_steps();
    if (t.fitting() && planned == 0)
      log().warn("{} during the fit; it finished first, checkpoint written to {}", why, where);
    else
      log().warn("{} at {} {}/{}; checkpoint written to {}", why, t.fitting() ? "unit" : "step",
                 t.step(), planned > 0 ? std::to_string(planned) : std::string("?"), where);
    if (!t.resume_hint.empty()) log().warn("resume with: {}", t.resume_hint);
    if (t.metrics()) t.metrics()->write("interrupt", {{"step", t.step()}});
    throw ExitStatus(130);
  }
};

}  // namespace

std::shared_ptr<TrainerHook> method_hook(Method& method) {
  return std::make_shared<MethodHook>(method);
}
std::shared_ptr<TrainerHook> lr_schedule_hook() { return std::make_shared<LRScheduleHook>(); }
std::shared_ptr<TrainerHook> finite_guard_hook() { return std::make_shared<FiniteGuardHook>(); }
std::shared_ptr<TrainerHook> metrics_hook() { return std::make_shared<MetricsHook>(); }
std::shared_ptr<TrainerHook> eval_hook() { return std::make_shared<EvalHook>(); }
std::shared_ptr<TrainerHook> checkpoint_hook() { return std::make_shared<CheckpointHook>(); }
std::shared_ptr<TrainerHook> interrupt_hook() { return std::make_shared<InterruptHook>(); }

}  // namespace hashlab
