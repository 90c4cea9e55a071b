// Data-parallel training (`hashlab train --nproc N`, trainers/trainer.h):
// two local ranks over c10d Gloo (file rendezvous) train the model one
// process trains on the global batch, keep identical parameters, resume
// exactly, and a rank that dies makes the job fail instead of hanging.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <torch/script.h>

#include "datasets/dataset.h"
#include "datasets/readers/idx.h"
#include "tests/tools/cli_util.h"

namespace fs = std::filesystem;
using hashlab::testing::cli;
using hashlab::testing::contains;
using hashlab::testing::run;
using hashlab::testing::sh;

namespace {

class DataParallel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = hashlab::testing::make_image_data_dir("hl_ddp_");
    // HashNet on an MLP (no batch norm, no dropout: nothing that depends on
    // how the batch is split), 16 bits, global batch 32.
    std::ofstream(dir_ / "hn.yaml")
        << "_base_: data.yaml\nname: hn\nmethod: hashnet\nmodel:\n  bits: 16\n"
           "  backbone: {name: mlp, widths: [32]}\ntrain:\n  iterations: 30\n  batch_size: 32\n"
           "  log_every: 1\n  checkpoint_every: 5\n";
  }
  static void TearDownTestSuite() {
    if (!std::getenv("HL_KEEP_TEST_DIRS")) fs::remove_all(dir_);
  }
  static std::string cfg() { return (dir_ / "hn.yaml").string(); }
  static fs::path dir_;
};
fs::path DataParallel::dir_;

std::vector<double> train_losses(const fs::path& run, const std::string& key = "loss") {
  std::ifstream in(run / "metrics.jsonl");
  std::string line;
  std::vector<double> out;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j["event"] == "train") out.push_back(j.at(key).get<double>());
  }
  return out;
}

// The exported hasher's parameters and buffers, flattened and concatenated.
torch::Tensor hasher_state(const fs::path& run) {
  auto m = torch::jit::load((run / "model/hasher.pt").string());
  std::vector<torch::Tensor> all;
  for (const auto& p : m.named_parameters()) all.push_back(p.value.reshape({-1}).to(torch::kFloat64));
  for (const auto& b : m.named_buffers()) all.push_back(b.value.reshape({-1}).to(torch::kFloat64));
  return torch::cat(all);
}

// The exported hasher's real-valued outputs on every image.
torch::Tensor embeddings(const fs::path& run, const fs::path& images) {
  auto m = torch::jit::load((run / "model/hasher.pt").string());
  auto x = hashlab::data::to_tensor(hashlab::data::read_idx(images.string()));
  return m.get_method("embed")({x.to(torch::kFloat32).unsqueeze(1)}).toTensor();
}

// Two ranks with 16 rows each compute HashNet's loss over the pairs of the
// whole global batch of 32 (codes all-gathered), so they follow the single
// process step for step. The difference is float summation order (the
// gradient of the two halves is added by Gloo instead of inside one
// backward): ~1e-7 relative per step, so after 30 SGD steps losses agree to
// 1e-5 and the embeddings to 1e-4.
TEST_F(DataParallel, TwoRanksTrainWhatOneProcessTrainsOnTheGlobalBatch) {
  const fs::path one = dir_ / "one", two = dir_ / "two";
  auto r = run("train -c " + cfg() + " --run-dir " + one.string());
  ASSERT_EQ(r.code, 0) << r.out;
  r = run("train -c " + cfg() + " --run-dir " + two.string() + " --nproc 2");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "parameters agree on all 2 ranks")) << r.out;
  EXPECT_TRUE(contains(r.out, "rank 1/2: run directory: " + two.string())) << r.out;
  // One progress display (rank 0's).
  size_t shown = 0;
  for (size_t at = r.out.find("step 30/30"); at != std::string::npos;
       at = r.out.find("step 30/30", at + 1))
    ++shown;
  EXPECT_EQ(shown, 1u) << r.out;
  const auto a = train_losses(one), b = train_losses(two);
  ASSERT_EQ(a.size(), 30u);
  ASSERT_EQ(b.size(), 30u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5) << "step " << i + 1;
  const auto ea = embeddings(one, dir_ / "images.idx"), eb = embeddings(two, dir_ / "images.idx");
  EXPECT_LT((ea - eb).abs().max().item<double>(), 1e-4);
  EXPECT_LT((hasher_state(one) - hasher_state(two)).abs().max().item<double>(), 1e-5);
  // Rank 0 alone wrote the run (one start record, one final evaluation).
  std::ifstream in(two / "metrics.jsonl");
  std::string line;
  int starts = 0, finals = 0;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    starts += j["event"] == "start";
    finals += j.value("final", false);
    if (j["event"] == "start") EXPECT_EQ(j["world_size"], 2);
    // Time waiting on collectives, per step, beside sec_per_step.
    if (j["event"] == "train") {
      EXPECT_GE(j.at("comm_sec_per_step").get<double>(), 0.0);
      EXPECT_LE(j.at("comm_sec_per_step").get<double>(), j.at("sec_per_step").get<double>());
    }
  }
  EXPECT_TRUE(contains(r.out, "rank 1: waited")) << r.out;
  EXPECT_TRUE(contains(r.out, "the gradient all-reduce")) << r.out;
  EXPECT_EQ(starts, 1);
  EXPECT_EQ(finals, 1);
}

// Every method that trains in steps, each with the terms that couple a
// batch's items: SiGAH's graph (gathered) beside means over ranks, and a
// local discriminator; DeepQuan's negatives (drawn for the global batch) and
// k-means refreshes (rank 0's, broadcast) after 10 pretraining steps;
// WSL-MLP's kNN graph and orthogonality (gathered); Auto-JacoBin's sums and
// Gram matrix over ranks under L-BFGS's line search, with DAutoBin's
// corruption drawn for the global batch. Each: 2 ranks x 16 follow 1 process
// x 32 within float-reduction tolerance, logged values included, and the
// replicas agree.
struct MethodCase {
  std::string name, yaml;
  std::vector<std::string> keys;  // train-record values compared
  double tol;
  size_t steps = 20;  // compared (of 20)
};

TEST_F(DataParallel, EveryStepMethodTrainsWhatOneProcessTrains) {
  const std::vector<MethodCase> cases = {
      {"sigah",
       "method: sigah\nmodel: {bits: 16, gamma: 1.0}\noptim: {type: sgd, lr: 0.01, "
       "momentum: 0.9}\n",
       {"loss_g", "loss_d", "graph", "recon", "energy_real"},
       1e-5},
      {"deepquan",
       "method: deepquan\nmodel: {M: 2, K: 16, widths: [32], pretrain_steps: 10, "
       "kmeans_iters: 5}\noptim: {type: adam, lr: 1.0e-3}\n",
       {"loss", "quantization", "reconstruction"},
       1e-4},
      {"wsl_mlp",
       "method: wsl_mlp\nmodel: {bits: 16, knn: 5, backbone: {name: mlp, widths: [32]}}\n"
       "optim: {type: adam, lr: 1.0e-3}\n",
       {"loss", "consistency", "orthogonality"},
       1e-5},
      {"auto_jacobin",
       "method: auto_jacobin\ndata: {protocol: euclidean, num_queries: 20}\n"
       "model: {bits: 8, noise: 0.2, tangents: {neighbours: 20}}\n"
       "optim: {type: sgd, lr: 1.0e-4}\n",
       {"loss", "recon", "jacobian", "binary"},
       1e-5},
      // The paper's steepest descent with a strong-Wolfe line search, which
      // sees the global loss. Compared for 3 steps only: on this problem the
      // line search takes another branch at step 4 when one process alone
      // changes its lr by 1e-7 (measured: 325.13 against 341.34), so the
      // float-order differences of two ranks cannot be followed further.
      {"auto_jacobin_lbfgs",
       "method: auto_jacobin\ndata: {protocol: euclidean, num_queries: 20}\n"
       "model: {bits: 8, tangents: {neighbours: 20}}\n"
       "optim: {type: lbfgs, lr: 1, history_size: 1, max_iter: 1, line_search: strong_wolfe, "
       "reset_each_step: true, schedule: constant}\n",
       {"loss", "recon", "jacobian", "binary", "evals"},
       1e-5,
       3},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path yaml = dir_ / (c.name + ".yaml");
    std::ofstream(yaml) << "_base_: data.yaml\nname: " << c.name << "\n" << c.yaml
                        << "train:\n  iterations: 20\n  batch_size: 32\n  log_every: 1\n";
    const fs::path one = dir_ / (c.name + "_one"), two = dir_ / (c.name + "_two");
    auto r = run("train -c " + yaml.string() + " --run-dir " + one.string());
    ASSERT_EQ(r.code, 0) << r.out;
    r = run("train -c " + yaml.string() + " --run-dir " + two.string() + " --nproc 2");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_TRUE(contains(r.out, "parameters agree on all 2 ranks")) << r.out;
    for (const auto& key : c.keys) {
      const auto a = train_losses(one, key), b = train_losses(two, key);
      ASSERT_EQ(a.size(), 20u) << key;
      ASSERT_EQ(b.size(), 20u) << key;
      for (size_t i = 0; i < c.steps; ++i)
        EXPECT_NEAR(a[i], b[i], c.tol * std::max(1.0, std::abs(a[i])))
            << key << " at step " << i + 1;
    }
    if (c.steps < 20) continue;
    const auto pa = hasher_state(one), pb = hasher_state(two);
    ASSERT_EQ(pa.numel(), pb.numel());
    EXPECT_LT((pa - pb).abs().max().item<double>(), 1e-4);
  }
}

// Dropout masks come from the CPU generator, whose state every rank shares:
// with dropout each rank seeds it per step and rank, so the ranks' rows get
// independent masks (not the one-process ones), and the replicas still agree.
TEST_F(DataParallel, DropoutRanksDrawTheirOwnMasks) {
  const fs::path d = dir_ / "dropout";
  auto r = run("train -c " + cfg() + " model.backbone.dropout=0.5 train.iterations=10 --run-dir " +
               d.string() + " --nproc 2");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "each rank draws its own masks")) << r.out;
  EXPECT_TRUE(contains(r.out, "parameters agree on all 2 ranks")) << r.out;
  // Without dropout the generator is left alone (one-process equivalence).
  r = run("train -c " + cfg() + " train.iterations=2 --run-dir " + (dir_ / "nodrop").string() +
          " --nproc 2");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_FALSE(contains(r.out, "each rank draws its own masks")) << r.out;
}

// Ctrl-C on the launcher stops both ranks at the same step, rank 0 writes the
// checkpoint, and `--resume --nproc 2` finishes with exactly the model of an
// uninterrupted 2-rank run.
// Runs `config args` on 2 ranks straight through and again interrupted (SIGINT
// to the launcher once the metrics match the grep pattern `at`), resumed with
// --resume --nproc 2; both must end bit-identical.
void expect_resume_is_exact(const fs::path& dir, const std::string& config,
                            const std::string& args, const std::string& at,
                            const std::string& name) {
  const fs::path full = dir / (name + "_full"), cut = dir / (name + "_cut");
  auto r = run("train -c " + config + args + " --run-dir " + full.string() + " --nproc 2");
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string metrics = (cut / "metrics.jsonl").string();
  r = sh("sh -c '" + cli() + " train -c " + config + args + " --run-dir " + cut.string() +
         " --nproc 2 & p=$!; i=0; while ! grep -q " + at + " " + metrics +
         " 2>/dev/null; do sleep 0.02; i=$((i+1)); [ $i -gt 3000 ] && break; done; "
         "kill -INT $p; wait $p; echo rc=$?'");
  ASSERT_TRUE(contains(r.out, "rc=130")) << r.out;
  ASSERT_TRUE(fs::exists(cut / "checkpoints/last.pt"));
  r = run("train --resume --run-dir " + cut.string() + " --nproc 2");
  ASSERT_EQ(r.code, 0) << r.out;
  // Bit for bit (the parameters; the same module evaluated twice by the JIT
  // may round differently in the last bit, so outputs are not compared here).
  const auto pa = hasher_state(full), pb = hasher_state(cut);
  EXPECT_TRUE(torch::equal(pa, pb)) << "max difference " << (pa - pb).abs().max().item<double>();
  EXPECT_EQ(train_losses(full), train_losses(cut));
}

TEST_F(DataParallel, InterruptedAndResumedRunEqualsAnUninterruptedOne) {
  // Checkpoints every step (slower), and the signal sent at the first logged step.
  expect_resume_is_exact(dir_, cfg(), " train.iterations=1000 train.checkpoint_every=1",
                         "\\\"train\\\"", "hn");
  // DeepQuan, interrupted after its first codebook refresh (step 10): the
  // broadcast codebooks and assignments travel through rank 0's checkpoint.
  const fs::path yaml = dir_ / "dq_resume.yaml";
  std::ofstream(yaml) << "_base_: data.yaml\nname: dqr\nmethod: deepquan\nmodel: {M: 2, K: 16, "
                         "widths: [32], pretrain_steps: 10, kmeans_iters: 5}\noptim: {type: adam, "
                         "lr: 1.0e-3}\ntrain:\n  iterations: 300\n  batch_size: 32\n  "
                         "log_every: 1\n  checkpoint_every: 1\n";
  expect_resume_is_exact(dir_, yaml.string(), "", "step..4[0-9]", "dq");
}

// A rank killed mid-training: the launcher says which, stops the other and
// fails; without the launcher (torchrun-style ranks), the surviving rank's
// next collective fails within the timeout.
TEST_F(DataParallel, AKilledRankMakesTheJobFailWithinTheTimeout) {
  const std::string args = " train.iterations=100000 train.checkpoint_every=100000";
  const fs::path d = dir_ / "killed";
  const std::string metrics = (d / "metrics.jsonl").string();
  auto t0 = std::chrono::steady_clock::now();
  auto r = sh("sh -c '" + cli() + " train -c " + cfg() + args + " --run-dir " + d.string() +
              " --nproc 2 & p=$!; " + hashlab::testing::wait_for_train_record(metrics) +
              "kill -9 $(pgrep -P $p | tail -1); wait $p; echo rc=$?'");
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(contains(r.out, "of 2 was killed by signal 9; stopping the other ranks")) << r.out;
  EXPECT_FALSE(contains(r.out, "rc=0")) << r.out;
  EXPECT_LT(s, 120.0);

  // torchrun-style: two processes, TCP rendezvous; rank 1 is killed.
  const fs::path d2 = dir_ / "killed_tcp";
  const std::string env = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 "
                          "GLOO_SOCKET_IFNAME=lo MASTER_PORT=" +
                          std::to_string(hashlab::testing::free_port()) + " ";
  t0 = std::chrono::steady_clock::now();
  // The timeout from the config (dist.timeout) this time.
  const std::string args2 = args + " dist.timeout=20";
  r = sh("sh -c '" + env + "RANK=0 " + cli() + " train -c " + cfg() + args2 + " --run-dir " +
         d2.string() + " & a=$!; " + env + "RANK=1 " + cli() + " train -c " + cfg() + args2 +
         " --run-dir " + d2.string() + " & b=$!; " +
         hashlab::testing::wait_for_train_record((d2 / "metrics.jsonl").string()) + "kill -9 $b; "
         "wait $a; echo rc0=$?'");
  s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(contains(r.out, "rc0=1")) << r.out;
  EXPECT_TRUE(contains(r.out, "data-parallel training, rank 0 of 2 at step")) << r.out;
  EXPECT_TRUE(contains(r.out, "another rank died")) << r.out;
  EXPECT_LT(s, 120.0);
}

TEST_F(DataParallel, FitsUnevenBatchesAndMissingBackendsAreRefused) {
  std::ofstream(dir_ / "itq.yaml") << "_base_: data.yaml\nname: itq\nmethod: itq\nmodel:\n  bits: 16\n";
  auto r = run("train -c " + (dir_ / "itq.yaml").string() + " --run-dir " +
               (dir_ / "itq_run").string() + " --nproc 2");
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.out, "fits in closed form")) << r.out;
  EXPECT_FALSE(fs::exists(dir_ / "itq_run")) << "a refused job left its run directory";
  // The backend: NCCL is not in Debian's LibTorch; an unknown one is named.
  r = run("train -c " + cfg() + " dist.backend=nccl --run-dir " + (dir_ / "nccl").string() +
          " --nproc 2");
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.out, "dist.backend: nccl: the linked LibTorch has no NCCL")) << r.out;
  r = run("train -c " + cfg() + " dist.timeout=0 --run-dir " + (dir_ / "t0").string());
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.out, "dist.timeout")) << r.out;
  r = run("train -c " + cfg() + " dist.backend=mpi --run-dir " + (dir_ / "mpi").string());
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.out, "dist.backend")) << r.out;
  EXPECT_TRUE(contains(r.out, "mpi")) << r.out;
  r = run("train -c " + cfg() + " train.batch_size=33 --run-dir " + (dir_ / "odd").string() +
          " --nproc 2");
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.out, "train.batch_size 33 is the global batch")) << r.out;
}

}  // namespace
