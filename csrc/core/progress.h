// Training progress: a redrawn bar with ETA and throughput on a terminal,
// plain periodic lines otherwise (logs, CI).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace hashlab {

class Progress {
 public:
  // `total` steps; `unit` names what a step processes ("img" -> img/s).
  Progress(int64_t start, int64_t total, std::string unit, int64_t items_per_step,
           int64_t plain_every);
  // Call after each step; `extra` is appended (e.g. "loss 0.31 beta 2.1").
  void update(int64_t step, const std::string& extra);
  void finish();
  // Clear the bar before other console output.
  void clear();
  static bool stdout_is_tty();

 private:
  int64_t start_, total_, items_per_step_, plain_every_;
  std::string unit_;
  bool tty_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point t0_, last_draw_;
};

std::string format_duration(double seconds);

}  // namespace hashlab
