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

bool is_checkpoint_step(Trainer& t, const Checkpointer& c) {
  const int64_t every = t.checkpoint_every();
  return c.enabled() && every > 0 && t.step() % every == 0;
}

// The trainer's state (gathered by save_state, as detectron2's state_dict)
// written by the checkpointer the hook holds.
void write_checkpoint(Trainer& t, Checkpointer& c) {
  torch::serialize::OutputArchive a;
  t.save_state(a);
  c.write(a, t.step());
}

double scalar(const torch::Tensor& v) {
  return v.detach().to(torch::kCPU).to(torch::kFloat64).item<double>();
}

class MethodHook : public TrainerHook {
 public:
  MethodHook(StepMethod& m, StepContext& ctx) : m_(m), ctx_(ctx) {}
  void before_train(Trainer&) override { m_.before_train(ctx_); }
  void after_step(Trainer&, const LossMap&) override { m_.after_step(ctx_); }
  void after_epoch(Trainer&) override { m_.after_epoch(ctx_); }
  void after_train(Trainer&) override { m_.after_train(ctx_); }

 private:
  StepMethod& m_;
  StepContext& ctx_;
};

class LRScheduleHook : public TrainerHook {
 public:
  explicit LRScheduleHook(OptimizerSet& o) : o_(o) {}
  void before_step(Trainer& t) override {
    if (o_.switches_at(t.step()) && t.progress()) t.progress()->clear();
    o_.apply_schedule(t.step());
  }

 private:
  OptimizerSet& o_;
};

class FiniteGuardHook : public TrainerHook {
 public:
  explicit FiniteGuardHook(const Checkpointer& c) : c_(c) {}
  void after_step(Trainer& t, const LossMap& losses) override {
    if (t.device().is_cuda() && !t.fitting() && (is_log_step(t) || is_checkpoint_step(t, c_)))
      t.check_finite(losses);
  }

 private:
  const Checkpointer& c_;  // a non-finite loss is never checkpointed
};

class MetricsHook : public TrainerHook {
 public:
  void before_train(Trainer& t) override {
    t_last_ = std::chrono::steady_clock::now();
    since_log_ = 0;
    comm_last_ = t.dp().comm_seconds();
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
        const OptimizerSet& o = *t.optimizers();
        rec["lr"] = o.lr(t.step());
        if (o.size() > 1)
          for (const auto& n : o.names()) rec["lr_" + n] = o.lr(t.step(), n);
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
      if (t.dp().active()) {
        rec["comm_sec_per_step"] = (t.dp().comm_seconds() - comm_last_) / steps;
        comm_last_ = t.dp().comm_seconds();
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
  explicit EvalHook(std::function<nlohmann::json()> evaluate) : evaluate_(std::move(evaluate)) {}
  void after_step(Trainer& t, const LossMap&) override {
    const int64_t every = t.options().eval_every;
    const int64_t planned = t.planned_steps();
    if (every <= 0 || t.step() % every != 0 || !evaluate_) return;
    if (planned > 0 && t.step() >= planned) return;  // the final evaluation is the job's
    if (t.progress()) t.progress()->clear();
    auto* mod = t.method().module();
    if (mod) mod->eval();
    nlohmann::json r = evaluate_();
    r["step"] = t.step();
    if (t.metrics()) t.metrics()->write("eval", r);
    log().info("eval at {} {}: {}", t.fitting() ? "unit" : "step", t.step(), json_text(r));
    if (mod && !t.fitting()) mod->train();
  }

 private:
  std::function<nlohmann::json()> evaluate_;
};

class CheckpointHook : public TrainerHook {
 public:
  explicit CheckpointHook(Checkpointer& c) : c_(c) {}
  void after_step(Trainer& t, const LossMap&) override {
    if (is_checkpoint_step(t, c_)) write_checkpoint(t, c_);
  }
  void after_train(Trainer& t) override {
    if (c_.enabled()) write_checkpoint(t, c_);
  }

 private:
  Checkpointer& c_;
};

class InterruptHook : public TrainerHook {
 public:
  InterruptHook(Checkpointer& c, std::string hint) : c_(c), hint_(std::move(hint)) {}
  void after_step(Trainer& t, const LossMap& losses) override {
    if (t.dp().any_rank(interrupt_requested())) stop(t, losses);
  }
  // A fit without units sees the signal only when it ends: it stops there
  // with its result saved (the checkpoint hook ran before), and a resume goes
  // straight to the evaluation.
  void after_train(Trainer& t) override {
    if (t.fitting() && interrupt_requested()) stop(t, {});
  }

 private:
  Checkpointer& c_;
  std::string hint_;
  void stop(Trainer& t, const LossMap& losses) {
    if (t.progress()) t.progress()->finish();
    if (t.device().is_cuda() && !t.fitting()) t.check_finite(losses);
    std::string where = "no checkpoint directory";
    if (c_.enabled()) {
      if (c_.last_good_step() != t.step()) write_checkpoint(t, c_);
      where = c_.path();
    } else if (t.dp().rank() != 0) {
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
    if (!hint_.empty()) log().warn("resume with: {}", hint_);
    if (t.metrics()) t.metrics()->write("interrupt", {{"step", t.step()}});
    throw ExitStatus(130);
  }
};

}  // namespace

std::shared_ptr<TrainerHook> method_hook(StepMethod& method, StepContext& ctx) {
  return std::make_shared<MethodHook>(method, ctx);
}
std::shared_ptr<TrainerHook> lr_schedule_hook(OptimizerSet& optimizers) {
  return std::make_shared<LRScheduleHook>(optimizers);
}
std::shared_ptr<TrainerHook> finite_guard_hook(const Checkpointer& checkpointer) {
  return std::make_shared<FiniteGuardHook>(checkpointer);
}
std::shared_ptr<TrainerHook> metrics_hook() { return std::make_shared<MetricsHook>(); }
std::shared_ptr<TrainerHook> eval_hook(std::function<nlohmann::json()> evaluate) {
  return std::make_shared<EvalHook>(std::move(evaluate));
}
std::shared_ptr<TrainerHook> checkpoint_hook(Checkpointer& checkpointer) {
  return std::make_shared<CheckpointHook>(checkpointer);
}
std::shared_ptr<TrainerHook> interrupt_hook(Checkpointer& checkpointer, std::string resume_hint) {
  return std::make_shared<InterruptHook>(checkpointer, std::move(resume_hint));
}

}  // namespace hashlab
