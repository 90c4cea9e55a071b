// SIGINT/SIGTERM handling for long jobs: the first signal only sets a flag
// (and says so on stderr), so the trainer can finish its step, write a
// checkpoint and exit cleanly; a second signal says it aborts and restores
// the default action (so a stuck process can still be killed). A run aborted
// that way keeps its last checkpoint; with none, `--resume` starts it over.
#pragma once

namespace hashlab {

class InterruptGuard {
 public:
  InterruptGuard();   // installs the handlers
  ~InterruptGuard();  // restores the previous ones
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

 private:
  // Guards nest: an inner one (a trainer's, under the Python module's or a
  // test's) neither clears an interrupt already received nor touches the
  // handlers.
  bool outermost_;
};

bool interrupt_requested();
int interrupt_signal();        // the signal number received, or 0
void request_interrupt(int sig);  // tests and internal use

}  // namespace hashlab
