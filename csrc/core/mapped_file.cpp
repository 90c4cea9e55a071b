#include "csrc/core/mapped_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "csrc/core/error.h"

namespace hashlab {
namespace {

// The registry the SIGBUS handler reads: fixed slots of atomics (no locks,
// no allocation: the handler may interrupt anything). A slot is claimed
// (`used`), then filled, then published by a non-zero `begin`; it is
// withdrawn in the opposite order before the mapping goes away.
struct Slot {
  std::atomic<int> used{0};
  std::atomic<uintptr_t> begin{0}, end{0};
  std::atomic<int> faulted{0};
};
constexpr int kSlots = 1024;
Slot g_slots[kSlots];
uintptr_t g_page = 4096;
struct sigaction g_previous {};

void on_sigbus(int sig, siginfo_t* info, void* context) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(info->si_addr);
  for (Slot& s : g_slots) {
    const uintptr_t b = s.begin.load(std::memory_order_acquire);
    if (b == 0 || a < b) continue;
    const uintptr_t e = s.end.load(std::memory_order_acquire);
    if (a >= e) continue;
    // Zero pages from the faulting page to the end of the mapping (the file
    // lost them all when it was truncated); the faulting read is retried.
    // mmap is a plain system call here (no locks, no allocation).
    const uintptr_t page = a & ~(g_page - 1);
    void* r = ::mmap(reinterpret_cast<void*>(page), e - page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (r == MAP_FAILED) break;
    s.faulted.store(1, std::memory_order_release);
    return;
  }
  // Not a registered mapping: whatever would have happened without us.
  if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
    g_previous.sa_sigaction(sig, info, context);
    return;
  }
  if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    g_previous.sa_handler(sig);
    return;
  }
  // The default action: returning re-executes the access, which faults again
  // and kills the process (with a core dump) as it would have.
  ::signal(SIGBUS, SIG_DFL);
}

void install_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, &g_previous);
  });
}

int claim_slot() {
  for (int i = 0; i < kSlots; ++i) {
    int expected = 0;
    if (g_slots[i].used.compare_exchange_strong(expected, 1)) return i;
  }
  return -1;
}

int64_t mtime_ns(const struct stat& st) {
  return int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path, const std::string& what) {
  std::shared_ptr<MappedFile> m(new MappedFile());
  m->path_ = path;
  m->what_ = what;
  m->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (m->fd_ < 0) fail("{} {}: cannot open: {}", what, path, std::strerror(errno));
  struct stat st {};
  if (::fstat(m->fd_, &st) != 0) fail("{} {}: cannot stat: {}", what, path, std::strerror(errno));
  m->size_ = static_cast<size_t>(st.st_size);
  m->mtime_ns_at_open_ = mtime_ns(st);
  if (m->size_ == 0) return m;
  install_handler();
  m->slot_ = claim_slot();
  if (m->slot_ < 0) {
    // Every slot taken (a thousand files mapped at once): read this one into
    // memory instead, which no change on disk can disturb.
    m->addr_ = ::mmap(nullptr, m->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m->addr_ == MAP_FAILED) {
      m->addr_ = nullptr;
      fail("{} {}: cannot allocate {} bytes: {}", what, path, m->size_, std::strerror(errno));
    }
    size_t off = 0;
    while (off < m->size_) {
      const ssize_t r = ::pread(m->fd_, m->data() + off, m->size_ - off, static_cast<off_t>(off));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) fail("{} {}: read failed: {}", what, path, std::strerror(errno));
      if (r == 0) break;  // shrank meanwhile: changed() says so
      off += static_cast<size_t>(r);
    }
    return m;
  }
  m->addr_ = ::mmap(nullptr, m->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, m->fd_, 0);
  if (m->addr_ == MAP_FAILED) {
    m->addr_ = nullptr;
    fail("{} {}: mmap failed: {}", what, path, std::strerror(errno));
  }
  Slot& s = g_slots[m->slot_];
  s.faulted.store(0);
  s.end.store(reinterpret_cast<uintptr_t>(m->addr_) + m->size_, std::memory_order_release);
  s.begin.store(reinterpret_cast<uintptr_t>(m->addr_), std::memory_order_release);
  return m;
}

MappedFile::~MappedFile() {
  if (slot_ >= 0) {
    Slot& s = g_slots[slot_];
    s.begin.store(0, std::memory_order_release);
    s.end.store(0, std::memory_order_release);
  }
  if (addr_ != nullptr) ::munmap(addr_, size_);
  if (slot_ >= 0) g_slots[slot_].used.store(0, std::memory_order_release);
  if (fd_ >= 0) ::close(fd_);
}

bool MappedFile::changed(int64_t& size_now) const {
  struct stat st {};
  const bool ok = ::fstat(fd_, &st) == 0;
  size_now = ok ? static_cast<int64_t>(st.st_size) : -1;
  if (slot_ >= 0 && g_slots[slot_].faulted.load(std::memory_order_acquire) != 0) return true;
  return !ok || size_now != static_cast<int64_t>(size_) || mtime_ns(st) != mtime_ns_at_open_;
}

bool MappedFile::changed() const {
  int64_t size_now = 0;
  return changed(size_now);
}

void MappedFile::check_unchanged(const std::string& during) const {
  int64_t size_now = 0;
  if (!changed(size_now)) return;
  fail("{} {}: changed on disk {} ({} bytes when it was opened, {} now): it was truncated or "
       "rewritten in place (e.g. by cp). Replace files by renaming a new one over them (as "
       "hashlab's writers do), and retry",
       what_, path_, during, size_, size_now >= 0 ? std::to_string(size_now) : "unknown");
}

}  // namespace hashlab
