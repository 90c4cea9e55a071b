// Run directories that cannot be corrupted (docs/RELIABILITY.md): build
// records checked on resume/export/encode/eval, one writer per directory,
// unique default names, restartable interrupted runs, errors recorded in the
// run, and the input checks at every file boundary. End to end through the
// hashlab executable (HASHLAB_CLI overrides the binary, so these tests can be
// run against an older build to show what they catch).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>
#include <torch/script.h>
#include <zlib.h>

#include "csrc/codes/code_file.h"
#include "csrc/core/fs_util.h"
#include "tests/tools/cli_util.h"

namespace fs = std::filesystem;

namespace {

using hashlab::testing::contains;
using hashlab::testing::slurp;
using hashlab::testing::cli;
using hashlab::testing::put_be32;
using hashlab::testing::run;
using hashlab::testing::sh;
using hashlab::testing::write_images;

// An npy file of `descr` ('<f4', '<i8') and `shape` ("3," or "3, 4") holding `bytes`.
void write_npy(const fs::path& path, const std::string& descr, const std::string& shape,
               const void* data, size_t bytes) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + shape +
                       "), }";
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  f.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  f.put(static_cast<char>(len & 0xff)).put(static_cast<char>(len >> 8));
  f << header;
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
}

// npy float32 [n, d] with given values.
void write_npy_f32(const fs::path& path, const std::vector<float>& v, int n, int d) {
  write_npy(path, "<f4", std::to_string(n) + ", " + std::to_string(d), v.data(), v.size() * 4);
}

int yaml_bits(const fs::path& config) {
  std::smatch m;
  std::string s = slurp(config);
  static const std::regex bits_re(R"(\n  bits: ([0-9]+))");
  return std::regex_search(s, m, bits_re) ? std::stoi(m[1].str()) : -1;
}

class RunDirTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = hashlab::testing::make_image_data_dir("hl_rundir_");
    write_images(dir_ / "big.idx", dir_ / "big_labels.idx", 20, 10);
    std::ofstream(dir_ / "itq.yaml") << "_base_: data.yaml\nname: itq\nmethod: itq\nmodel:\n  bits: 16\n";
    std::ofstream(dir_ / "lsh.yaml") << "_base_: data.yaml\nname: lsh\nmethod: lsh\nmodel:\n  bits: 16\n";
    // A step-trained method that runs until interrupted, with steps of about
    // a second (a wide MLP), so that a second signal lands inside a step.
    std::ofstream(dir_ / "hashnet.yaml")
        << "_base_: data.yaml\nname: hn\nmethod: hashnet\nmodel:\n  bits: 16\n"
           "  backbone: {name: mlp, widths: [6000, 6000]}\ntrain:\n  iterations: 1000000\n"
           "  batch_size: 128\n  log_every: 1\n  checkpoint_every: 1000000\n";
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::string cfg(const char* name) { return (dir_ / name).string(); }
  static fs::path dir_;
};
fs::path RunDirTest::dir_;

// ---- 1. build records: resume, export, encode and eval refuse a model built
// with other settings, before anything is written.

TEST_F(RunDirTest, ResumeWithCheckpointOfAnotherCodeLengthIsRefusedBeforeWriting) {
  auto a = dir_ / "r16", b = dir_ / "r32";
  ASSERT_EQ(run("train -c " + cfg("itq.yaml") + " --run-dir " + a.string()).code, 0);
  auto r = run("train -c " + cfg("itq.yaml") + " model.bits=32 --run-dir " + b.string());
  ASSERT_EQ(r.code, 0) << r.out;
  // A 16-bit checkpoint put into the 32-bit run.
  fs::copy_file(a / "checkpoints/last.pt", b / "checkpoints/last.pt",
                fs::copy_options::overwrite_existing);
  const std::string ckpt = slurp(b / "checkpoints/last.pt"), model = slurp(b / "model/method.pt"),
                    metrics = slurp(b / "metrics.jsonl"), config = slurp(b / "config.yaml");
  r = run("train --resume --run-dir " + b.string());
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "bits: 16 -> 32")) << r.out;
  EXPECT_TRUE(contains(r.out, (b / "checkpoints/last.pt").string())) << r.out;
  EXPECT_EQ(slurp(b / "checkpoints/last.pt"), ckpt);
  EXPECT_EQ(slurp(b / "model/method.pt"), model);
  EXPECT_EQ(slurp(b / "metrics.jsonl"), metrics);
  EXPECT_EQ(slurp(b / "config.yaml"), config);

  // Overrides on --resume that change the model's shape are refused, naming
  // the field; so are those of the data or the seed.
  r = run("train --resume --run-dir " + a.string() + " model.bits=32");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "bits: 16 -> 32")) << r.out;
  EXPECT_EQ(yaml_bits(a / "config.yaml"), 16);
  r = run("train --resume --run-dir " + a.string() + " seed=5");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "seed: 0 -> 5") || contains(r.out, "seed: (not set) -> 5")) << r.out;
  // Others (a model option that keeps the shapes, eval settings) are applied,
  // logged and written to config.yaml.
  r = run("train --resume --run-dir " + a.string() + " eval.batch_size=77 model.iterations=7");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(contains(slurp(a / "config.yaml"), "batch_size: 77")) << slurp(a / "config.yaml");
  EXPECT_TRUE(contains(slurp(a / "config.yaml"), "iterations: 7")) << slurp(a / "config.yaml");
  EXPECT_TRUE(contains(slurp(a / "log.txt"), "eval.batch_size: (not set) -> 77"));
}

TEST_F(RunDirTest, ResumeOverrideThatChangesATensorShapeIsRefused) {
  auto d = dir_ / "widths";
  std::ofstream(dir_ / "mlp.yaml")
      << "_base_: data.yaml\nmethod: hashnet\nmodel:\n  bits: 16\n"
         "  backbone: {name: mlp, widths: [32]}\ntrain:\n  iterations: 2\n  batch_size: 16\n";
  auto r = run("train -c " + cfg("mlp.yaml") + " --run-dir " + d.string());
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string ckpt = slurp(d / "checkpoints/last.pt");
  r = run("train --resume --run-dir " + d.string() +
               " model.backbone.widths=[48] train.iterations=4");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "[32, 64] -> [48, 64]")) << r.out;
  EXPECT_EQ(slurp(d / "checkpoints/last.pt"), ckpt);
  // A loss option keeps every shape: the run goes on with it.
  r = run("train --resume --run-dir " + d.string() + " model.alpha=0.5 train.iterations=4");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(contains(slurp(d / "config.yaml"), "alpha: 0.5"));
}

TEST_F(RunDirTest, ExportEncodeEvalRefuseAModelFileOfAnotherBuild) {
  auto a = dir_ / "m16", b = dir_ / "m32";
  ASSERT_EQ(run("train -c " + cfg("itq.yaml") + " --run-dir " + a.string()).code, 0);
  ASSERT_EQ(run("train -c " + cfg("itq.yaml") + " model.bits=32 --run-dir " + b.string()).code, 0);
  fs::copy_file(a / "model/method.pt", b / "model/method.pt", fs::copy_options::overwrite_existing);
  const std::string hasher = slurp(b / "model/hasher.pt");
  for (const std::string& cmd :
       {"export --run " + b.string(), "eval --run " + b.string(),
        "encode --run " + b.string() + " --input " + (dir_ / "images.idx").string() + " --out " +
            (dir_ / "x.hlc").string()}) {
    auto r = run(cmd);
    EXPECT_NE(r.code, 0) << cmd << "\n" << r.out;
    EXPECT_TRUE(contains(r.out, "bits: 16 -> 32")) << cmd << "\n" << r.out;
  }
  EXPECT_EQ(slurp(b / "model/hasher.pt"), hasher);
  EXPECT_FALSE(fs::exists(dir_ / "x.hlc"));
}

TEST_F(RunDirTest, EncodeChecksTheInputShapeAgainstTheHasher) {
  auto a = dir_ / "shape";
  ASSERT_EQ(run("train -c " + cfg("lsh.yaml") + " --run-dir " + a.string()).code, 0);
  auto r = run("encode --run " + a.string() + " --input " + (dir_ / "big.idx").string() +
               " --out " + (dir_ / "big.hlc").string());
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "[1, 10, 10]") && contains(r.out, "[1, 8, 8]")) << r.out;
}

// ---- 2. one writer per run directory; unique default names.

TEST_F(RunDirTest, ASecondWriterIsRefusedNamingTheHolder) {
  auto d = dir_ / "locked";
  fs::create_directories(d);
  {
    hashlab::DirLock hold(d.string(), hashlab::DirLock::Mode::exclusive, "the test");
    auto r = run("train -c " + cfg("lsh.yaml") + " --run-dir " + d.string());
    EXPECT_NE(r.code, 0) << r.out;
    EXPECT_TRUE(contains(r.out, "pid " + std::to_string(::getpid()))) << r.out;
    EXPECT_FALSE(fs::exists(d / "config.yaml"));
  }
  // Released (as the kernel does when a holder dies): the run goes ahead.
  auto r = run("train -c " + cfg("lsh.yaml") + " --run-dir " + d.string());
  EXPECT_EQ(r.code, 0) << r.out;
  // A reader of a directory that is being written is refused too.
  hashlab::DirLock hold(d.string(), hashlab::DirLock::Mode::exclusive, "a writer");
  r = run("eval --run " + d.string());
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "in use")) << r.out;
}

TEST_F(RunDirTest, DefaultRunDirectoriesAreUnique) {
  auto root = dir_ / "uniq";
  EXPECT_NE(hashlab::make_unique_directory((root / "x").string()),
            hashlab::make_unique_directory((root / "x").string()));
  // Four runs started together, in the same second or not: four directories.
  std::string cmd = "(";
  for (int i = 0; i < 4; ++i)
    cmd += cli() + " train -c " + cfg("lsh.yaml") + " --runs-root " + root.string() +
           " >/dev/null 2>&1 & ";
  cmd += "wait)";
  sh(cmd);
  int runs = 0;
  for (const auto& e : fs::directory_iterator(root / "lsh")) {
    ++runs;
    EXPECT_TRUE(fs::exists(e.path() / "codes/database.hlc")) << e.path();
  }
  EXPECT_EQ(runs, 4);
}

// 8 writers on 4 directories, 10 rounds: each directory ends complete and
// consistent (config bits = code bits = hasher bits) or was refused; the
// loser of each pair says why.
TEST_F(RunDirTest, StressEightWritersOnFourDirectories) {
  auto root = dir_ / "stress";
  for (int round = 0; round < 10; ++round) {
    fs::remove_all(root);
    fs::create_directories(root);
    std::string cmd = "(";
    for (int i = 0; i < 8; ++i) {
      auto d = root / ("d" + std::to_string(i % 4));
      cmd += cli() + " train -c " + cfg("lsh.yaml") + " model.bits=" + (i < 4 ? "16" : "32") +
             " --run-dir " + d.string() + " > " + (root / ("p" + std::to_string(i))).string() +
             ".log 2>&1; echo $? > " + (root / ("p" + std::to_string(i))).string() + ".rc & ";
    }
    cmd += "wait)";
    sh(cmd);
    for (int k = 0; k < 4; ++k) {
      auto d = root / ("d" + std::to_string(k));
      int ok = 0;
      for (int i : {k, k + 4}) {
        auto p = root / ("p" + std::to_string(i));
        int rc = std::stoi(slurp(p.string() + ".rc"));
        std::string log = slurp(p.string() + ".log");
        if (rc == 0) {
          ++ok;
        } else {
          EXPECT_TRUE(contains(log, "in use by another hashlab process") ||
                      contains(log, "already holds a run"))
              << "round " << round << " " << d << ":\n" << log;
        }
      }
      EXPECT_EQ(ok, 1) << "round " << round << " " << d;
      const int bits = yaml_bits(d / "config.yaml");
      EXPECT_TRUE(bits == 16 || bits == 32) << d;
      EXPECT_EQ(hashlab::codes::read_code_file_info((d / "codes/database.hlc").string()).nbits, bits);
      EXPECT_EQ(hashlab::codes::read_code_file_info((d / "codes/query.hlc").string()).nbits, bits);
      auto hasher = torch::jit::load((d / "model/hasher.pt").string());
      auto c = hasher.get_method("encode")({torch::zeros({1, 1, 8, 8})}).toTensor();
      EXPECT_EQ(c.size(1) * 8, bits) << d;
    }
  }
}

// ---- 3. a second Ctrl-C aborts with a message, and the directory restarts.
// (The two signals are 0.3 s apart: two SIGINTs pending at once merge into one.)

TEST_F(RunDirTest, SecondInterruptAbortsWithAMessageAndTheRunRestarts) {
  auto d = dir_ / "twice";
  std::string metrics = (d / "metrics.jsonl").string();
  auto r = sh("sh -c '" + cli() + " train -c " + cfg("hashnet.yaml") + " --run-dir " +
              d.string() + " & p=$!; i=0; while ! grep -q \"\\\"train\\\"\" " + metrics +
              " 2>/dev/null; do sleep 0.05; i=$((i+1)); [ $i -gt 600 ] && break; done; "
              "kill -INT $p; sleep 0.3; kill -INT $p; wait $p; echo rc=$?'");
  EXPECT_TRUE(contains(r.out, "interrupting again aborts")) << r.out;
  EXPECT_TRUE(contains(r.out, "second interrupt: aborting")) << r.out;
  EXPECT_TRUE(contains(r.out, "rc=130")) << r.out;
  EXPECT_FALSE(fs::exists(d / "checkpoints/last.pt"));
  // Without a checkpoint, --resume trains from the start.
  r = run("train --resume --run-dir " + d.string() + " train.iterations=1");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "training from the start")) << r.out;
  EXPECT_TRUE(fs::exists(d / "codes/database.hlc"));
}

// ---- 4-6. non-finite features, huge labels, failures after training.

TEST_F(RunDirTest, NonFiniteFeaturesAreNamedAtLoad) {
  std::vector<float> v(40 * 6);
  std::mt19937 rng(1);
  std::normal_distribution<float> g;
  for (auto& x : v) x = g(rng);
  v[17 * 6 + 2] = std::nanf("");
  v[30 * 6 + 1] = INFINITY;
  write_npy_f32(dir_ / "nan.npy", v, 40, 6);
  std::ofstream(dir_ / "nan.yaml") << "data:\n  format: npy\n  files: [" << (dir_ / "nan.npy").string()
                                   << "]\n  protocol: euclidean\n  num_queries: 5\nmethod: pcah\n"
                                      "threads: 1\nmodel:\n  bits: 4\n";
  for (const char* m : {"pcah", "itq", "sh"}) {
    auto r = run(std::string("train -c ") + cfg("nan.yaml") + " method=" + m + " --run-dir " +
                 (dir_ / (std::string("nan_") + m)).string());
    EXPECT_NE(r.code, 0) << m << r.out;
    EXPECT_TRUE(contains(r.out, (dir_ / "nan.npy").string()) && contains(r.out, "NaN") &&
                contains(r.out, "item 17"))
        << m << r.out;
  }
  auto r = run("data inspect " + (dir_ / "nan.npy").string());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "1 NaN, 1 inf, in 2 items (first: item 17)")) << r.out;
}

TEST_F(RunDirTest, HugeLabelValuesAreNamedNotAllocated) {
  std::ofstream lb(dir_ / "huge_labels.idx", std::ios::binary);
  put_be32(lb, 0x00000c01);  // int32 labels
  put_be32(lb, 300);
  for (int i = 0; i < 300; ++i) put_be32(lb, i == 123 ? 0x7fffffff : i % 5);
  lb.close();
  auto r = run("train -c " + cfg("lsh.yaml") + " data.labels=[" + (dir_ / "huge_labels.idx").string() +
               "] --run-dir " + (dir_ / "huge").string());
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "huge_labels.idx") && contains(r.out, "2147483647") &&
              contains(r.out, "index 123"))
      << r.out;
}

TEST_F(RunDirTest, AFailureAfterTrainingIsRecordedInTheRun) {
  // codes/ is a file, so writing the code files fails after training (as a
  // full disk would).
  auto d2 = dir_ / "diskfull";
  fs::create_directories(d2);
  std::ofstream(d2 / "codes") << "not a directory";
  auto r = run("train -c " + cfg("lsh.yaml") + " --run-dir " + d2.string());
  EXPECT_NE(r.code, 0) << r.out;
  std::string m = slurp(d2 / "metrics.jsonl");
  EXPECT_FALSE(contains(m, "\"final\":true")) << m;
  EXPECT_TRUE(contains(m, "\"event\":\"error\"")) << m;
  EXPECT_TRUE(contains(slurp(d2 / "log.txt"), "error:")) << slurp(d2 / "log.txt");
}

// ---- 7-13. the small ones.

TEST_F(RunDirTest, SearchArgumentsAreChecked) {
  auto d = dir_ / "search";
  ASSERT_EQ(run("train -c " + cfg("lsh.yaml") + " --run-dir " + d.string()).code, 0);
  std::string files = " --db " + (d / "codes/database.hlc").string() + " --queries " +
                      (d / "codes/query.hlc").string();
  auto r = run("search" + files + " --radius -5");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "--radius must be >= 0")) << r.out;
  r = run("search" + files + " --radius 2 --k 5");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "not both")) << r.out;
  for (const char* t : {"-5", "100000"}) {
    r = run("search" + files + " --threads " + t);
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_TRUE(contains(r.out, "hashlab: error:")) << r.out;
  }
  r = run("search --no-such-flag");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(contains(r.out, "hashlab: error:")) << r.out;
}

TEST_F(RunDirTest, DuplicateYamlKeysAreRefused) {
  std::ofstream(dir_ / "dup.yaml") << "_base_: data.yaml\nmethod: lsh\nmodel:\n  bits: 16\n  bits: 32\n";
  auto r = run("train -c " + cfg("dup.yaml") + " --print-config");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "dup.yaml:5:3") && contains(r.out, "model.bits") &&
              contains(r.out, "given twice"))
      << r.out;
}

void patch(const fs::path& p, size_t off, const void* data, size_t n) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(off));
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
}

// Re-seals a patched header (crc32 of bytes 0..51 at offset 52), as a forger would.
void reseal(const fs::path& p) {
  std::string h = slurp(p).substr(0, 52);
  uint32_t crc = static_cast<uint32_t>(
      ::crc32_z(::crc32_z(0, Z_NULL, 0), reinterpret_cast<const Bytef*>(h.data()), h.size()));
  patch(p, 52, &crc, 4);
}

TEST_F(RunDirTest, CodeFileHeadersAreBoundedAndChecksummed) {
  hashlab::codes::BinaryCodes c;
  c.nbits = 64;
  c.codes = torch::randint(256, {10, 8}, torch::kUInt8);
  auto p = dir_ / "h.hlc";
  auto fresh = [&] { hashlab::codes::write_binary_codes(p.string(), c); };
  // count x size overflowing 64 bits (2^61 x 8 = 0 mod 2^64), payload to match.
  fresh();
  uint64_t count = uint64_t{1} << 61, payload = 0;
  patch(p, 32, &count, 8);
  patch(p, 40, &payload, 8);
  reseal(p);
  auto r = run("codes info " + p.string());
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "offset 32: count 2305843009213693952 is beyond")) << r.out;
  // nbits out of range.
  fresh();
  uint32_t nbits = 0x7fffffff;
  patch(p, 16, &nbits, 4);
  reseal(p);
  r = run("codes info " + p.string());
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "nbits 2147483647 must be in [1, 65536]")) << r.out;
  // A header byte changed without resealing is caught by the header checksum.
  fresh();
  uint32_t k = 7;
  patch(p, 24, &k, 4);
  r = run("codes info " + p.string());
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "header checksum mismatch")) << r.out;
}

TEST_F(RunDirTest, EvalFromCodesChecksTheDatabaseAgainstTheQueries) {
  auto a = dir_ / "fc16", b = dir_ / "fc32";
  ASSERT_EQ(run("train -c " + cfg("lsh.yaml") + " --run-dir " + a.string()).code, 0);
  ASSERT_EQ(run("train -c " + cfg("lsh.yaml") + " model.bits=32 --run-dir " + b.string()).code, 0);
  fs::copy_file(b / "codes/database.hlc", a / "codes/database.hlc",
                fs::copy_options::overwrite_existing);
  auto r = run("eval --run " + a.string() + " --from-codes");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "16-bit") && contains(r.out, "32-bit") &&
              contains(r.out, (a / "codes/database.hlc").string()))
      << r.out;
}

TEST_F(RunDirTest, StaleTempFilesOfDeadWritersAreRemoved) {
  auto d = dir_ / "stale";
  ASSERT_EQ(run("train -c " + cfg("itq.yaml") + " --run-dir " + d.string()).code, 0);
  // A pid that is not running (pid_max is far below this on Linux).
  auto stale = d / "checkpoints/last.pt.tmp.99999999";
  auto live = d / ("checkpoints/last.pt.tmp." + std::to_string(::getpid()));
  std::ofstream(stale) << "half";
  std::ofstream(live) << "being written";
  auto r = run("train --resume --run-dir " + d.string());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(contains(r.out, "last.pt.tmp.99999999")) << r.out;
}

// npy int64 [n] with given values.
void write_npy_i64(const fs::path& path, const std::vector<int64_t>& v) {
  write_npy(path, "<i8", std::to_string(v.size()) + ",", v.data(), v.size() * 8);
}

// `eval --query-labels/--db-labels` reads labels as training does: floats
// (NaN included), negative ids and ids past 2^24 are refused naming the file
// and the item, instead of a meaningless mAP.
TEST_F(RunDirTest, EvalLabelFilesAreCheckedAsTrainingChecksThem) {
  hashlab::codes::BinaryCodes c;
  c.nbits = 16;
  c.codes = torch::randint(256, {6, 2}, torch::kUInt8);
  const auto codes = dir_ / "l.hlc";
  hashlab::codes::write_binary_codes(codes.string(), c);
  write_npy_i64(dir_ / "good.npy", {0, 1, 2, 0, 1, 2});
  write_npy_i64(dir_ / "negative.npy", {0, 1, -3, 0, 1, 2});
  write_npy_i64(dir_ / "huge.npy", {0, 1, 2, 0, 1000000000000, 2});
  write_npy_f32(dir_ / "float.npy", {0, 1, std::nanf(""), 0, 1, 2}, 6, 1);
  const std::string base = "eval --query-codes " + codes.string() + " --db-codes " +
                           codes.string() + " --query-labels " + (dir_ / "good.npy").string() +
                           " --db-labels ";
  auto r = run(base + (dir_ / "good.npy").string());
  ASSERT_EQ(r.code, 0) << r.out;
  for (const auto& [file, what] : std::vector<std::pair<std::string, std::string>>{
           {"negative.npy", "label -3 at index 2 is negative"},
           {"huge.npy", "label 1000000000000 at index 4 is beyond the limit"},
           {"float.npy", "must be integers"}}) {
    r = run(base + (dir_ / file).string());
    EXPECT_EQ(r.code, 1) << file << ": " << r.out;
    EXPECT_TRUE(contains(r.out, (dir_ / file).string() + ": ") && contains(r.out, what))
        << file << ": " << r.out;
  }
}

// The output files of eval, encode, export and report: a write that fails
// (/dev/full through a symlink) is an error naming the file; a missing
// --out directory is refused, not created.
TEST_F(RunDirTest, RunCommandOutputsReportFailedWritesAndMissingDirectories) {
  auto d = dir_ / "outs";
  ASSERT_EQ(run("train -c " + cfg("lsh.yaml") + " --run-dir " + d.string()).code, 0);
  const fs::path full = dir_ / "full_out";
  fs::create_symlink("/dev/full", full);
  for (const std::string& cmd :
       {"eval --run " + d.string() + " --from-codes --out ", "export --run " + d.string() + " --out ",
        "encode --run " + d.string() + " --input " + (dir_ / "images.idx").string() + " --out ",
        "report " + d.string() + " --out "}) {
    auto r = run(cmd + full.string());
    EXPECT_EQ(r.code, 1) << cmd << "\n" << r.out;
    EXPECT_TRUE(contains(r.out, full.string()) && contains(r.out, "No space left on device"))
        << cmd << "\n" << r.out;
    EXPECT_TRUE(fs::is_symlink(full)) << cmd;
    r = run(cmd + (dir_ / "nodir" / "x").string());
    EXPECT_EQ(r.code, 2) << cmd << "\n" << r.out;
    EXPECT_TRUE(contains(r.out, "directory " + (dir_ / "nodir").string())) << cmd << "\n" << r.out;
    EXPECT_FALSE(fs::exists(dir_ / "nodir")) << cmd;
  }
  fs::remove(full);
}

#ifdef HASHLAB_WITH_FAISS
TEST_F(RunDirTest, ImportFaissWithAForgedVectorLengthIsRefused) {
  hashlab::codes::BinaryCodes c;
  c.nbits = 64;
  c.codes = torch::randint(256, {10, 8}, torch::kUInt8);
  auto f = dir_ / "f.index";
  hashlab::codes::export_faiss_binary(f.string(), c);
  uint64_t forged = uint64_t{1} << 50;
  patch(f, 25, &forged, 8);
  auto r = run("codes import-faiss --in " + f.string() + " --out " + (dir_ / "f.hlc").string());
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, f.string()) && contains(r.out, "offset 25")) << r.out;
  EXPECT_FALSE(fs::exists(dir_ / "f.hlc"));
}
#endif

}  // namespace
