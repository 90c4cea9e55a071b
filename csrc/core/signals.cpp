#include "csrc/core/signals.h"

#include <atomic>
#include <unistd.h>

#include <csignal>

namespace hashlab {
namespace {
std::atomic<int> g_signal{0};
struct sigaction g_old_int, g_old_term;

// write(2) only: printf and spdlog are not async-signal-safe.
void say(const char* s) {
  size_t n = 0;
  while (s[n]) ++n;
  ssize_t rc = ::write(STDERR_FILENO, s, n);
  (void)rc;
}

extern "C" void on_signal(int sig) {
  if (g_signal.load() != 0) {
    say("\nhashlab: second interrupt: aborting now, without a checkpoint (the run directory "
        "keeps its last one; `hashlab train --resume` continues from it, or from the start "
        "when there is none)\n");
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_signal.store(sig);
  say("\nhashlab: interrupted: finishing the current step and writing a checkpoint "
      "(interrupting again aborts without one)\n");
}
}  // namespace

// Guards nest: only the outermost one clears the flag and installs (and
// later restores) the handlers, so an interrupt received under an outer guard
// (Python's hashlab.train around the whole job) reaches the trainer's.
static std::atomic<int> g_depth{0};

InterruptGuard::InterruptGuard() : outermost_(g_depth.fetch_add(1) == 0) {
  if (!outermost_) return;
  g_signal.store(0);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &g_old_int);
  sigaction(SIGTERM, &sa, &g_old_term);
}

InterruptGuard::~InterruptGuard() {
  if (outermost_) {
    sigaction(SIGINT, &g_old_int, nullptr);
    sigaction(SIGTERM, &g_old_term, nullptr);
  }
  g_depth.fetch_sub(1);
}

bool interrupt_requested() { return g_signal.load() != 0; }
int interrupt_signal() { return g_signal.load(); }
void request_interrupt(int sig) { g_signal.store(sig); }

}  // namespace hashlab
