// BinaryIndex (csrc/search/binary_index.h): search and range search equal a
// brute-force reference for every CPU kernel and thread count; save/load and
// memory-mapped load (with and without dropping scanned pages) give identical
// results; add() in pieces equals one index over all codes; bad arguments are
// named.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "csrc/codes/code_file.h"
#include "csrc/core/error.h"
#include "csrc/search/binary_index.h"
#include "tests/util/codes_util.h"

namespace fs = std::filesystem;
namespace hs = hashlab::search;
using hashlab::testing::random_codes;
using hashlab::testing::ref_ranking;

namespace {

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("hl_index_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

void expect_same(const hs::TopK& a, const hs::TopK& b) {
  EXPECT_TRUE(torch::equal(a.distances, b.distances));
  EXPECT_TRUE(torch::equal(a.indices, b.indices));
}

// Top-k of the reference: the first k of (distance, index) order.
void expect_topk_is_reference(const hs::TopK& r,
                              const std::vector<std::vector<std::pair<int, int64_t>>>& ref,
                              int64_t k) {
  auto d = r.distances.accessor<int32_t, 2>();
  auto i = r.indices.accessor<int64_t, 2>();
  for (size_t q = 0; q < ref.size(); ++q)
    for (int64_t j = 0; j < k; ++j) {
      ASSERT_EQ(d[q][j], ref[q][j].first) << "query " << q << " rank " << j;
      ASSERT_EQ(i[q][j], ref[q][j].second) << "query " << q << " rank " << j;
    }
}

class BinaryIndexKernels : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { hs::set_cpu_kernel(GetParam()); }
  void TearDown() override { hs::set_cpu_kernel("auto"); }
};

TEST_P(BinaryIndexKernels, SearchAndRangeSearchEqualBruteForce) {
  uint64_t seed = 11;
  for (int nbits : {7, 16, 64, 100, 128, 256}) {
    for (int distinct : {0, 9}) {
      // 2,053 codes: many L1 chunks at short codes, a partial last block.
      auto db = random_codes(2053, nbits, seed++, distinct);
      auto q = random_codes(45, nbits, seed++, distinct);
      const auto ref = ref_ranking(q, db, nbits);
      const auto index = hs::BinaryIndex::from_codes(db, nbits);
      for (int threads : {1, 2, 3}) {
        SCOPED_TRACE(::testing::Message() << "nbits " << nbits << " distinct " << distinct
                                          << " threads " << threads);
        for (int64_t k : {int64_t{1}, int64_t{10}, int64_t{1000}, db.size(0)})
          expect_topk_is_reference(index.search(q, k, threads), ref, k);
        for (int radius : {0, 3, nbits / 2, nbits}) {
          const auto r = index.range_search(q, radius, threads);
          auto off = r.offsets.accessor<int64_t, 1>();
          auto idx = r.indices.accessor<int64_t, 1>();
          auto dist = r.distances.accessor<int32_t, 1>();
          for (size_t i = 0; i < ref.size(); ++i) {
            // The brute-force filter: every code within the radius, in order.
            std::vector<std::pair<int, int64_t>> want;
            for (const auto& p : ref[i])
              if (p.first <= radius) want.push_back(p);
            ASSERT_EQ(off[i + 1] - off[i], static_cast<int64_t>(want.size())) << "radius " << radius;
            for (size_t j = 0; j < want.size(); ++j) {
              ASSERT_EQ(dist[off[i] + j], want[j].first);
              ASSERT_EQ(idx[off[i] + j], want[j].second);
            }
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllKernels, BinaryIndexKernels,
                         ::testing::ValuesIn(hs::available_cpu_kernels()),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return s;
                         });

TEST(BinaryIndex, SaveLoadAndMemoryMappedLoadGiveIdenticalResults) {
  const fs::path dir = temp_dir();
  uint64_t seed = 3;
  for (int nbits : {12, 64, 100}) {
    SCOPED_TRACE(nbits);
    auto db = random_codes(10007, nbits, seed++, 300);
    auto q = random_codes(31, nbits, seed++);
    // Built by add() in three pieces: the same as one index over all codes.
    hs::BinaryIndex built(nbits);
    built.add(db.narrow(0, 0, 1));
    built.add(db.narrow(0, 1, 5000));
    built.add(db.narrow(0, 5001, db.size(0) - 5001));
    ASSERT_EQ(built.size(), db.size(0));
    EXPECT_TRUE(torch::equal(built.codes(), db));
    const auto whole = hs::BinaryIndex::from_codes(db, nbits);
    const auto want = whole.search(q, 50);
    expect_same(built.search(q, 50), want);

    const std::string path = (dir / ("idx" + std::to_string(nbits) + ".hlc")).string();
    built.save(path);
    // The index file is a code file: any code-file reader reads it.
    EXPECT_TRUE(torch::equal(hashlab::codes::read_binary_codes(path).codes, db));
    auto mapped = hs::BinaryIndex::load(path);
    EXPECT_TRUE(mapped.mapped());
    EXPECT_EQ(mapped.nbits(), nbits);
    expect_same(mapped.search(q, 50), want);
    hs::BinaryIndex::LoadOptions in_memory;
    in_memory.mmap = false;
    auto read = hs::BinaryIndex::load(path, in_memory);
    EXPECT_FALSE(read.mapped());
    expect_same(read.search(q, 50), want);
    // Out of core: no checksum pass, scanned pages dropped as the search
    // goes; a second search reads them back and is still exact.
    hs::BinaryIndex::LoadOptions out_of_core;
    out_of_core.verify_checksum = false;
    out_of_core.release_pages = true;
    auto ooc = hs::BinaryIndex::load(path, out_of_core);
    for (int rep = 0; rep < 2; ++rep) expect_same(ooc.search(q, 50, 2), want);
    const auto r1 = ooc.range_search(q, 3), r2 = whole.range_search(q, 3);
    EXPECT_TRUE(torch::equal(r1.offsets, r2.offsets));
    EXPECT_TRUE(torch::equal(r1.indices, r2.indices));
    // Adding to a mapped index copies it first; the file is untouched.
    mapped.add(q);
    EXPECT_FALSE(mapped.mapped());
    EXPECT_EQ(mapped.size(), db.size(0) + q.size(0));
    EXPECT_TRUE(torch::equal(hashlab::codes::read_binary_codes(path).codes, db));
    auto self = mapped.search(q, 1);
    for (int64_t i = 0; i < q.size(0); ++i) EXPECT_EQ(self.distances[i][0].item<int>(), 0);
  }
  fs::remove_all(dir);
}

TEST(BinaryIndex, BadArgumentsAndFilesAreNamed) {
  auto db = random_codes(100, 64, 1);
  auto index = hs::BinaryIndex::from_codes(db, 64);
  auto msg = [](auto&& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(msg([&] { index.search(random_codes(3, 32, 2), 5); }).find("4 bytes per code"),
            std::string::npos);
  EXPECT_NE(msg([&] { index.search(random_codes(3, 64, 2), 0); }).find("k must be in [1, 100]"),
            std::string::npos);
  EXPECT_NE(msg([&] { index.search(random_codes(3, 64, 2), 101); }).find("got 101"),
            std::string::npos);
  EXPECT_NE(msg([&] { index.range_search(random_codes(3, 64, 2), -1); }).find("radius must be >= 0"),
            std::string::npos);
  EXPECT_NE(msg([&] { index.add(random_codes(3, 16, 2)); }).find("uint8 [m, 8]"), std::string::npos);
  EXPECT_NE(msg([] { hs::BinaryIndex bad(0); }).find("nbits must be in [1, 4096]"),
            std::string::npos);
  // An empty index says so (not "k must be in [1, 0]").
  hs::BinaryIndex empty(64);
  EXPECT_NE(msg([&] { empty.search(random_codes(3, 64, 2), 1); }).find("the index is empty"),
            std::string::npos);
  const fs::path dir = temp_dir();
  EXPECT_NE(msg([&] { hs::BinaryIndex::load((dir / "missing.hlc").string()); }).find("missing.hlc"),
            std::string::npos);
  std::ofstream(dir / "junk.hlc") << std::string(200, 'x');
  EXPECT_NE(msg([&] { hs::BinaryIndex::load((dir / "junk.hlc").string()); }).find("bad magic"),
            std::string::npos);
  hashlab::codes::PQCodes pq{2, 4, 3, torch::zeros({2, 4, 3}), torch::zeros({5, 2}, torch::kUInt8)};
  hashlab::codes::write_pq_codes((dir / "pq.hlc").string(), pq);
  EXPECT_NE(msg([&] { hs::BinaryIndex::load((dir / "pq.hlc").string()); }).find("holds PQ codes"),
            std::string::npos);
  // A code file too wide for an index is named.
  const std::string wide = (dir / "wide.hlc").string();
  hashlab::codes::write_binary_codes(wide, {5000, random_codes(3, 5000, 3)});
  EXPECT_NE(msg([&] { hs::BinaryIndex::load(wide); }).find("BinaryIndex " + wide + ": nbits must be in [1, 4096]"),
            std::string::npos)
      << msg([&] { hs::BinaryIndex::load(wide); });
  fs::remove_all(dir);
}

// A mapped index whose file is truncated, or rewritten in place as `cp`
// does, after load (the moment a concurrent writer would hit) fails its next
// search with an error naming the file, never SIGBUS; a file replaced by
// rename (every hashlab writer) leaves the mapping searching the old codes.
TEST(BinaryIndex, AMappedFileChangedOnDiskIsAnErrorNamingItNotASignal) {
  const fs::path dir = temp_dir();
  const std::string path = (dir / "changing.hlc").string();
  const auto db = random_codes(20000, 64, 5), other = random_codes(20000, 64, 6);
  const auto q = random_codes(9, 64, 7);
  const auto want = hs::BinaryIndex::from_codes(db, 64).search(q, 4);
  auto expect_changed = [&](auto&& fn, const char* what) {
    try {
      fn();
      ADD_FAILURE() << what << ": no error";
    } catch (const hashlab::Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(path), std::string::npos) << what << ": " << m;
      EXPECT_NE(m.find("changed on disk"), std::string::npos) << what << ": " << m;
    }
  };
  for (const char* change : {"truncate", "rewrite in place"}) {
    SCOPED_TRACE(change);
    hashlab::codes::write_binary_codes(path, {64, db});
    // An index built a while ago (file times tick coarsely: a rewrite within
    // the same tick as the last write keeps the time; see mapped_file.h).
    fs::last_write_time(path, fs::file_time_type::clock::now() - std::chrono::hours(1));
    const auto index = hs::BinaryIndex::load(path);  // mapped, checksum read
    const auto in_memory = hs::BinaryIndex::load(path, {/*mmap=*/false, true, false});
    if (std::string(change) == "truncate") {
      fs::resize_file(path, 64 + 8 * 100);  // the pages past it are gone
    } else {
      hashlab::codes::write_binary_codes((dir / "other.hlc").string(), {64, other});
      fs::copy_file(dir / "other.hlc", path, fs::copy_options::overwrite_existing);  // as cp
    }
    expect_changed([&] { index.search(q, 4); }, "search");
    expect_changed([&] { index.range_search(q, 20); }, "range_search");
    expect_changed([&] { index.shard(0, 10000).search(q, 4); }, "a shard's search");
    // What was read into memory is a consistent copy.
    expect_same(in_memory.search(q, 4), want);
  }
  // Replaced by rename: the mapping keeps the old inode, and its codes.
  hashlab::codes::write_binary_codes(path, {64, db});
  const auto index = hs::BinaryIndex::load(path);
  hashlab::codes::write_binary_codes(path, {64, other});
  expect_same(index.search(q, 4), want);
  fs::remove_all(dir);
}

// A range search holds at most max_results results (all queries together)
// and says so past it, instead of growing without bound.
TEST(BinaryIndex, RangeSearchResultsAreBounded) {
  const auto db = random_codes(3000, 64, 8), q = random_codes(70, 64, 9);
  const auto index = hs::BinaryIndex::from_codes(db, 64);
  for (int threads : {1, 3}) {
    // Radius 64: every code of every query, 70 x 3000 = 210,000 results.
    EXPECT_EQ(index.range_search(q, 64, threads, 210000).indices.size(0), 210000);
    try {
      index.range_search(q, 64, threads, 209999);
      ADD_FAILURE() << "no error";
    } catch (const hs::RadiusLimitExceeded& e) {
      EXPECT_NE(std::string(e.what()).find("more than 209999 results within radius 64"),
                std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("max_results"), std::string::npos) << e.what();
    }
    EXPECT_THROW(hs::hamming_radius(q, db, 64, 64, threads, 1000), hs::RadiusLimitExceeded);
  }
}

TEST(BinaryIndex, CudaEqualsCpu_CUDA) {
  HL_REQUIRE_GPU();
  uint64_t seed = 21;
  for (int nbits : {12, 64, 100, 256}) {
    SCOPED_TRACE(nbits);
    auto db = random_codes(50003, nbits, seed++, 700);
    auto q = random_codes(77, nbits, seed++);
    const auto cpu = hs::BinaryIndex::from_codes(db, nbits);
    const auto gpu = cpu.to(torch::Device(torch::kCUDA, 0));
    EXPECT_EQ(gpu.device().type(), torch::kCUDA);
    const auto qg = q.to(gpu.device());
    for (int64_t k : {int64_t{1}, int64_t{100}, int64_t{3000}}) {
      const auto a = cpu.search(q, k), b = gpu.search(qg, k);
      EXPECT_TRUE(torch::equal(a.distances, b.distances.cpu()));
      EXPECT_TRUE(torch::equal(a.indices, b.indices.cpu()));
    }
    const auto a = cpu.range_search(q, nbits / 4), b = gpu.range_search(qg, nbits / 4);
    EXPECT_TRUE(torch::equal(a.offsets, b.offsets.cpu()));
    EXPECT_TRUE(torch::equal(a.indices, b.indices.cpu()));
    EXPECT_TRUE(torch::equal(a.distances, b.distances.cpu()));
    // add() on the GPU index keeps it there and equals the CPU one.
    auto more = gpu;
    more.add(q.to(gpu.device()));
    EXPECT_EQ(more.device().type(), torch::kCUDA);
    auto c = cpu;
    c.add(q);
    EXPECT_TRUE(torch::equal(c.search(q, 5).indices, more.search(qg, 5).indices.cpu()));
  }
}

}  // namespace
