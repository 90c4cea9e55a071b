#include "csrc/core/progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace hashlab {

std::string format_duration(double s) {
  if (!(s >= 0) || s > 1e8) return "--:--";
  int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60);
  return fmt::format("{:02}:{:02}", t / 60, t % 60);
}

namespace {
// Throughputs below 100/s keep three significant digits (a fit's units can
// take seconds each).
std::string rate_text(double r) {
  return r >= 100 ? fmt::format("{:.0f}", r) : fmt::format("{:.3g}", r);
}
}  // namespace

bool Progress::stdout_is_tty() { return ::isatty(STDOUT_FILENO) == 1; }

Progress::Progress(int64_t start, int64_t total, std::string unit, int64_t items_per_step,
                   int64_t plain_every)
    : start_(start),
      total_(total),
      items_per_step_(items_per_step),
      plain_every_(plain_every > 0 ? plain_every : 100),
      unit_(std::move(unit)),
      tty_(stdout_is_tty()),
      t0_(std::chrono::steady_clock::now()),
      last_draw_(t0_) {}

void Progress::update(int64_t step, const std::string& extra) {
  auto now = std::chrono::steady_clock::now();
  double elapsed = std::chrono::duration<double>(now - t0_).count();
  int64_t done = step - start_;
  double rate = elapsed > 0 ? done / elapsed : 0;
  double eta = rate > 0 ? (total_ - step) / rate : -1;
  double ips = rate * items_per_step_;
  if (tty_) {
    if (step < total_ && std::chrono::duration<double>(now - last_draw_).count() < 0.1) return;
    last_draw_ = now;
    const int width = 24;
    int filled = total_ > 0 ? static_cast<int>(width * step / total_) : 0;
    std::string bar(filled, '=');
    if (filled < width) bar += '>' + std::string(width - filled - 1, ' ');
    std::fprintf(stdout, "\r\033[K[%s] %lld/%lld %3d%% | %s %s/s | ETA %s | %s", bar.c_str(),
                 static_cast<long long>(step), static_cast<long long>(total_),
                 total_ > 0 ? static_cast<int>(100 * step / total_) : 0, rate_text(ips).c_str(),
                 unit_.c_str(),
                 format_duration(eta).c_str(), extra.c_str());
    std::fflush(stdout);
    drawn_ = true;
  } else if (step % plain_every_ == 0 || step == total_) {
    std::fprintf(stdout, "step %lld/%lld (%d%%) %s %s/s ETA %s %s\n",
                 static_cast<long long>(step), static_cast<long long>(total_),
                 total_ > 0 ? static_cast<int>(100 * step / total_) : 0, rate_text(ips).c_str(),
                 unit_.c_str(),
                 format_duration(eta).c_str(), extra.c_str());
    std::fflush(stdout);
  }
}

void Progress::clear() {
  if (tty_ && drawn_) {
    std::fprintf(stdout, "\r\033[K");
    std::fflush(stdout);
    drawn_ = false;
  }
}

void Progress::finish() {
  if (tty_ && drawn_) {
    std::fprintf(stdout, "\n");
    std::fflush(stdout);
    drawn_ = false;
  }
}

}  // namespace hashlab
