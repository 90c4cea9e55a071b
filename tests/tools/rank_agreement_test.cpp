// Ranks of one multi-process job that were started differently (another
// config, another data file, another index or query set, another --k) must
// all refuse before doing anything, naming what differs, within the timeout,
// and write nothing; a rendezvous that never answers, a launcher that is
// killed and a launcher asked for too many ranks must not leave ranks behind.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "csrc/codes/code_file.h"
#include "tests/tools/cli_util.h"
#include "tests/util/codes_util.h"

namespace fs = std::filesystem;
using hashlab::testing::cli;
using hashlab::testing::contains;
using hashlab::testing::free_port;
using hashlab::testing::random_codes;
using hashlab::testing::run;
using hashlab::testing::sh;
namespace hc = hashlab::codes;

namespace {

class RankAgreement : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = hashlab::testing::make_image_data_dir("hl_agree_");
    std::ofstream(dir_ / "hn.yaml")
        << "_base_: data.yaml\nname: hn\nmethod: hashnet\nmodel:\n  bits: 16\n"
           "  backbone: {name: mlp, widths: [32]}\ntrain:\n  iterations: 20\n  batch_size: 32\n"
           "  log_every: 1\n";
    // The same images with one pixel changed: another data file's contents.
    std::string bytes = hashlab::testing::slurp(dir_ / "images.idx");
    bytes[bytes.size() / 2] ^= 0x55;
    std::ofstream(dir_ / "other.idx", std::ios::binary) << bytes;
    // Indexes and queries for the sharded searches.
    const fs::path d = dir_;
    hc::write_binary_codes((d / "i1000.hlc").string(), {64, random_codes(1000, 64, 1)});
    hc::write_binary_codes((d / "i1005.hlc").string(), {64, random_codes(1005, 64, 1)});
    hc::write_binary_codes((d / "i32.hlc").string(), {32, random_codes(1000, 32, 1)});
    hc::write_binary_codes((d / "q.hlc").string(), {64, random_codes(9, 64, 2)});
    hc::write_binary_codes((d / "q2.hlc").string(), {64, random_codes(9, 64, 3)});
    hc::write_binary_codes((d / "q32.hlc").string(), {32, random_codes(9, 32, 2)});
  }
  static void TearDownTestSuite() {
    if (!std::getenv("HL_KEEP_TEST_DIRS")) fs::remove_all(dir_);
  }
  static fs::path dir_;
};
fs::path RankAgreement::dir_;

struct TwoRanks {
  std::string out;
  int rc0 = -1, rc1 = -1;
  double seconds = 0;
};

// The environment of a rank of two started by hand, as torchrun would start
// it, over a fresh file rendezvous `store` (RANK= follows).
std::string two_rank_env(const fs::path& store) {
  fs::remove(store);
  return "HASHLAB_DIST_TIMEOUT=20 WORLD_SIZE=2 GLOO_SOCKET_IFNAME=lo HASHLAB_STORE_FILE=" +
         store.string() + " ";
}

// Rank 0 runs `cmd0`, rank 1 `cmd1` (hashlab arguments).
TwoRanks start_two(const std::string& cmd0, const std::string& cmd1, const fs::path& store) {
  const std::string env = two_rank_env(store);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = sh("sh -c '" + env + "RANK=1 " + cli() + " " + cmd1 + " & b=$!; " + env + "RANK=0 " +
              cli() + " " + cmd0 + "; a=$?; wait $b; echo rc=$a,$?'");
  TwoRanks t;
  t.out = r.out;
  t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto at = r.out.rfind("rc=");
  if (at != std::string::npos) std::sscanf(r.out.c_str() + at, "rc=%d,%d", &t.rc0, &t.rc1);
  return t;
}

// One mismatched rank in each class of field: the model (its build), the
// schedule, the seed, the split, the data's contents. Before, a different
// code length or iteration count aborted rank 0 inside Gloo's transport
// (exit 134) and a different seed or split trained "successfully" on
// different data.
TEST_F(RankAgreement, MismatchedTrainingRanksAllRefuseNamingTheFieldAndWriteNothing) {
  const std::string cfg = (dir_ / "hn.yaml").string();
  const struct {
    std::string override_, field;
  } cases[] = {
      {"model.bits=32", "model.bits"},
      {"train.iterations=9", "train.iterations"},
      {"seed=7", "seed"},
      {"data.split_seed=3", "data.split_seed"},
      {"data.files=[" + (dir_ / "other.idx").string() + "]", "the data's features (contents)"},
  };
  int i = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.override_);
    const fs::path run_dir = dir_ / ("mismatch" + std::to_string(i++));
    const std::string base = "train -c " + cfg + " --run-dir " + run_dir.string();
    const auto t = start_two(base, base + " " + c.override_, dir_ / "store");
    EXPECT_NE(t.rc0, 0) << t.out;
    EXPECT_NE(t.rc1, 0) << t.out;
    EXPECT_NE(t.rc0, 134) << t.out;  // no abort
    EXPECT_LT(t.rc0, 128) << t.out;  // no signal
    EXPECT_LT(t.rc1, 128) << t.out;
    EXPECT_TRUE(contains(t.out, "rank 1 of 2: the ranks disagree on what to run")) << t.out;
    EXPECT_TRUE(contains(t.out, "rank 0 of 2: the ranks disagree on what to run")) << t.out;
    EXPECT_TRUE(contains(t.out, c.field + " is")) << t.out;             // rank 1's words
    EXPECT_TRUE(contains(t.out, "differs from rank 0 in " + c.field)) << t.out;  // rank 0's
    EXPECT_LT(t.seconds, 20.0) << t.out;  // well within the timeout: no rank waited for it
    EXPECT_FALSE(fs::exists(run_dir)) << "a refused job left " << run_dir;
  }
  // The same command on both ranks trains (the check passes when it should).
  const fs::path ok = dir_ / "agreed";
  const std::string base = "train -c " + cfg + " --run-dir " + ok.string();
  const auto t = start_two(base, base + " threads=1", dir_ / "store");
  EXPECT_EQ(t.rc0, 0) << t.out;
  EXPECT_EQ(t.rc1, 0) << t.out;
  EXPECT_TRUE(contains(t.out, "parameters agree on all 2 ranks")) << t.out;
}

// Sharded search: another --k, another query set, an index of another size
// or code length on one rank. Before, the first two aborted in Gloo, the last
// two exited 0 with merged results naming codes past the smaller index.
TEST_F(RankAgreement, MismatchedSearchRanksAllRefuseNamingTheFieldAndWriteNothing) {
  const fs::path d = dir_;
  const std::string q = " --queries " + (d / "q.hlc").string();
  const std::string out = " --out " + (d / "result.json").string();
  const struct {
    std::string rank0, rank1, field;
  } cases[] = {
      {"i1000.hlc" + q + " --k 3", "i1000.hlc" + q + " --k 5", "--k"},
      {"i1000.hlc" + q + " --k 3", "i1000.hlc --queries " + (d / "q2.hlc").string() + " --k 3",
       "--queries (contents)"},
      {"i1000.hlc" + q + " --k 3", "i1005.hlc" + q + " --k 3", "--db (codes)"},
      {"i1000.hlc" + q + " --k 3", "i32.hlc --queries " + (d / "q32.hlc").string() + " --k 3",
       "--db (bits)"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.rank1);
    fs::remove(d / "result.json");
    const auto t = start_two("index search " + (d / c.rank0).string() + out,
                             "index search " + (d / c.rank1).string() + out, d / "store");
    EXPECT_NE(t.rc0, 0) << t.out;
    EXPECT_NE(t.rc1, 0) << t.out;
    EXPECT_LT(t.rc0, 128) << t.out;
    EXPECT_LT(t.rc1, 128) << t.out;
    EXPECT_TRUE(contains(t.out, "sharded search, rank 1 of 2: the ranks disagree")) << t.out;
    EXPECT_TRUE(contains(t.out, "sharded search, rank 0 of 2: the ranks disagree")) << t.out;
    EXPECT_TRUE(contains(t.out, c.field)) << t.out;
    EXPECT_LT(t.seconds, 20.0) << t.out;
    EXPECT_FALSE(fs::exists(d / "result.json"));
  }
  const auto t = start_two("index search " + (d / "i1000.hlc").string() + q + " --k 3" + out,
                           "index search " + (d / "i1000.hlc").string() + q + " --k 3 --threads 1",
                           d / "store");
  EXPECT_EQ(t.rc0, 0) << t.out;
  EXPECT_EQ(t.rc1, 0) << t.out;
  EXPECT_TRUE(fs::exists(d / "result.json"));
}

// A TCP rendezvous address whose listener accepts connections and never
// answers: c10d's client waited in recv(2) with no bound (200 s until
// killed, with dist.timeout=20). Now the join gives up after the timeout.
TEST_F(RankAgreement, ARendezvousThatNeverAnswersFailsWithinTheTimeout) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 16), 0);  // the kernel completes the handshakes; nobody answers
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const std::string env = "WORLD_SIZE=2 RANK=1 GLOO_SOCKET_IFNAME=lo MASTER_ADDR=127.0.0.1 "
                          "MASTER_PORT=" + std::to_string(ntohs(a.sin_port)) + " ";
  const auto t0 = std::chrono::steady_clock::now();
  auto r = sh(env + cli() + " train -c " + (dir_ / "hn.yaml").string() +
              " dist.timeout=3 --run-dir " + (dir_ / "silent").string());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::close(fd);
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_LT(r.code, 128) << r.out;
  EXPECT_TRUE(contains(r.out, "rank 1/2: could not join the job")) << r.out;
  EXPECT_LT(s, 30.0) << r.out;
}

// The pids of the ranks a launcher `launcher` started (their rendezvous file
// is named after it), alive now.
std::vector<int> ranks_of(int launcher) {
  std::vector<int> pids;
  const std::string tag = "hashlab_rendezvous_" + std::to_string(launcher) + "_";
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string env = hashlab::testing::slurp(e.path() / "environ");
    std::string stat = hashlab::testing::slurp(e.path() / "stat");
    if (stat.find(") Z ") != std::string::npos) continue;  // a zombie has ended
    if (contains(env, tag)) pids.push_back(std::stoi(name));
  }
  return pids;
}

// kill -9 of `hashlab train --nproc 2`: before, its ranks trained on to the
// end as orphans. Now they get SIGTERM when it dies and stop (a training rank
// at its next step, with a checkpoint). And a launcher asked for far more
// ranks than the machine holds refuses instead of starting them.
TEST_F(RankAgreement, LocalRanksDieWithTheirLauncherAndTheirNumberIsCapped) {
  const fs::path run_dir = dir_ / "orphans";
  const std::string metrics = (run_dir / "metrics.jsonl").string();
  auto r = sh("sh -c '" + cli() + " train -c " + (dir_ / "hn.yaml").string() +
              " train.iterations=1000000 train.checkpoint_every=1000000 --run-dir " +
              run_dir.string() + " --nproc 2 >/dev/null 2>&1 & p=$!; " +
              hashlab::testing::wait_for_train_record(metrics) + "echo launcher=$p'");
  const auto at = r.out.find("launcher=");
  ASSERT_NE(at, std::string::npos) << r.out;
  const int launcher = std::stoi(r.out.substr(at + 9));
  ASSERT_EQ(ranks_of(launcher).size(), 2u) << r.out;
  ASSERT_EQ(::kill(launcher, SIGKILL), 0);
  const auto t0 = std::chrono::steady_clock::now();
  while (!ranks_of(launcher).empty() &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(ranks_of(launcher).empty()) << "ranks outlived their launcher";
  // They stopped as on Ctrl-C: rank 0 wrote a checkpoint.
  EXPECT_TRUE(fs::exists(run_dir / "checkpoints" / "last.pt"));

  for (const std::string cmd :
       {"train -c " + (dir_ / "hn.yaml").string() + " --run-dir " + (dir_ / "many").string() +
            " --nproc 1000",
        "index search " + (dir_ / "i1000.hlc").string() + " --queries " +
            (dir_ / "q.hlc").string() + " --k 3 --shards 1000"}) {
    r = run(cmd);
    EXPECT_NE(r.code, 0) << r.out;
    EXPECT_TRUE(contains(r.out, "1000 local ranks asked for; this machine runs at most")) << r.out;
  }
  EXPECT_FALSE(fs::exists(dir_ / "many"));
}

// Ctrl-C to one rank of a hand-started job: every rank stops at the same
// step; the one not signalled says why (it said "signal 0"), and a rank that
// writes no checkpoint says who does (it said "written to no checkpoint
// directory").
TEST_F(RankAgreement, AnInterruptOfOneRankIsExplainedOnEveryRank) {
  const fs::path run_dir = dir_ / "ctrl_c";
  const std::string env = two_rank_env(dir_ / "store_int");
  const std::string cmd = cli() + " train -c " + (dir_ / "hn.yaml").string() +
                          " train.iterations=1000000 --run-dir " + run_dir.string();
  auto r = sh("sh -c '" + env + "RANK=0 " + cmd + " & a=$!; " + env + "RANK=1 " + cmd +
              " & b=$!; " +
              hashlab::testing::wait_for_train_record((run_dir / "metrics.jsonl").string()) +
              "kill -INT $b; wait $a; a=$?; wait $b; echo rc=$a,$?'");
  EXPECT_TRUE(contains(r.out, "rc=130,130")) << r.out;
  EXPECT_TRUE(contains(r.out, "stopped because another rank of the job was interrupted")) << r.out;
  EXPECT_TRUE(contains(r.out, "checkpoint written to rank 0's run directory")) << r.out;
  EXPECT_FALSE(contains(r.out, "signal 0")) << r.out;
  EXPECT_FALSE(contains(r.out, "no checkpoint directory")) << r.out;
  EXPECT_TRUE(fs::exists(run_dir / "checkpoints" / "last.pt"));
}

}  // namespace
