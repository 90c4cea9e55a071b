#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "csrc/core/checkpoint.h"
#include "csrc/core/error.h"
#include "csrc/core/fs_util.h"

namespace fs = std::filesystem;

namespace {

fs::path tmp_path(const std::string& name) {
  return fs::temp_directory_path() / ("hl_ckpt_" + std::to_string(::getpid()) + "_" + name);
}

std::string error_of(const std::string& path) {
  try {
    torch::serialize::InputArchive a;
    hashlab::read_checkpoint(path, a);
  } catch (const hashlab::Error& e) {
    return e.what();
  }
  return "";
}

TEST(Checkpoint, RoundTripTensorsAndScalars) {
  auto p = tmp_path("rt.pt").string();
  torch::serialize::OutputArchive a;
  auto w = torch::randn({7, 3});
  a.write("w", w);
  hashlab::archive_write(a, "step", int64_t{1234});
  hashlab::archive_write(a, "name", std::string("hashnet"));
  hashlab::archive_write(a, "beta", 2.5);
  hashlab::write_checkpoint(p, a);
  torch::serialize::InputArchive b;
  hashlab::read_checkpoint(p, b);
  torch::Tensor w2;
  b.read("w", w2);
  EXPECT_TRUE(torch::equal(w, w2));
  EXPECT_EQ(hashlab::archive_read_int(b, "step"), 1234);
  EXPECT_EQ(hashlab::archive_read_string(b, "name"), "hashnet");
  EXPECT_DOUBLE_EQ(hashlab::archive_read_double(b, "beta"), 2.5);
  // No temp file is left beside it.
  for (const auto& e : fs::directory_iterator(fs::path(p).parent_path()))
    EXPECT_EQ(e.path().string().find(p + ".tmp"), std::string::npos);
  fs::remove(p);
}

TEST(Checkpoint, TruncatedCorruptedAndForeignFilesAreRejected) {
  auto p = tmp_path("bad.pt").string();
  torch::serialize::OutputArchive a;
  a.write("w", torch::randn({100}));
  hashlab::write_checkpoint(p, a);
  std::string good = hashlab::read_file(p);

  hashlab::atomic_write(p, good.substr(0, good.size() - 10));
  EXPECT_NE(error_of(p).find("truncated"), std::string::npos) << error_of(p);

  hashlab::atomic_write(p, good.substr(0, 12));
  EXPECT_NE(error_of(p).find("shorter than the 32-byte header"), std::string::npos);

  std::string flipped = good;
  flipped[flipped.size() - 5] ^= 0x40;
  hashlab::atomic_write(p, flipped);
  EXPECT_NE(error_of(p).find("crc32 mismatch"), std::string::npos) << error_of(p);

  std::string hdr = good;
  hdr[9] ^= 1;  // version field, header crc now wrong
  hashlab::atomic_write(p, hdr);
  EXPECT_NE(error_of(p).find("header is corrupted"), std::string::npos);

  hashlab::atomic_write(p, "PK\x03\x04 this is a zip, not ours ......................");
  EXPECT_NE(error_of(p).find("not a hashlab checkpoint"), std::string::npos);
  EXPECT_NE(error_of(p).find(p), std::string::npos);

  EXPECT_NE(error_of(p + ".missing").find("cannot open"), std::string::npos);
  fs::remove(p);
}

}  // namespace
