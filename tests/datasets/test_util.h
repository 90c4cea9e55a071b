// Helpers for the dataset tests: temp directories, file writing, gzip,
// building small files of every supported format in memory.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <zlib.h>

#include "csrc/core/error.h"

namespace hashlab::data::testing {

using Buf = std::vector<uint8_t>;

// A fresh directory per test, removed at the end.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("hashlab_data_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" +
             std::to_string(std::random_device{}()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::string& path, const Buf& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
inline void write_text(const std::string& path, const std::string& s) {
  write_file(path, Buf(s.begin(), s.end()));
}

inline Buf gzip(const Buf& in) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  Buf out(deflateBound(&zs, in.size()) + 64);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

inline void put_be32(Buf& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}
inline void put_le32(Buf& b, uint32_t v) {
  for (int s = 0; s <= 24; s += 8) b.push_back(static_cast<uint8_t>(v >> s));
}
template <typename T>
inline void put_raw(Buf& b, T v) {
  uint8_t tmp[sizeof(T)];
  std::memcpy(tmp, &v, sizeof(T));
  b.insert(b.end(), tmp, tmp + sizeof(T));
}

// idx file: magic 00 00 type ndims, dims, payload.
inline Buf idx_file(uint8_t type, const std::vector<uint32_t>& dims, const Buf& payload) {
  Buf b = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) put_be32(b, d);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

// u8 images [n, h, w] with pixel (i, y, x) = (i * 7 + y * w + x) % 256.
inline Buf idx_images(uint32_t n, uint32_t h, uint32_t w) {
  Buf p;
  for (uint32_t i = 0; i < n; ++i)
    for (uint32_t k = 0; k < h * w; ++k) p.push_back(static_cast<uint8_t>((i * 7 + k) % 256));
  return idx_file(0x08, {n, h, w}, p);
}
inline Buf idx_labels(const std::vector<uint8_t>& labels) {
  return idx_file(0x08, {static_cast<uint32_t>(labels.size())}, Buf(labels.begin(), labels.end()));
}

// npy v1 (or v2) with the given descr / shape text, padded to 64 bytes.
inline Buf npy_file(const std::string& descr, const std::string& shape, const Buf& payload,
                    bool fortran = false, int version = 1) {
  std::string h = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
                  ", 'shape': " + shape + ", }";
  const size_t pre = version == 1 ? 10 : 12;
  while ((pre + h.size() + 1) % 64 != 0) h += ' ';
  h += '\n';
  Buf b = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(version), 0};
  if (version == 1) {
    b.push_back(static_cast<uint8_t>(h.size() & 0xff));
    b.push_back(static_cast<uint8_t>(h.size() >> 8));
  } else {
    put_le32(b, static_cast<uint32_t>(h.size()));
  }
  b.insert(b.end(), h.begin(), h.end());
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

// Expects `fn` to throw hashlab::Error whose message contains `needle`.
template <typename F>
void expect_error(F&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected an error containing '" << needle << "', got none";
  } catch (const hashlab::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "error was: " << e.what() << "\nexpected to contain: " << needle;
  }
}

}  // namespace hashlab::data::testing
