#include "csrc/core/distributed.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "csrc/core/error.h"
#include "csrc/core/fs_util.h"
#include "csrc/core/logging.h"

namespace hashlab::dist {

DistOptions DistOptions::from_yaml(Section s) {
  DistOptions o;
  s.get_choice("backend", o.backend, {"auto", "gloo", "nccl"});
  if (s.has("timeout")) s.get("timeout", o.timeout_seconds, Range{1, 86400 * 7});
  s.finish();
  return o;
}

void DistOptions::apply_to(DistEnv& env) const {
  if (timeout_seconds > 0 && !env.timeout_from_env) env.timeout = std::chrono::seconds(timeout_seconds);
}
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

namespace {
c10::intrusive_ptr<c10d::ProcessGroup> join_gloo_group(const DistEnv& env) {
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
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, env.rank, env.world_size, opts);
}
}  // namespace

c10::intrusive_ptr<c10d::ProcessGroup> make_gloo_group(const DistEnv& env) {
  const std::string where = env.store_file.empty()
                                ? fmt::format("TCP rendezvous {}:{}", env.master_addr, env.master_port)
                                : fmt::format("file rendezvous {}", env.store_file);
  // c10d's timeouts do not bound every wait of a rendezvous: a TCPStore
  // client whose server accepts the connection and never answers waits in
  // recv(2) for ever. So the group is joined on a thread of its own and this
  // one waits at most the timeout (and a little more, so c10d's own error,
  // which says more, wins when it comes). A thread still stuck then is left
  // behind: the job fails and the process exits.
  struct Joining {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    c10::intrusive_ptr<c10d::ProcessGroup> group;
    std::string error;
  };
  auto j = std::make_shared<Joining>();
  std::thread([j, env] {
    c10::intrusive_ptr<c10d::ProcessGroup> g;
    std::string error;
    try {
      g = join_gloo_group(env);
    } catch (...) {
      error = current_exception_text();
    }
    std::lock_guard<std::mutex> lk(j->m);
    j->group = std::move(g);
    j->error = std::move(error);
    j->done = true;
    j->cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lk(j->m);
  if (!j->cv.wait_for(lk, env.timeout + std::chrono::seconds(2), [&] { return j->done; }))
    fail("{}could not join the job ({}): no answer within the timeout of {} s (a rank did not "
         "start, or the address is not this job's rendezvous; dist.timeout or "
         "HASHLAB_DIST_TIMEOUT sets the timeout)",
         rank_prefix(env), where, env.timeout.count() / 1000);
  if (!j->error.empty())
    fail("{}could not join the job ({}, timeout {} s): {}", rank_prefix(env), where,
         env.timeout.count() / 1000, j->error);
  log().debug("{}joined a Gloo group of {} over the {}", rank_prefix(env), env.world_size, where);
  return j->group;
}

std::string current_exception_text() {
  try {
    throw;
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "an unknown error";
  }
}

void wait(const c10::intrusive_ptr<c10d::Work>& work, const c10d::ProcessGroup& group,
          const std::string& job, const std::string& what) {
  std::string why;
  try {
    work->wait();
    return;
  } catch (...) {
    why = current_exception_text();
  }
  fail("{}, rank {} of {}: {} failed: another rank died or refused, or was busy longer than the "
       "job's timeout (HASHLAB_DIST_TIMEOUT). Gloo: {}",
       job, group.getRank(), group.getSize(), what, why);
}

namespace {
// Starts a collective, turning an exception thrown while starting it into
// the same named error as one thrown while waiting.
template <typename Start>
void collective(c10d::ProcessGroup& group, const std::string& job, const std::string& what,
                Start start) {
  c10::intrusive_ptr<c10d::Work> work;
  std::string why;
  try {
    work = start();
  } catch (...) {
    why = current_exception_text();
  }
  if (!work)
    fail("{}, rank {} of {}: {} failed: {}", job, group.getRank(), group.getSize(), what, why);
  wait(work, group, job, what);
}

// "<len>:<bytes>" per name and value, so any byte may appear in either.
std::string encode_fields(const Fingerprint& f) {
  std::string s;
  for (const auto& [k, v] : f) s += fmt::format("{}:{}{}:{}", k.size(), k, v.size(), v);
  return s;
}

Fingerprint decode_fields(const std::string& s) {
  Fingerprint f;
  size_t at = 0;
  auto next = [&] {
    const size_t colon = s.find(':', at);
    HL_CHECK(colon != std::string::npos, "fingerprint: malformed field list at byte {}", at);
    const size_t n = std::stoull(s.substr(at, colon - at));
    HL_CHECK(colon + 1 + n <= s.size(), "fingerprint: malformed field list at byte {}", at);
    std::string out = s.substr(colon + 1, n);
    at = colon + 1 + n;
    return out;
  };
  while (at < s.size()) {
    std::string k = next();
    f.emplace_back(std::move(k), next());
  }
  return f;
}

std::string shown(const std::string& v) {
  return v.size() <= 120 ? "'" + v + "'" : "'" + v.substr(0, 117) + "...'";
}
}  // namespace

std::string broadcast_string(c10d::ProcessGroup& group, const std::string& s,
                             const std::string& job) {
  std::vector<at::Tensor> len = {torch::full({1}, static_cast<int64_t>(s.size()), torch::kInt64)};
  collective(group, job, "the broadcast of rank 0's settings", [&] { return group.broadcast(len); });
  const int64_t n = len[0].item<int64_t>();
  HL_CHECK(n >= 0 && n < (int64_t{1} << 30), "{}, rank {}: rank 0 sent a string of {} bytes", job,
           group.getRank(), n);
  std::vector<at::Tensor> bytes = {torch::zeros({std::max<int64_t>(n, 1)}, torch::kUInt8)};
  if (group.getRank() == 0 && n > 0) std::memcpy(bytes[0].data_ptr<uint8_t>(), s.data(), n);
  collective(group, job, "the broadcast of rank 0's settings", [&] { return group.broadcast(bytes); });
  return std::string(reinterpret_cast<const char*>(bytes[0].data_ptr<uint8_t>()), n);
}

std::string checksum(const void* data, size_t n) {
  return fmt::format("crc32 {:08x} of {} bytes", crc32_of(data, n), n);
}

void agree_on_fingerprint(c10d::ProcessGroup& group, const Fingerprint& mine,
                          const std::string& job) {
  const int rank = group.getRank(), world = group.getSize();
  if (world <= 1) return;
  const Fingerprint theirs = decode_fields(broadcast_string(group, encode_fields(mine), job));
  // In this rank's order (config keys before what follows from them: the
  // split, the build), the first field rank 0 has otherwise or lacks, then
  // any field rank 0 has and this rank lacks.
  std::unordered_map<std::string, const std::string*> there;
  for (const auto& [k, v] : theirs) there.emplace(k, &v);
  std::string field, value_here, value_there;
  int differing = 0;
  for (const auto& [k, v] : mine) {
    auto it = there.find(k);
    const std::string t = it == there.end() ? std::string("(not set)") : *it->second;
    if (t == v) continue;
    if (differing++ == 0) field = k, value_here = v, value_there = t;
  }
  std::unordered_set<std::string> here;
  for (const auto& kv : mine) here.insert(kv.first);
  for (const auto& [k, v] : theirs) {
    if (here.count(k)) continue;
    if (differing++ == 0) field = k, value_here = "(not set)", value_there = v;
  }
  // Every rank learns which ranks differ, and in what: one fixed-size
  // all-gather (a flag and the field's name).
  constexpr int64_t kName = 255;
  torch::Tensor buf = torch::zeros({kName + 1}, torch::kUInt8);
  buf[0] = differing > 0 ? 1 : 0;
  std::memcpy(buf.data_ptr<uint8_t>() + 1, field.data(), std::min<size_t>(field.size(), kName));
  std::vector<std::vector<at::Tensor>> all(1);
  for (int r = 0; r < world; ++r) all[0].push_back(torch::zeros_like(buf));
  std::vector<at::Tensor> in = {buf};
  collective(group, job, "the comparison of the ranks' settings",
             [&] { return group.allgather(all, in); });
  int first = -1;
  std::string first_field;
  int count = 0;
  for (int r = 0; r < world; ++r) {
    const uint8_t* p = all[0][r].data_ptr<uint8_t>();
    if (p[0] == 0) continue;
    ++count;
    if (first < 0) {
      first = r;
      first_field.assign(reinterpret_cast<const char*>(p + 1),
                         strnlen(reinterpret_cast<const char*>(p + 1), kName));
    }
  }
  if (count == 0) return;
  if (differing > 0)
    fail("{}, rank {} of {}: the ranks disagree on what to run, so every rank stops before "
         "starting: {} is {} here but {} on rank 0{} (every rank must run the same command "
         "with the same config and data)",
         job, rank, world, field, shown(value_here), shown(value_there),
         differing > 1 ? fmt::format(" ({} fields differ)", differing) : std::string());
  fail("{}, rank {} of {}: the ranks disagree on what to run, so every rank stops before "
       "starting: rank {} differs from rank 0 in {} (here {}){}",
       job, rank, world, first, first_field,
       [&] {
         for (const auto& [k, v] : mine)
           if (k == first_field) return shown(v);
         return std::string("(not set)");
       }(),
       count > 1 ? fmt::format("; {} ranks differ", count) : std::string());
}

int max_local_ranks(std::string* why) {
  const char* env = std::getenv("HASHLAB_MAX_LOCAL_RANKS");
  if (env && *env) {
    const int v = static_cast<int>(env_int("HASHLAB_MAX_LOCAL_RANKS", 0, 1, 1024));
    if (why) *why = fmt::format("HASHLAB_MAX_LOCAL_RANKS={}", v);
    return v;
  }
  const int cores = std::max(1u, std::thread::hardware_concurrency());
  int64_t avail_kb = -1;
  std::ifstream mi("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (mi >> key >> kb >> unit)
    if (key == "MemAvailable:") {
      avail_kb = kb;
      break;
    }
  const int64_t by_memory = avail_kb < 0 ? 1024 : avail_kb / (256 * 1024);
  const int cap = static_cast<int>(std::max<int64_t>(2, std::min<int64_t>({4 * cores, by_memory, 1024})));
  if (why)
    *why = fmt::format("4 x {} cores{}; HASHLAB_MAX_LOCAL_RANKS raises it", cores,
                       avail_kb < 0 ? std::string()
                                    : fmt::format(", {} MiB available / 256 MiB a rank",
                                                  avail_kb / 1024));
  return cap;
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

// hashlab_rendezvous_<pid>_<hex> of launchers no longer running (killed
// before they could remove theirs; a rank's FileStore removes it only when
// every rank closes it).
void remove_stale_rendezvous_files() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::temp_directory_path(), ec)) {
    const std::string name = e.path().filename().string();
    const std::string prefix = "hashlab_rendezvous_";
    if (name.rfind(prefix, 0) != 0) continue;
    const size_t us = name.find('_', prefix.size());
    if (us == std::string::npos) continue;
    char* end = nullptr;
    const long pid = std::strtol(name.c_str() + prefix.size(), &end, 10);
    if (end != name.c_str() + us || pid <= 0) continue;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      std::error_code rm;
      std::filesystem::remove(e.path(), rm);
      if (!rm) log().debug("removed {}, left by a launcher that was killed", e.path().string());
    }
  }
}
}  // namespace

int launch_local(int nproc, const std::vector<std::string>& args, std::chrono::seconds grace) {
  std::string why;
  const int cap = std::min(max_local_ranks(&why), kMaxLocal);
  HL_CHECK(nproc >= 1 && nproc <= cap,
           "{} local ranks asked for; this machine runs at most {} ({}): each rank is a whole "
           "process",
           nproc, cap, why);
  remove_stale_rendezvous_files();
  std::random_device rd;
  const std::string store =
      (std::filesystem::temp_directory_path() /
       fmt::format("hashlab_rendezvous_{}_{:08x}", ::getpid(), rd()))
          .string();
  const pid_t launcher = ::getpid();
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
      // Die with the launcher, however it ends (kill -9 too): SIGTERM stops a
      // training rank at its next step with a checkpoint.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != launcher) ::_exit(1);  // it died before prctl
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
