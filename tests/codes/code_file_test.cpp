// Code files: round trips, every corruption a reader must name, atomic
// writes, and FAISS interop.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include <gtest/gtest.h>

#include "csrc/codes/code_file.h"
#include "csrc/core/error.h"

namespace fs = std::filesystem;
namespace hc = hashlab::codes;

namespace {

class CodeFile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "hl_codefile_XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

hc::BinaryCodes random_binary(int64_t n, int nbits, uint64_t seed) {
  std::mt19937_64 rng(seed);
  hc::BinaryCodes c;
  c.nbits = nbits;
  c.codes = torch::empty({n, (nbits + 7) / 8}, torch::kUInt8);
  for (int64_t i = 0; i < c.codes.numel(); ++i) c.codes.data_ptr<uint8_t>()[i] = rng();
  if (nbits % 8) c.codes.select(1, c.codes.size(1) - 1).bitwise_and_((1 << (nbits % 8)) - 1);
  return c;
}

// Expects `fn` to throw a hashlab::Error whose message contains both parts.
template <typename Fn>
void expect_error(Fn fn, const std::string& part1, const std::string& part2) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning " << part2;
  } catch (const hashlab::Error& e) {
    EXPECT_NE(std::string(e.what()).find(part1), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(part2), std::string::npos) << e.what();
  }
}

void patch_byte(const std::string& p, std::streamoff at, char value) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(at);
  f.put(value);
}

TEST_F(CodeFile, BinaryRoundTrip) {
  for (int nbits : {1, 12, 64, 200}) {
    auto c = random_binary(57, nbits, nbits);
    hc::write_binary_codes(path("b.hlc"), c);
    auto back = hc::read_binary_codes(path("b.hlc"));
    EXPECT_EQ(back.nbits, nbits);
    EXPECT_TRUE(torch::equal(back.codes, c.codes));
    auto info = hc::read_code_file_info(path("b.hlc"));
    EXPECT_EQ(info.kind, hc::CodeKind::binary);
    EXPECT_EQ(info.count, 57);
    EXPECT_EQ(fs::file_size(path("b.hlc")), 64 + c.codes.numel());
    // The mapping is private: writing to the tensor leaves the file alone.
    back.codes.zero_();
    EXPECT_TRUE(torch::equal(hc::read_binary_codes(path("b.hlc")).codes, c.codes));
  }
}

TEST_F(CodeFile, EmptyCodeSet) {
  hc::BinaryCodes c{32, torch::empty({0, 4}, torch::kUInt8)};
  hc::write_binary_codes(path("e.hlc"), c);
  EXPECT_EQ(hc::read_binary_codes(path("e.hlc")).codes.size(0), 0);
}

TEST_F(CodeFile, PQRoundTrip) {
  torch::manual_seed(3);
  hc::PQCodes pq;
  pq.M = 4;
  pq.K = 256;
  pq.dsub = 3;
  pq.codebooks = torch::randn({4, 256, 3});
  pq.ids = torch::randint(256, {41, 4}, torch::kUInt8);
  hc::write_pq_codes(path("p.hlc"), pq);
  auto back = hc::read_pq_codes(path("p.hlc"));
  EXPECT_EQ(back.M, 4);
  EXPECT_EQ(back.K, 256);
  EXPECT_EQ(back.dsub, 3);
  EXPECT_TRUE(torch::equal(back.codebooks, pq.codebooks));
  EXPECT_TRUE(torch::equal(back.ids, pq.ids));
  expect_error([&] { hc::read_binary_codes(path("p.hlc")); }, path("p.hlc"), "PQ");
  pq.K = 16;
  pq.codebooks = torch::randn({4, 16, 3});
  expect_error([&] { hc::write_pq_codes(path("q.hlc"), pq); }, "q.hlc", ">= K");
}

TEST_F(CodeFile, TruncatedFileIsNamed) {
  auto c = random_binary(100, 64, 1);
  hc::write_binary_codes(path("t.hlc"), c);
  fs::resize_file(path("t.hlc"), 64 + 799);
  expect_error([&] { hc::read_binary_codes(path("t.hlc")); }, path("t.hlc"), "truncated");
  fs::resize_file(path("t.hlc"), 10);
  expect_error([&] { hc::read_binary_codes(path("t.hlc")); }, path("t.hlc"), "truncated");
  expect_error([&] { hc::read_binary_codes(path("missing.hlc")); }, path("missing.hlc"),
               "cannot open");
}

TEST_F(CodeFile, BadMagicAndVersion) {
  auto c = random_binary(10, 64, 2);
  hc::write_binary_codes(path("m.hlc"), c);
  patch_byte(path("m.hlc"), 0, 'X');
  expect_error([&] { hc::read_binary_codes(path("m.hlc")); }, path("m.hlc"), "bad magic");
  hc::write_binary_codes(path("v.hlc"), c);
  patch_byte(path("v.hlc"), 8, 9);
  expect_error([&] { hc::read_binary_codes(path("v.hlc")); }, path("v.hlc"), "version 9");
}

TEST_F(CodeFile, BadChecksum) {
  auto c = random_binary(10, 64, 3);
  hc::write_binary_codes(path("c.hlc"), c);
  const uint8_t old = c.codes[4][2].item<uint8_t>();
  patch_byte(path("c.hlc"), 64 + 4 * 8 + 2, static_cast<char>(old ^ 0x10));
  expect_error([&] { hc::read_binary_codes(path("c.hlc")); }, path("c.hlc"), "checksum");
}

TEST_F(CodeFile, AtomicWriteLeavesNoTempAndReplaces) {
  hc::write_binary_codes(path("a.hlc"), random_binary(10, 64, 4));
  auto c = random_binary(20, 64, 5);
  hc::write_binary_codes(path("a.hlc"), c);
  EXPECT_TRUE(torch::equal(hc::read_binary_codes(path("a.hlc")).codes, c.codes));
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir_)) {
    ++entries;
    EXPECT_EQ(e.path().filename(), "a.hlc");
  }
  EXPECT_EQ(entries, 1);
  // A failing write (directory missing) leaves nothing behind either.
  expect_error([&] { hc::write_binary_codes(path("nodir/x.hlc"), c); }, "nodir/x.hlc",
               "cannot create");
}

#ifdef HASHLAB_WITH_FAISS
TEST_F(CodeFile, FaissExportImportRoundTrip) {
  for (int nbits : {8, 128, 136}) {
    auto c = random_binary(500, nbits, nbits);
    hc::export_faiss_binary(path("f.index"), c);
    auto back = hc::import_faiss_binary(path("f.index"));
    EXPECT_EQ(back.nbits, nbits);
    EXPECT_TRUE(torch::equal(back.codes, c.codes));
  }
}

TEST_F(CodeFile, FaissRejectsOddBitsAndForeignFiles) {
  expect_error([&] { hc::export_faiss_binary(path("o.index"), random_binary(5, 12, 8)); },
               "o.index", "multiple of 8");
  hc::write_binary_codes(path("ours.hlc"), random_binary(5, 64, 9));
  expect_error([&] { hc::import_faiss_binary(path("ours.hlc")); }, path("ours.hlc"), "FAISS");
}
#endif

}  // namespace
