// Multi-process jobs on PyTorch's c10d (inside Debian's libtorch_cpu): the
// rank's place in the job from torchrun's environment variables, a Gloo
// process group over a TCPStore or FileStore rendezvous, and a local
// launcher that starts N ranks of this program (like torchrun
// --nproc-per-node). No hand-written transport.
//
// Environment (torchrun's names):
//   RANK, WORLD_SIZE           this rank and the number of ranks (unset: 1 process)
//   LOCAL_RANK                 the rank on this machine (picks the GPU)
//   LOCAL_WORLD_SIZE           ranks on this machine: threads=auto gives each cores / this
//   MASTER_ADDR, MASTER_PORT   TCPStore rendezvous; rank 0 serves it
//   HASHLAB_STORE_FILE         FileStore rendezvous instead (one machine, or a
//                              shared file system); the local launcher uses it
//   GLOO_SOCKET_IFNAME         network interface for Gloo (default: the
//                              hostname's address, else loopback)
//   HASHLAB_DIST_TIMEOUT       seconds a collective waits for a missing rank (default 300;
//                              a config's dist.timeout sets it when this is unset)
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include "csrc/core/config.h"

namespace hashlab::dist {


struct DistEnv {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  std::string store_file;
  std::chrono::milliseconds timeout{300000};
  bool timeout_from_env = false;  // HASHLAB_DIST_TIMEOUT was set

  bool distributed() const { return world_size > 1; }
  // Reads the variables above; a malformed or inconsistent value is a
  // hashlab::Error naming the variable and the value.
  static DistEnv from_env();
};

// The config's `dist:` section, read strictly like every other section.
struct DistOptions {
  std::string backend = "auto";  // auto | gloo | nccl (checked against the device by check_backend)
  int64_t timeout_seconds = 0;   // dist.timeout; 0: unset (HASHLAB_DIST_TIMEOUT or 300 s)
  static DistOptions from_yaml(Section s);
  // env's collective timeout with this section applied (the environment variable wins).
  void apply_to(DistEnv& env) const;
};

// Whether the linked LibTorch has the NCCL backend (Debian's 1.13: no, it is
// a CPU build; a CUDA LibTorch built with USE_C10D_NCCL: yes).
bool has_nccl();

// Checks the backend a job asks for in the config's `dist.backend` (`requested`:
// "auto", "gloo" or "nccl") and the training device type ("cpu", "cuda"):
// Gloo on the CPU is all hashlab builds groups for; nccl and CUDA
// devices are refused with a message that starts with `where` (naming the
// missing NCCL when the linked LibTorch has none).
void check_backend(const std::string& requested, const std::string& device_type,
                   const std::string& where);

// A Gloo process group for `env` (FileStore when store_file is set, else a
// TCPStore at master_addr:master_port). Waits up to env.timeout for every
// rank to join; collectives then fail after env.timeout when a rank is gone.
c10::intrusive_ptr<c10d::ProcessGroup> make_gloo_group(const DistEnv& env);

// The most local ranks `--nproc`/`--shards` may start on this machine: each
// rank is a whole process (~150 MB and one or more threads), so the cap is
// the smaller of 4 x the cores and the available memory / 256 MiB (at least
// 2), unless HASHLAB_MAX_LOCAL_RANKS sets it. `why` gets how it was computed.
int max_local_ranks(std::string* why = nullptr);

// Inside a catch block: the text of the exception being handled (c10's
// without its backtrace; "an unknown error" for a type that is not a
// std::exception).
std::string current_exception_text();

// Waits for a collective of a multi-process `job` ("sharded search",
// "data-parallel training"); a failure (a rank died, disagreed on a shape, or
// was busy past the timeout) becomes a hashlab::Error naming the job, this
// rank, `what` and Gloo's words. Every exception type Gloo and c10d throw is
// caught here: none escapes as an uncaught exception.
void wait(const c10::intrusive_ptr<c10d::Work>& work, const c10d::ProcessGroup& group,
          const std::string& job, const std::string& what);

// Rank 0's string on every rank (two broadcasts: the length, then the bytes).
std::string broadcast_string(c10d::ProcessGroup& group, const std::string& s,
                             const std::string& job);

// What a rank is about to do, as named fields ("model.bits" -> "64",
// "split.query" -> a checksum), in an order every rank shares.
using Fingerprint = std::vector<std::pair<std::string, std::string>>;

// Every rank compares its fingerprint with rank 0's before the job does
// anything that needs the ranks to agree. When any rank differs, every rank
// fails (a hashlab::Error) naming the first field that differs, its value here
// and on rank 0 (a rank that agrees names the rank and field that did not).
// Safe whatever the ranks hold: only length-prefixed broadcasts and fixed-size
// all-gathers are used.
void agree_on_fingerprint(c10d::ProcessGroup& group, const Fingerprint& mine,
                          const std::string& job);

// A short checksum of some bytes, for fingerprints ("crc32:1a2b3c4d/N bytes").
std::string checksum(const void* data, size_t n);

// Starts `nproc` copies of this executable (/proc/self/exe) with `args`
// (argv[1..]), each with RANK, LOCAL_RANK, WORLD_SIZE and a fresh
// HASHLAB_STORE_FILE rendezvous in the environment, and waits for them. When
// one fails (non-zero exit or a signal) the others are sent SIGTERM, then
// SIGKILL after `grace`. SIGINT/SIGTERM to the launcher are passed on to the
// ranks. The ranks die with the launcher: each gets SIGTERM when it exits
// for any reason, `kill -9` included (PR_SET_PDEATHSIG; a training rank
// then stops at the next step with a checkpoint, as on Ctrl-C). `nproc` above
// max_local_ranks() is refused. Rendezvous files of launchers that no longer
// run are removed. Returns 0 when every rank succeeded, else the first failure's exit
// status (128 + signal for a signal), after printing which rank failed.
int launch_local(int nproc, const std::vector<std::string>& args,
                 std::chrono::seconds grace = std::chrono::seconds(10));

// "rank r/N: " when distributed, else "".
std::string rank_prefix(const DistEnv& env);

}  // namespace hashlab::dist
