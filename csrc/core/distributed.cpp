#include "csrc/core/distributed.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "csrc/core/error.h"
#include "csrc/core/logging.h"

namespace hashlab::dist {
namespace {

// An integer environment variable, or `fallback` when unset.
int64_t env_int(const char* name, int64_t fallback, int64_t lo, int64_t hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || x < lo || x > hi)
    fail("environment variable {}='{}': expected an integer in [{}, {}]", name, v, lo, hi);
  return x;
}

std::string env_str(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

DistEnv DistEnv::from_env() {
  DistEnv e;
  e.world_size = static_cast<int>(env_int("WORLD_SIZE", 1, 1, 1 << 20));
  e.rank = static_cast<int>(env_int("RANK", 0, 0, 1 << 20));
  e.local_rank = static_cast<int>(env_int("LOCAL_RANK", e.rank, 0, 1 << 20));
  e.timeout = std::chrono::seconds(env_int("HASHLAB_DIST_TIMEOUT", 300, 1, 86400 * 7));
  e.timeout_from_env = !env_str("HASHLAB_DIST_TIMEOUT").empty();
  if (e.rank >= e.world_size)
    fail("environment: RANK={} is not below WORLD_SIZE={}", e.rank, e.world_size);
  e.store_file = env_str("HASHLAB_STORE_FILE");
  e.master_addr = env_str("MASTER_ADDR");
  e.master_port = static_cast<int>(env_int("MASTER_PORT", 0, 0, 65535));
  if (e.distributed() && e.store_file.empty() && (e.master_addr.empty() || e.master_port == 0))
    fail("environment: WORLD_SIZE={} needs MASTER_ADDR and MASTER_PORT (a TCP rendezvous served "
         "by rank 0) or HASHLAB_STORE_FILE (a file rendezvous); got MASTER_ADDR='{}' "
         "MASTER_PORT='{}'",
         e.world_size, e.master_addr, env_str("MASTER_PORT"));
  return e;
}

std::string rank_prefix(const DistEnv& env) {
  return env.distributed() ? fmt::format("rank {}/{}: ", env.rank, env.world_size) : "";
}

bool has_nccl() {
#if defined(USE_C10D_NCCL)
  return true;
#else
  return false;
#endif
}

void check_backend(const std::string& requested, const std::string& device_type,
                   const std::string& where) {
  if (requested != "auto" && requested != "gloo" && requested != "nccl")
    fail("{}: unknown backend '{}' (auto, gloo or nccl)", where, requested);
  if (requested == "nccl")
    fail(has_nccl() ? "{}: nccl: hashlab creates Gloo process groups only; use gloo on device=cpu"
                    : "{}: nccl: the linked LibTorch has no NCCL backend (Debian's libtorch is a "
                      "CPU build); use gloo on device=cpu",
         where);
  if (device_type != "cpu")
    fail("{}: data-parallel training runs on the CPU over Gloo in this build (no NCCL process "
         "groups); the device is {}: set device=cpu",
         where, device_type);
}

c10::intrusive_ptr<c10d::ProcessGroup> make_gloo_group(const DistEnv& env) {
  const std::string where = env.store_file.empty()
                                ? fmt::format("TCP rendezvous {}:{}", env.master_addr, env.master_port)
                                : fmt::format("file rendezvous {}", env.store_file);
  try {
    c10::intrusive_ptr<c10d::Store> store;
    if (!env.store_file.empty()) {
      store = c10::make_intrusive<c10d::FileStore>(env.store_file, env.world_size);
    } else {
      c10d::TCPStoreOptions o;
      o.port = static_cast<uint16_t>(env.master_port);
      o.isServer = env.rank == 0;
      o.numWorkers = env.world_size;
      o.waitWorkers = true;
      o.timeout = env.timeout;
      store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
    }
    store->setTimeout(env.timeout);
    auto opts = c10d::ProcessGroupGloo::Options::create(env.timeout);
    const std::string ifname = env_str("GLOO_SOCKET_IFNAME");
    opts->devices.push_back(ifname.empty()
                                ? c10d::ProcessGroupGloo::createDefaultDevice()
                                : c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, env.rank, env.world_size, opts);
    log().debug("{}joined a Gloo group of {} over the {}", rank_prefix(env), env.world_size, where);
    return pg;
  } catch (const c10::Error& e) {
    fail("{}could not join the job ({}, timeout {} s): {}", rank_prefix(env), where,
         env.timeout.count() / 1000, e.what_without_backtrace());
  } catch (const std::exception& e) {
    fail("{}could not join the job ({}, timeout {} s): {}", rank_prefix(env), where,
         env.timeout.count() / 1000, e.what());
  }
}

namespace {
// The launcher's children, for the signal handler (async-signal-safe: only
// kill(2) on a fixed array).
constexpr int kMaxLocal = 1024;
volatile sig_atomic_t g_num_children = 0;
pid_t g_children[kMaxLocal];

void forward_signal(int sig) {
  for (int i = 0; i < g_num_children; ++i)
    if (g_children[i] > 0) ::kill(g_children[i], sig);
}
}  // namespace

int launch_local(int nproc, const std::vector<std::string>& args, std::chrono::seconds grace) {
  HL_CHECK(nproc >= 1 && nproc <= kMaxLocal, "--nproc must be in [1, {}], got {}", kMaxLocal, nproc);
  std::random_device rd;
  const std::string store =
      (std::filesystem::temp_directory_path() /
       fmt::format("hashlab_rendezvous_{}_{:08x}", ::getpid(), rd()))
          .string();
  std::vector<std::string> argv_s = {"/proc/self/exe"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  struct sigaction sa {}, old_int {}, old_term {};
  sa.sa_handler = forward_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);

  std::vector<pid_t> pids(nproc, -1);
  for (int r = 0; r < nproc; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      const int e = errno;
      forward_signal(SIGTERM);
      fail("could not start rank {}: fork: {}", r, std::strerror(e));
    }
    if (pid == 0) {
      // The ranks get their own process group, so a Ctrl-C reaches them once,
      // through the launcher.
      ::setpgid(0, 0);
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      ::setenv("HASHLAB_STORE_FILE", store.c_str(), 1);
      ::setenv("GLOO_SOCKET_IFNAME", std::getenv("GLOO_SOCKET_IFNAME") ? std::getenv("GLOO_SOCKET_IFNAME") : "lo", 1);
      ::execv(argv[0], argv.data());
      std::fprintf(stderr, "hashlab: rank %d: exec %s failed: %s\n", r, argv[0], std::strerror(errno));
      ::_exit(127);
    }
    pids[r] = pid;
    g_children[r] = pid;
    g_num_children = r + 1;
  }

  int first_status = 0, running = nproc;
  auto deadline = std::chrono::steady_clock::time_point::max();
  bool killed = false;
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, deadline == std::chrono::steady_clock::time_point::max() ? 0 : WNOHANG);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (pid == 0) {  // stopping the others: wait, then SIGKILL
      if (!killed && std::chrono::steady_clock::now() > deadline) {
        for (pid_t p : pids)
          if (p > 0) ::kill(p, SIGKILL);
        killed = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    int r = 0;
    while (r < nproc && pids[r] != pid) ++r;
    if (r == nproc) continue;
    pids[r] = -1;
    g_children[r] = -1;
    --running;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0 && first_status == 0) {
      first_status = code;
      if (code == 130) {
        // Interrupted: the ranks agree on the step to stop at (and rank 0
        // writes the checkpoint); a SIGTERM now would abort that.
        continue;
      }
      if (WIFSIGNALED(status))
        log().error("rank {} of {} was killed by signal {}; stopping the other ranks", r, nproc,
                    WTERMSIG(status));
      else
        log().error("rank {} of {} exited with status {}; stopping the other ranks", r, nproc, code);
      for (pid_t p : pids)
        if (p > 0) ::kill(p, SIGTERM);
      deadline = std::chrono::steady_clock::now() + grace;
    }
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  g_num_children = 0;
  std::error_code ec;
  std::filesystem::remove(store, ec);
  return first_status;
}

}  // namespace hashlab::dist
