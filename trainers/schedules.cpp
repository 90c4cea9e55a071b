#include "trainers/schedules.h"

#include <algorithm>
#include <cmath>

namespace hashlab {

namespace {

class ConstantSchedule : public ScalarSchedule {
 public:
  explicit ConstantSchedule(Section& s) {
    s.get("init", value_);
    s.finish();
  }
  double at(int64_t, int64_t) const override { return value_; }

 private:
  double value_ = 1.0;
};

class StepSchedule : public ScalarSchedule {
 public:
  explicit StepSchedule(Section& s) {
    s.get("init", init_);
    s.get("gamma", gamma_);
    s.get("every", every_, Range{1, 1e12});
    s.finish();
  }
  double at(int64_t step, int64_t) const override {
    return init_ * std::pow(gamma_, static_cast<double>(step / every_));
  }

 private:
  double init_ = 1.0, gamma_ = 0.5;
  int64_t every_ = 1000;
};

class LinearSchedule : public ScalarSchedule {
 public:
  explicit LinearSchedule(Section& s) {
    s.get("init", init_);
    s.get("final", final_);
    s.finish();
  }
  double at(int64_t step, int64_t total) const override {
    double t = total > 0 ? std::min(1.0, static_cast<double>(step) / total) : 1.0;
    return init_ + (final_ - init_) * t;
  }

 private:
  double init_ = 1.0, final_ = 1.0;
};

template <typename T>
ScalarScheduleRegistry::Factory entry() {
  return [](Section& s) -> std::unique_ptr<ScalarSchedule> { return std::make_unique<T>(s); };
}

}  // namespace

ScalarScheduleRegistry& scalar_schedule_registry() {
  static ScalarScheduleRegistry r = [] {
    ScalarScheduleRegistry reg("schedule type");
    reg.add("constant", entry<ConstantSchedule>(), "init");
    reg.add("step", entry<StepSchedule>(), "init * gamma^floor(step / every)");
    reg.add("linear", entry<LinearSchedule>(), "init -> final over the run");
    return reg;
  }();
  return r;
}

std::shared_ptr<ScalarSchedule> make_scalar_schedule(Section s, const std::string& default_type) {
  std::string type = default_type;
  s.get("type", type);
  return scalar_schedule_registry().create(type, s.where("type"), s);
}

}  // namespace hashlab
