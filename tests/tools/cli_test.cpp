// End-to-end tests of the hashlab executable on tiny generated data.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>
#include <torch/script.h>

#include "csrc/codes/code_file.h"
#include "datasets/dataset.h"
#include "datasets/readers/idx.h"
#include "tests/tools/cli_util.h"

namespace fs = std::filesystem;

namespace {

using hashlab::testing::last_line;
using hashlab::testing::put_be32;
using hashlab::testing::run;

// 300 8x8 images of 5 classes: a class-specific pattern plus noise.
class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = hashlab::testing::make_image_data_dir("hl_cli_", /*one_thread=*/false);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static fs::path dir_;
};
fs::path CliTest::dir_;

TEST_F(CliTest, HelpListsCommands) {
  auto r = run("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* c : {"train", "eval", "encode", "export", "info"})
    EXPECT_NE(r.out.find(c), std::string::npos) << c;
}

TEST_F(CliTest, MisspeltKeyExitsNonZeroWithSuggestionAndLine) {
  auto cfg = (dir_ / "typo.yaml").string();
  std::ofstream(cfg) << "_base_: data.yaml\nmethod: itq\nmodel:\n  bits: 16\n  iteratons: 5\n";
  auto r = run("train -c " + cfg + " --runs-root " + (dir_ / "runs").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find(cfg + ":5:3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("did you mean 'model.iterations'"), std::string::npos) << r.out;
}

TEST_F(CliTest, UnknownMethodAndBadOverride) {
  auto cfg = (dir_ / "m.yaml").string();
  std::ofstream(cfg) << "_base_: data.yaml\nmethod: itqq\n";
  auto r = run("train -c " + cfg);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("did you mean 'itq'"), std::string::npos) << r.out;
  std::ofstream(cfg) << "_base_: data.yaml\nmethod: itq\n";
  r = run("train -c " + cfg + " optim.lr=abc");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("optim.lr: expected a number, got 'abc'"), std::string::npos) << r.out;
}

TEST_F(CliTest, PrintConfigShowsResolvedValues) {
  auto cfg = (dir_ / "p.yaml").string();
  std::ofstream(cfg) << "_base_: data.yaml\nmethod: itq\nmodel:\n  bits: 16\n";
  auto r = run("train -c " + cfg + " model.bits=24 --print-config");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("bits: 24"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("queries_per_class: 5"), std::string::npos) << r.out;
}

TEST_F(CliTest, TrainBaselineWritesRunDirectoryAndEvaluates) {
  auto cfg = (dir_ / "itq.yaml").string();
  std::ofstream(cfg) << "_base_: data.yaml\nname: tiny_itq\nmethod: itq\nthreads: 1\nmodel:\n  bits: 16\n";
  auto run_dir = dir_ / "run_itq";
  auto r = run("train -c " + cfg + " --run-dir " + run_dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* f : {"config.yaml", "log.txt", "metrics.jsonl", "model/method.pt",
                        "codes/query.hlc", "codes/database.hlc"})
    EXPECT_TRUE(fs::exists(run_dir / f)) << f;
  std::ifstream in(run_dir / "metrics.jsonl");
  std::string line, last_eval;
  while (std::getline(in, line))
    if (nlohmann::json::parse(line)["event"] == "eval") last_eval = line;
  ASSERT_FALSE(last_eval.empty());
  auto j = nlohmann::json::parse(last_eval);
  for (const char* k : {"map_all", "map_1000", "p_h2", "bits"}) EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["bits"], 16);
  // The patterns are easy: ITQ must beat chance (0.2) by far.
  EXPECT_GT(j["map_all"].get<double>(), 0.5);

  // Evaluating the saved codes gives the same mAP as the training run.
  auto e = run("eval --run " + run_dir.string() + " --from-codes");
  ASSERT_EQ(e.code, 0) << e.out;
  auto je = nlohmann::json::parse(last_line(e.out));
  EXPECT_DOUBLE_EQ(je["map_all"].get<double>(), j["map_all"].get<double>());
  // Re-encoding with the saved model gives it too.
  e = run("eval --run " + run_dir.string());
  ASSERT_EQ(e.code, 0) << e.out;
  je = nlohmann::json::parse(last_line(e.out));
  EXPECT_DOUBLE_EQ(je["map_all"].get<double>(), j["map_all"].get<double>());

  // The exported TorchScript hasher, fed raw pixels, reproduces the eager
  // codes that `hashlab encode` writes for the same file.
  ASSERT_TRUE(fs::exists(run_dir / "model/hasher.pt"));
  auto all = (dir_ / "all.hlc").string();
  e = run("encode --run " + run_dir.string() + " --input " + (dir_ / "images.idx").string() +
          " --out " + all);
  ASSERT_EQ(e.code, 0) << e.out;
  auto eager = hashlab::codes::read_binary_codes(all);
  EXPECT_EQ(eager.nbits, 16);
  auto module = torch::jit::load((run_dir / "model/hasher.pt").string());
  auto raw = hashlab::data::to_tensor(hashlab::data::read_idx((dir_ / "images.idx").string()));
  auto scripted = module.get_method("encode")({raw.to(torch::kFloat32).unsqueeze(1)}).toTensor();
  EXPECT_TRUE(torch::equal(scripted, eager.codes));

  // A second train into the same directory is refused (no lost work).
  r = run("train -c " + cfg + " --run-dir " + run_dir.string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("already holds a run"), std::string::npos) << r.out;

  // Resuming the finished fit evaluates without fitting again; without a
  // checkpoint (a fit killed before its first one) it fits from the start.
  r = run("train --resume --run-dir " + run_dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("finished fitting before this session"), std::string::npos) << r.out;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(last_line(r.out))["map_all"].get<double>(),
                   j["map_all"].get<double>());
  fs::remove(run_dir / "checkpoints" / "last.pt");
  r = run("train --resume --run-dir " + run_dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("fitting from the start"), std::string::npos) << r.out;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(last_line(r.out))["map_all"].get<double>(),
                   j["map_all"].get<double>());
  // eval.pq_distance: adc is for PQ codes: refused before training.
  r = run("train -c " + cfg + " --run-dir " + (dir_ / "run_adc").string() +
          " eval.pq_distance=adc");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("adc ranks PQ codes"), std::string::npos) << r.out;
}

TEST_F(CliTest, EuclideanRunEvaluatesFromCodesAndSwitchesTheCodeBias) {
  // Auto-JacoBin on the Euclidean protocol: the saved codes evaluate to the
  // training run's final metrics (the m-Recall grid included), and the
  // encode-only option model.code_bias can change at evaluation time.
  auto cfg = (dir_ / "aj.yaml").string();
  std::ofstream(cfg) << "_base_: data.yaml\nname: tiny_aj\nmethod: auto_jacobin\nthreads: 1\n"
                        "data:\n  protocol: euclidean\n  num_queries: 20\n  num_train: 120\n"
                        "model:\n  bits: 4\n"
                        "optim: {type: lbfgs, lr: 1, history_size: 1, max_iter: 1, "
                        "reset_each_step: true, schedule: constant}\n"
                        "train:\n  iterations: 4\n  batch_size: 60\n"
                        "eval:\n  m_recall_max: 50\n  m_recall_k: [1, 5]\n  m_recall_K: [10, 50]\n";
  auto run_dir = dir_ / "run_aj";
  auto r = run("train -c " + cfg + " --run-dir " + run_dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(last_line(r.out));
  for (const char* k : {"m_recall", "m_recall_k1_K10", "m_recall_k5_K50", "recall_at_10"})
    ASSERT_TRUE(j.contains(k)) << k << " in " << j.dump();
  auto e = run("eval --run " + run_dir.string() + " --from-codes");
  ASSERT_EQ(e.code, 0) << e.out;
  auto je = nlohmann::json::parse(last_line(e.out));
  for (const char* k : {"m_recall", "m_recall_k1_K10", "m_recall_k5_K50", "recall_at_10"})
    EXPECT_DOUBLE_EQ(je.value(k, -1.0), j[k].get<double>()) << k;
  EXPECT_FALSE(je.contains("map_all")) << "label metrics for a Euclidean run";
  e = run("eval --run " + run_dir.string() + " model.code_bias=false");
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_TRUE(nlohmann::json::parse(last_line(e.out)).contains("m_recall"));
  // A model option that changes training is still refused.
  e = run("eval --run " + run_dir.string() + " model.alpha=0.5");
  EXPECT_NE(e.code, 0);
  EXPECT_NE(e.out.find("alpha"), std::string::npos) << e.out;
}

TEST_F(CliTest, TruncatedIdxIsReportedByDataInspect) {
  auto good = dir_ / "images.idx";
  auto bad = dir_ / "truncated.idx";
  fs::copy_file(good, bad, fs::copy_options::overwrite_existing);
  fs::resize_file(bad, 16 + 100);
  auto r = run("data inspect " + bad.string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find(bad.string()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("truncated"), std::string::npos) << r.out;
}

}  // namespace
