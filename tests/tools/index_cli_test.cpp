// `hashlab index build|info|search` end to end: the index file is the
// concatenation of its inputs, searches equal the library's (and `hashlab
// search`'s) results with every load mode, and bad input is named.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "csrc/codes/code_file.h"
#include "csrc/search/binary_index.h"
#include "tests/tools/cli_util.h"
#include "tests/util/codes_util.h"

namespace fs = std::filesystem;
using hashlab::testing::contains;
using hashlab::testing::free_port;
using hashlab::testing::slurp;
using hashlab::testing::last_line;
using hashlab::testing::random_codes;
using hashlab::testing::run;
namespace hc = hashlab::codes;
namespace hs = hashlab::search;

namespace {

TEST(IndexCli, BuildInfoSearchEqualTheLibrary) {
  const fs::path d = fs::temp_directory_path() / ("hl_index_cli_" + std::to_string(::getpid()));
  fs::create_directories(d);
  const auto a = random_codes(300, 64, 1, 40), b = random_codes(201, 64, 2, 40);
  const auto q = random_codes(7, 64, 3);
  hc::write_binary_codes((d / "a.hlc").string(), {64, a});
  hc::write_binary_codes((d / "b.hlc").string(), {64, b});
  hc::write_binary_codes((d / "q.hlc").string(), {64, q});
  const std::string idx = (d / "idx.hlc").string();

  auto r = run("index build " + (d / "a.hlc").string() + " " + (d / "b.hlc").string() + " --out " + idx);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(last_line(r.out))["count"], 501);
  const auto all = torch::cat({a, b});
  EXPECT_TRUE(torch::equal(hc::read_binary_codes(idx).codes, all));

  r = run("index info " + idx);
  ASSERT_EQ(r.code, 0) << r.out;
  auto info = nlohmann::json::parse(last_line(r.out));
  EXPECT_EQ(info["nbits"], 64);
  EXPECT_EQ(info["count"], 501);
  EXPECT_EQ(info["checksum"], "ok");

  const auto want = hs::BinaryIndex::from_codes(all, 64).search(q, 5);
  for (const std::string mode : {"", " --no-mmap", " --no-verify --release-pages", " --threads 1"}) {
    r = run("index search " + idx + " --queries " + (d / "q.hlc").string() + " --k 5" + mode);
    ASSERT_EQ(r.code, 0) << mode << ": " << r.out;
    auto j = nlohmann::json::parse(last_line(r.out));
    ASSERT_EQ(j["results"].size(), 7u);
    for (int64_t i = 0; i < 7; ++i)
      for (int64_t t = 0; t < 5; ++t) {
        EXPECT_EQ(j["results"][i]["indices"][t].get<int64_t>(), want.indices[i][t].item<int64_t>());
        EXPECT_EQ(j["results"][i]["distances"][t].get<int>(), want.distances[i][t].item<int>());
      }
  }
  // `hashlab search --db` is the same search.
  auto s = run("search --db " + idx + " --queries " + (d / "q.hlc").string() + " --k 5");
  ASSERT_EQ(s.code, 0) << s.out;
  EXPECT_EQ(nlohmann::json::parse(last_line(s.out))["results"],
            nlohmann::json::parse(last_line(r.out))["results"]);
  // Range search: everything within the radius.
  r = run("index search " + idx + " --queries " + (d / "q.hlc").string() + " --radius 26");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto rr = hs::hamming_radius(q, all, 64, 26);
  auto j = nlohmann::json::parse(last_line(r.out));
  for (int64_t i = 0; i < 7; ++i)
    EXPECT_EQ(static_cast<int64_t>(j["results"][i]["indices"].size()),
              rr.offsets[i + 1].item<int64_t>() - rr.offsets[i].item<int64_t>());

  // Bad input is named.
  hc::write_binary_codes((d / "c32.hlc").string(), {32, random_codes(10, 32, 4)});
  r = run("index build " + (d / "a.hlc").string() + " " + (d / "c32.hlc").string() + " --out " +
          (d / "bad.hlc").string());
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.out, "c32.hlc has 32-bit codes")) << r.out;
  EXPECT_FALSE(fs::exists(d / "bad.hlc"));
  r = run("index search " + idx + " --queries " + (d / "q.hlc").string() + " --k 502");
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.out, "--k must be in [1, 501]")) << r.out;
  r = run("index search " + idx + " --queries " + (d / "c32.hlc").string() + " --k 1");
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.out, "64-bit codes but --queries")) << r.out;
  // A flipped payload byte: info (and a checked load) refuse it, naming the file.
  {
    std::fstream f(idx, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(64 + 100);
    f.put('\x5a');
  }
  r = run("index info " + idx);
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.out, idx) && contains(r.out, "checksum mismatch")) << r.out;
  r = run("index search " + idx + " --queries " + (d / "q.hlc").string() + " --k 1");
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.out, "checksum mismatch")) << r.out;
  fs::remove_all(d);
}

// `cp other.hlc big.hlc` while `index search big.hlc` runs (cp truncates the
// same inode and rewrites it): the search ends with an error naming the
// file, never SIGBUS (exit 135, no message) and never results from a mix of
// two files. The copies start once the process has mapped the index
// (/proc/PID/maps) and go on until the mapping is gone.
TEST(IndexCli, AnIndexOverwrittenByCpDuringASearchFailsNamingIt) {
  const fs::path d = fs::temp_directory_path() / ("hl_index_cp_" + std::to_string(::getpid()));
  fs::create_directories(d);
  const std::string big = (d / "big.hlc").string(), other = (d / "other.hlc").string();
  hc::write_binary_codes(big, {64, random_codes(1000000, 64, 11)});
  hc::write_binary_codes(other, {64, random_codes(1000000, 64, 12)});
  hc::write_binary_codes((d / "q.hlc").string(), {64, random_codes(1000, 64, 13)});
  const auto r = hashlab::testing::sh(
      "sh -c '" + hashlab::testing::cli() + " index search " + big + " --queries " +
      (d / "q.hlc").string() + " --k 10 --threads 1 --no-verify --out " +
      (d / "r.json").string() + " & p=$!; i=0; while ! grep -q big.hlc /proc/$p/maps " +
      "2>/dev/null; do sleep 0.01; i=$((i+1)); [ $i -gt 3000 ] && break; done; " +
      "while grep -q big.hlc /proc/$p/maps 2>/dev/null; do cp " + other + " " + big +
      "; done; wait $p; echo rc=$?'");
  EXPECT_TRUE(contains(r.out, "rc=1")) << r.out;  // not 135 (SIGBUS), not 0
  EXPECT_TRUE(contains(r.out, big) && contains(r.out, "changed on disk")) << r.out;
  EXPECT_FALSE(fs::exists(d / "r.json"));
  fs::remove_all(d);
}

ino_t inode_of(const fs::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? st.st_ino : 0;
}

// Every output file of search, index build and codes export/import: a
// regular file is replaced by rename (a new inode, no temp file left); a
// write that fails (/dev/full, reached through a symlink so that the old
// code's rename cannot replace the device) is an error naming the file,
// exit 1; so is a failed write of stdout; an --out in a missing directory is
// refused (exit 2), the directory not created.
TEST(IndexCli, OutputFilesAreReplacedByRenameAndFailedWritesAreErrors) {
  const fs::path d = fs::temp_directory_path() / ("hl_index_out_" + std::to_string(::getpid()));
  fs::create_directories(d);
  hc::write_binary_codes((d / "a.hlc").string(), {64, random_codes(300, 64, 1)});
  hc::write_binary_codes((d / "q.hlc").string(), {64, random_codes(7, 64, 3)});
  const std::string a = (d / "a.hlc").string(), q = " --queries " + (d / "q.hlc").string();
  std::vector<std::pair<std::string, std::string>> writers = {
      {"index search " + a + q + " --k 5 --out ", ".npy"},
      {"index search " + a + q + " --radius 20 --out ", ".json"},
      {"search --db " + a + q + " --k 5 --out ", ".json"},
      {"index build " + a + " --out ", ".hlc"},
  };
#ifdef HASHLAB_WITH_FAISS
  writers.push_back({"codes export-faiss --in " + a + " --out ", ".faiss"});
#endif
  for (size_t i = 0; i < writers.size(); ++i) {
    const auto& [cmd, ext] = writers[i];
    SCOPED_TRACE(cmd + ext);
    const fs::path out = d / ("out" + std::to_string(i) + ext);
    auto r = run(cmd + out.string());
    ASSERT_EQ(r.code, 0) << r.out;
    const ino_t first = inode_of(out);
    const std::string content = slurp(out);
    r = run(cmd + out.string());
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(inode_of(out), first) << "rewritten in place, not replaced by rename";
    if (ext != ".json") EXPECT_EQ(slurp(out), content);  // JSON holds the time taken
    const fs::path full = d / ("full" + std::to_string(i) + ext);
    fs::create_symlink("/dev/full", full);
    r = run(cmd + full.string());
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_TRUE(contains(r.out, full.string()) && contains(r.out, "No space left on device"))
        << r.out;
    EXPECT_FALSE(contains(r.out, "wrote")) << r.out;
    EXPECT_TRUE(fs::is_symlink(full));
    r = run(cmd + (d / "missing" / ("x" + ext)).string());
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_TRUE(contains(r.out, "directory " + (d / "missing").string() + " of")) << r.out;
    EXPECT_FALSE(fs::exists(d / "missing"));
  }
  // A symlink to a regular file is followed: the file is replaced, the link kept.
  std::ofstream(d / "real.json") << "old";
  fs::create_symlink(d / "real.json", d / "link.json");
  auto r = run("index search " + a + q + " --k 5 --out " + (d / "link.json").string());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(fs::is_symlink(d / "link.json"));
  EXPECT_TRUE(contains(slurp(d / "real.json"), "\"results\"")) << slurp(d / "real.json");
  for (const auto& e : fs::directory_iterator(d))
    EXPECT_FALSE(contains(e.path().filename().string(), ".tmp.")) << e.path();
  // Results on stdout that cannot be written.
  r = hashlab::testing::sh("sh -c '" + hashlab::testing::cli() + " index search " + a + q +
                                " --k 5 > /dev/full'");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, "standard output: write failed")) << r.out;
  fs::remove_all(d);
}

// Radius searches stop at --max-results; an empty index and one of codes too
// wide for an index are named.
TEST(IndexCli, RadiusResultsAreBoundedAndEmptyOrWideIndexesAreNamed) {
  const fs::path d = fs::temp_directory_path() / ("hl_index_lim_" + std::to_string(::getpid()));
  fs::create_directories(d);
  const std::string a = (d / "a.hlc").string(), q = " --queries " + (d / "q.hlc").string();
  hc::write_binary_codes(a, {64, random_codes(300, 64, 1)});
  hc::write_binary_codes((d / "q.hlc").string(), {64, random_codes(7, 64, 3)});
  for (const std::string cmd : {"index search " + a, "search --db " + a}) {
    // Radius 64 finds all 7 x 300 = 2100.
    auto r = run(cmd + q + " --radius 64 --max-results 2100");
    EXPECT_EQ(r.code, 0) << r.out;
    r = run(cmd + q + " --radius 64 --max-results 2099");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_TRUE(contains(r.out, "--radius 64 finds more than --max-results 2099 results")) << r.out;
  }
  const std::string empty = (d / "empty.hlc").string();
  hc::write_binary_codes(empty, {64, torch::empty({0, 8}, torch::kUInt8)});
  auto r = run("index search " + empty + q + " --k 1");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, empty + ": the index is empty")) << r.out;
  const std::string wide = (d / "wide.hlc").string();
  hc::write_binary_codes(wide, {5000, random_codes(3, 5000, 4)});
  r = run("index search " + wide + " --queries " + wide + " --k 1");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, wide + ": nbits must be in [1, 4096]")) << r.out;
  r = run("index build " + wide + " --out " + (d / "w.hlc").string());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_TRUE(contains(r.out, wide + ": 5000-bit codes")) << r.out;
  fs::remove_all(d);
}

// Two Gloo ranks (each searching half of the index) give exactly the
// one-process result, indices included, through the local launcher (file
// rendezvous) and through torchrun's variables (TCP rendezvous).
TEST(IndexCli, ShardedSearchOnTwoRanksEqualsOneProcess) {
  const fs::path d = fs::temp_directory_path() / ("hl_index_shards_" + std::to_string(::getpid()));
  fs::create_directories(d);
  for (int nbits : {64, 100}) {
    // 100,000 codes drawn from 5,000 distinct ones: heavy ties across shards.
    const std::string idx = (d / ("idx" + std::to_string(nbits) + ".hlc")).string();
    const std::string qs = (d / ("q" + std::to_string(nbits) + ".hlc")).string();
    hc::write_binary_codes(idx, {nbits, random_codes(100000, nbits, nbits, 5000)});
    hc::write_binary_codes(qs, {nbits, random_codes(37, nbits, nbits + 1, 5000)});
    for (int k : {1, 10, 1000}) {
      SCOPED_TRACE(::testing::Message() << "nbits " << nbits << " k " << k);
      const std::string base = "index search " + idx + " --queries " + qs + " --k " +
                               std::to_string(k) + " --threads 1 --out ";
      const fs::path one = d / "one.npy", two = d / "two.npy", tcp = d / "tcp.npy";
      auto r = run(base + one.string());
      ASSERT_EQ(r.code, 0) << r.out;
      r = run(base + two.string() + " --shards 2");
      ASSERT_EQ(r.code, 0) << r.out;
      EXPECT_TRUE(contains(r.out, "rank 1/2: searched codes [50000, 100000)")) << r.out;
      EXPECT_EQ(slurp(two), slurp(one));
      EXPECT_EQ(slurp(d / "two.distances.npy"), slurp(d / "one.distances.npy"));
      if (k == 10) {
        const std::string env = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                                std::to_string(free_port()) + " GLOO_SOCKET_IFNAME=lo ";
        r = hashlab::testing::sh("sh -c '" + env + "RANK=1 " + hashlab::testing::cli() + " " +
                                 base + (d / "unused.npy").string() + " & " + env + "RANK=0 " +
                                 hashlab::testing::cli() + " " + base + tcp.string() +
                                 "; a=$?; wait $!; b=$?; echo rc=$a,$b'");
        EXPECT_TRUE(contains(r.out, "rc=0,0")) << r.out;
        EXPECT_EQ(slurp(tcp), slurp(one));
        EXPECT_FALSE(fs::exists(d / "unused.npy"));  // only rank 0 writes
      }
    }
  }
  // A rank that never comes: the other fails within the timeout, saying so.
  const auto t0 = std::chrono::steady_clock::now();
  auto r = hashlab::testing::sh("HASHLAB_DIST_TIMEOUT=3 RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 "
                                "MASTER_PORT=" + std::to_string(free_port()) + " " +
                                hashlab::testing::cli() + " index search " +
                                (d / "idx64.hlc").string() + " --queries " +
                                (d / "q64.hlc").string() + " --k 5");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "rank 0/2: could not join the job")) << r.out;
  EXPECT_LT(s, 60.0);
  // --radius is refused across ranks, by every rank, before any search.
  r = run("index search " + (d / "idx64.hlc").string() + " --queries " + (d / "q64.hlc").string() +
          " --radius 3 --shards 2");
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.out, "--radius is not sharded")) << r.out;
  EXPECT_TRUE(contains(r.out, "stopping the other ranks")) << r.out;
  fs::remove_all(d);
}

}  // namespace
