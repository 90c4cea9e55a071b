// Readers on generated good files and tables of malformed ones; each
// malformed case expects its own error text.
#include <gtest/gtest.h>

#include <cmath>

#include "datasets/readers/cifar.h"
#include "datasets/readers/idx.h"
#include "datasets/readers/image_list.h"
#include "datasets/readers/npy.h"
#include "datasets/readers/vecs.h"
#include "tests/datasets/test_util.h"

namespace hashlab::data {
namespace {

using namespace hashlab::data::testing;

Buf cut(const Buf& b, size_t n) { return Buf(b.begin(), b.begin() + n); }
Buf cat(Buf a, const Buf& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// ---------------------------------------------------------------- gzip

TEST(Gzip, DetectedByContentAndRoundTrips) {
  Buf raw = idx_images(3, 4, 5);
  Bytes plain = maybe_gunzip(raw.data(), raw.size(), "x");
  EXPECT_FALSE(plain.gunzipped);
  EXPECT_EQ(plain.data, raw.data());
  Buf gz = gzip(raw);
  Bytes un = maybe_gunzip(gz.data(), gz.size(), "x");
  EXPECT_TRUE(un.gunzipped);
  EXPECT_EQ(Buf(un.data, un.data + un.size), raw);
}

TEST(Gzip, ConcatenatedMembersAreDecodedInOrder) {
  Buf a(1000, 1), b(3000, 2);
  Buf gz = cat(gzip(a), gzip(b));
  Bytes un = maybe_gunzip(gz.data(), gz.size(), "x");
  EXPECT_EQ(Buf(un.data, un.data + un.size), cat(a, b));
}

TEST(Gzip, MalformedStreams) {
  Buf raw(100000, 7);
  Buf gz = gzip(raw);
  expect_error([&] { maybe_gunzip(gz.data(), gz.size() / 2, "half.gz"); },
               "half.gz: truncated gzip stream");
  Buf trailing = cat(gz, Buf{'x', 'y', 'z'});
  expect_error([&] { maybe_gunzip(trailing.data(), trailing.size(), "t.gz"); },
               "t.gz: 3 bytes of trailing data after the gzip stream");
  Buf corrupt = gz;
  for (size_t i = 12; i < 40 && i < corrupt.size(); ++i) corrupt[i] ^= 0x5a;
  expect_error([&] { maybe_gunzip(corrupt.data(), corrupt.size(), "c.gz"); },
               "c.gz: corrupt gzip data");
}

TEST(Gzip, BombStopsAtTheCap) {
  Buf zeros(8u << 20, 0);  // 8 MiB of zeros compress to ~8 KiB
  Buf gz = gzip(zeros);
  ASSERT_LT(gz.size(), 64u << 10);
  expect_error([&] { maybe_gunzip(gz.data(), gz.size(), "bomb.gz", 1u << 20); },
               "bomb.gz: gunzipped data exceeds the limit of 1048576 bytes");
}

// ---------------------------------------------------------------- idx

TEST(Idx, ReadsImagesAndLabelsPlainAndGzip) {
  TempDir dir;
  Buf images = idx_images(3, 4, 5);
  write_file(dir.file("img"), images);
  write_file(dir.file("img.gz"), gzip(images));
  write_file(dir.file("lab-no-suffix"), gzip(idx_labels({1, 0, 9})));
  for (const char* f : {"img", "img.gz"}) {
    Array a = read_idx(dir.file(f));
    EXPECT_EQ(a.dtype, Array::DType::u8);
    EXPECT_EQ(a.shape, (std::vector<int64_t>{3, 4, 5}));
    ASSERT_EQ(a.bytes.size(), 60u);
    EXPECT_EQ(a.bytes[0], 0);
    EXPECT_EQ(a.bytes[20 + 3], (1 * 7 + 3) % 256);
    EXPECT_EQ(a.bytes[59], (2 * 7 + 19) % 256);
  }
  Array l = read_idx(dir.file("lab-no-suffix"));  // gzip found by magic, not by name
  EXPECT_EQ(l.shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(l.bytes, (Buf{1, 0, 9}));
}

TEST(Idx, ConvertsBigEndianInt32AndFloat32) {
  Buf p;
  put_be32(p, static_cast<uint32_t>(-5));
  put_be32(p, 70000);
  Array i = parse_idx(idx_file(0x0C, {2}, p).data(), idx_file(0x0C, {2}, p).size(), "i");
  EXPECT_EQ(i.dtype, Array::DType::i32);
  EXPECT_EQ(i.data<int32_t>()[0], -5);
  EXPECT_EQ(i.data<int32_t>()[1], 70000);
  Buf q;
  float v = 1.5f;
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  put_be32(q, bits);
  Buf f = idx_file(0x0D, {1, 1}, q);
  Array a = parse_idx(f.data(), f.size(), "f");
  EXPECT_EQ(a.dtype, Array::DType::f32);
  EXPECT_EQ(a.data<float>()[0], 1.5f);
}

TEST(Idx, MalformedFiles) {
  const Buf good = idx_images(3, 4, 5);  // 16 + 60 = 76 bytes
  struct Case {
    const char* what;
    Buf data;
    std::string error;
  };
  Buf bad_magic = good;
  bad_magic[0] = 0x12;
  Buf huge = idx_file(0x08, {1000000, 1000000, 1000000}, {});
  Buf overflow = idx_file(0x0C, {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}, {});
  std::vector<Case> cases = {
      {"truncated", cut(good, 50),
       "img: truncated: header says 3 images of 4x5 (76 bytes), file has 50 bytes"},
      {"truncated gzip payload", gzip(cut(good, 50)),
       "img: truncated: header says 3 images of 4x5 (76 bytes), file has 50 bytes (after gunzip)"},
      {"trailing garbage", cat(good, Buf{1, 2, 3}),
       "img: trailing garbage: header says 3 images of 4x5 (76 bytes), file has 79 bytes (3 "
       "extra)"},
      {"bad magic", bad_magic, "img: offset 0: bad magic 0x12000803"},
      {"unknown type", idx_file(0x07, {1}, {0}), "unknown idx element type 0x07"},
      {"float64", idx_file(0x0E, {1}, Buf(8, 0)), "0x0E (float64) is not supported"},
      {"zero dims", Buf{0, 0, 8, 0}, "idx file with 0 dimensions"},
      {"short header", cut(good, 9),
       "img: truncated: the header of 3 dimensions needs 16 bytes, file has 9 bytes"},
      {"too short for magic", Buf{0, 0}, "too short for the 4-byte idx magic"},
      {"10^18 items", huge,
       "img: header says 1000000 images of 1000000x1000000 (1000000000000000016 bytes), more "
       "than the limit"},
      {"overflow", overflow, "img: header dimensions: size overflows 64 bits"},
      {"labels truncated", cut(idx_labels({1, 2, 3}), 10),
       "header says 3 labels (11 bytes), file has 10 bytes"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    expect_error([&] { parse_idx(c.data.data(), c.data.size(), "img"); }, c.error);
  }
}

// ---------------------------------------------------------------- CIFAR

Buf cifar_records(const std::vector<std::vector<uint8_t>>& labels) {
  Buf b;
  for (size_t i = 0; i < labels.size(); ++i) {
    b.insert(b.end(), labels[i].begin(), labels[i].end());
    for (int k = 0; k < 3072; ++k) b.push_back(static_cast<uint8_t>((i + k) % 251));
  }
  return b;
}

TEST(Cifar, ReadsCifar10And100) {
  Buf c10 = cifar_records({{3}, {9}, {0}});
  CifarData a = parse_cifar(c10.data(), c10.size(), "c10", CifarKind::cifar10);
  EXPECT_EQ(a.images.shape, (std::vector<int64_t>{3, 3, 32, 32}));
  EXPECT_EQ(a.labels.shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(a.labels.data<int64_t>()[1], 9);
  EXPECT_EQ(a.images.bytes[3072 + 5], (1 + 5) % 251);
  EXPECT_TRUE(a.coarse_labels.shape.empty());

  TempDir dir;
  write_file(dir.file("train.bin"), gzip(cifar_records({{19, 99}, {0, 42}})));
  CifarData b = read_cifar(dir.file("train.bin"), CifarKind::cifar100);
  EXPECT_EQ(b.images.shape[0], 2);
  EXPECT_EQ(b.labels.data<int64_t>()[0], 99);
  EXPECT_EQ(b.labels.data<int64_t>()[1], 42);
  EXPECT_EQ(b.coarse_labels.data<int64_t>()[0], 19);
  EXPECT_EQ(b.images.bytes[3071], 3071 % 251);
}

TEST(Cifar, MalformedFiles) {
  struct Case {
    const char* what;
    Buf data;
    CifarKind kind;
    std::string error;
  };
  std::vector<Case> cases = {
      {"label 10", cifar_records({{1}, {10}}), CifarKind::cifar10,
       "c: record 1 (offset 3073): label 10 out of range 0..9"},
      {"fine 100", cifar_records({{0, 100}}), CifarKind::cifar100,
       "c: record 0 (offset 1): fine label 100 out of range 0..99"},
      {"coarse 20", cifar_records({{5, 5}, {20, 1}}), CifarKind::cifar100,
       "c: record 1 (offset 3074): coarse label 20 out of range 0..19"},
      {"truncated", cut(cifar_records({{1}, {2}}), 5000), CifarKind::cifar10,
       "c: file has 5000 bytes, not a multiple of the CIFAR-10 record size 3073 (1 whole records "
       "and 1927 bytes left over)"},
      {"cifar100 read as cifar10", cifar_records({{1, 2}}), CifarKind::cifar10,
       "not a multiple of the CIFAR-10 record size 3073"},
      {"empty", Buf{}, CifarKind::cifar100, "c: empty file: no CIFAR-100 records"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    expect_error([&] { parse_cifar(c.data.data(), c.data.size(), "c", c.kind); }, c.error);
  }
}

// ---------------------------------------------------------------- vecs

Buf fvecs(const std::vector<std::vector<float>>& rows) {
  Buf b;
  for (const auto& r : rows) {
    put_le32(b, static_cast<uint32_t>(r.size()));
    for (float v : r) put_raw(b, v);
  }
  return b;
}

TEST(Vecs, ReadsFvecsBvecsIvecs) {
  Buf f = fvecs({{1.f, 2.f, 3.f}, {-4.f, 5.5f, 6.f}});
  Array a = parse_vecs(f.data(), f.size(), "a.fvecs", VecsKind::fvecs);
  EXPECT_EQ(a.dtype, Array::DType::f32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.data<float>()[4], 5.5f);

  Buf b;
  for (int r = 0; r < 3; ++r) {
    put_le32(b, 2);
    b.push_back(static_cast<uint8_t>(r));
    b.push_back(static_cast<uint8_t>(200 + r));
  }
  TempDir dir;
  write_file(dir.file("b.bvecs.gz"), gzip(b));
  Array bv = read_vecs(dir.file("b.bvecs.gz"), VecsKind::bvecs);
  EXPECT_EQ(bv.dtype, Array::DType::u8);
  EXPECT_EQ(bv.shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(bv.bytes, (Buf{0, 200, 1, 201, 2, 202}));

  Buf i;
  put_le32(i, 1);
  put_le32(i, 123456);
  Array iv = parse_vecs(i.data(), i.size(), "gt.ivecs", VecsKind::ivecs);
  EXPECT_EQ(iv.dtype, Array::DType::i32);
  EXPECT_EQ(iv.data<int32_t>()[0], 123456);
}

TEST(Vecs, MalformedFiles) {
  Buf mixed = fvecs({{1.f, 2.f, 3.f}, {4.f, 5.f}, {6.f, 7.f, 8.f, 9.f}});  // 16 + 12 + 20 = 48
  Buf mixed_same_size = fvecs({{1.f, 2.f}, {3.f, 4.f}});
  mixed_same_size[12] = 1;  // second record now claims dimension 1 (size still a multiple)
  Buf zero;
  put_le32(zero, 0);
  Buf negative;
  put_le32(negative, static_cast<uint32_t>(-3));
  Buf huge;
  put_le32(huge, 0x7fffffff);
  struct Case {
    const char* what;
    Buf data;
    std::string error;
  };
  std::vector<Case> cases = {
      {"truncated", cut(fvecs({{1.f, 2.f}, {3.f, 4.f}}), 20),
       "v: file has 20 bytes, not a multiple of the record size 12 (4 + 2 x 4) for dimension 2"},
      {"dim mismatch", mixed_same_size,
       "v: record 1 (offset 12): dimension 1 differs from the first record's 2"},
      {"mixed dims", mixed, "v: record 1 (offset 16): dimension 2 differs from the first record's 3"},
      {"zero dim", zero, "v: offset 0: bad fvecs dimension 0 (expected 1..1048576)"},
      {"negative dim", negative, "v: offset 0: bad fvecs dimension -3"},
      {"huge dim", huge, "bad fvecs dimension 2147483647"},
      {"short", Buf{1, 0}, "v: truncated: 2 bytes, too short for the 4-byte dimension header"},
      {"empty", Buf{}, "v: empty file: no fvecs records"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    expect_error([&] { parse_vecs(c.data.data(), c.data.size(), "v", VecsKind::fvecs); },
                 c.error);
  }
}

// ---------------------------------------------------------------- npy

TEST(Npy, ReadsV1AndV2) {
  Buf p;
  for (float v : {0.5f, -1.f, 2.f, 3.f, 4.f, 5.f}) put_raw(p, v);
  Buf f = npy_file("<f4", "(2, 3)", p);
  Array a = parse_npy(f.data(), f.size(), "a.npy");
  EXPECT_EQ(a.dtype, Array::DType::f32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.data<float>()[1], -1.f);

  Buf l;
  for (int64_t v : {int64_t{7}, int64_t{-2}, int64_t{1000000000000}}) put_raw(l, v);
  TempDir dir;
  write_file(dir.file("l.npy.gz"), gzip(npy_file("<i8", "(3,)", l, false, 2)));
  Array b = read_npy(dir.file("l.npy.gz"));
  EXPECT_EQ(b.dtype, Array::DType::i64);
  EXPECT_EQ(b.shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(b.data<int64_t>()[2], 1000000000000);

  Buf u = npy_file("|u1", "(2, 1, 2, 2)", Buf{1, 2, 3, 4, 5, 6, 7, 8});
  Array c = parse_npy(u.data(), u.size(), "u.npy");
  EXPECT_EQ(c.dtype, Array::DType::u8);
  EXPECT_EQ(c.shape, (std::vector<int64_t>{2, 1, 2, 2}));

  Buf s;
  put_raw(s, int32_t{-9});
  Buf sc = npy_file("<i4", "()", s);
  Array d = parse_npy(sc.data(), sc.size(), "s.npy");
  EXPECT_TRUE(d.shape.empty());
  EXPECT_EQ(d.data<int32_t>()[0], -9);
}

TEST(Npy, MalformedFiles) {
  Buf p(24, 0);
  Buf good = npy_file("<f4", "(2, 3)", p);
  Buf bad_magic = good;
  bad_magic[1] = 'X';
  Buf bad_version = good;
  bad_version[6] = 4;
  Buf long_header = good;
  long_header[8] = 0xff;
  long_header[9] = 0x7f;
  auto with_header = [](const std::string& h) {
    Buf b = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<uint8_t>(h.size()), 0};
    b.insert(b.end(), h.begin(), h.end());
    return b;
  };
  struct Case {
    const char* what;
    Buf data;
    std::string error;
  };
  std::vector<Case> cases = {
      {"fortran", npy_file("<f4", "(2, 3)", p, true), "n: fortran_order arrays are not supported"},
      {"big-endian", npy_file(">f4", "(2, 3)", p), "n: big-endian dtype '>f4' is not supported"},
      {"object", npy_file("|O", "(3,)", p), "n: object dtype '|O' is not supported"},
      {"float64", npy_file("<f8", "(3,)", p), "n: dtype '<f8' is not supported"},
      {"bad magic", bad_magic, "n: offset 0: bad magic"},
      {"version", bad_version, "n: offset 6: unsupported npy format version 4.0"},
      {"truncated data", cut(good, good.size() - 4),
       "n: truncated: shape (2,3) of <f4 needs 24 data bytes at offset 128, file has 20"},
      {"trailing garbage", cat(good, Buf{0}),
       "n: trailing garbage: shape (2,3) of <f4 needs 24 data bytes at offset 128, file has 25 "
       "(1 extra)"},
      {"header longer than file", long_header, "n: truncated: npy header claims 32767 bytes"},
      {"missing shape", with_header("{'descr': '<f4', 'fortran_order': False}\n"),
       "missing key 'shape'"},
      {"unknown key", with_header("{'descr': '<f4', 'x': 1}\n"), "unexpected key 'x'"},
      {"duplicate key", with_header("{'descr': '<f4', 'descr': '<f4'}\n"),
       "duplicate key 'descr'"},
      {"bad shape", with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}\n"),
       "n: offset 61: bad npy header: expected a dimension (non-negative integer)"},
      {"unterminated", with_header("{'descr': '<f4"), "unterminated string"},
      {"huge shape",
       npy_file("<f4", "(4611686018427387904, 4611686018427387904)", {}),
       "n: npy shape: size overflows 64 bits"},
      {"short", Buf{0x93, 'N'}, "n: truncated: 2 bytes, too short for an npy preamble"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    expect_error([&] { parse_npy(c.data.data(), c.data.size(), "n"); }, c.error);
  }
}

// ---------------------------------------------------------------- image lists

TEST(ImageList, SingleLabelWithCrlfAndBlankLines) {
  TempDir dir;
  std::string text = "a/1.jpg 3\r\n\r\nb/2.jpg 0\r\n   \nc.png 12\n";
  ImageList l = parse_image_list(reinterpret_cast<const uint8_t*>(text.data()), text.size(), "l",
                                 dir.path().string());
  ASSERT_EQ(l.paths.size(), 3u);
  EXPECT_FALSE(l.multi_label);
  EXPECT_EQ(l.num_classes, 13);
  auto root = std::filesystem::weakly_canonical(dir.path());
  EXPECT_EQ(l.paths[0], (root / "a/1.jpg").string());
  EXPECT_EQ(l.paths[2], (root / "c.png").string());
  EXPECT_EQ(l.labels.shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(l.labels.data<int64_t>()[2], 12);
}

TEST(ImageList, MultiHotFromFileInsideRoot) {
  TempDir dir;
  std::string abs_inside = (dir.path() / "x" / "img.jpg").string();
  write_text(dir.file("list.txt"), "p/1.jpg 0 1 1 0\n" + abs_inside + " 1 0 0 0\n./p/../q.jpg 0 0 0 0\n");
  ImageList l = read_image_list(dir.file("list.txt"), dir.path().string());
  EXPECT_TRUE(l.multi_label);
  EXPECT_EQ(l.num_classes, 4);
  EXPECT_EQ(l.labels.dtype, Array::DType::u8);
  EXPECT_EQ(l.labels.shape, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(l.labels.bytes, (Buf{0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0}));
  auto root = std::filesystem::weakly_canonical(dir.path());
  EXPECT_EQ(l.paths[2], (root / "q.jpg").string());
}

TEST(ImageList, MalformedLists) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "root" / "sub");
  std::filesystem::create_directories(dir.path() / "outside");
  std::filesystem::create_directory_symlink(dir.path() / "outside", dir.path() / "root" / "link");
  const std::string root = (dir.path() / "root").string();
  struct Case {
    const char* what;
    std::string text;
    std::string error;
  };
  std::vector<Case> cases = {
      {"dot-dot escape", "ok.jpg 1\n../secret.jpg 2\n",
       "l: line 2: path '../secret.jpg' escapes the root"},
      {"deep dot-dot escape", "sub/../../x.jpg 1\n", "l: line 1: path 'sub/../../x.jpg' escapes"},
      {"absolute path outside root", "/etc/passwd 1\n", "l: line 1: path '/etc/passwd' escapes"},
      {"symlink escape", "link/x.jpg 1\n", "l: line 1: path 'link/x.jpg' escapes the root"},
      {"negative label", "a.jpg -1\n", "l: line 1: label '-1' is not a non-negative integer"},
      {"label not a number", "a.jpg cat\r\n", "l: line 1: label 'cat' is not a non-negative"},
      {"label too large", "a.jpg 99999999999\n", "l: line 1: label 99999999999 out of range"},
      {"bad multi-hot", "a.jpg 0 1\nb.jpg 0 2\n", "l: line 2: multi-hot field 2 is '2'"},
      {"field count", "a.jpg 0 1 1\r\nb.jpg 1 0\r\n",
       "l: line 2: 2 label fields, but earlier lines have 3"},
      {"one field", "\na.jpg\n", "l: line 2: expected '<path> <label>'"},
      {"empty", "\r\n\n", "l: image list has no entries"},
      {"nul byte", std::string("a.jpg 1\nb\0.jpg 2\n", 17), "l: line 2: NUL byte"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    expect_error(
        [&] {
          parse_image_list(reinterpret_cast<const uint8_t*>(c.text.data()), c.text.size(), "l",
                           root);
        },
        c.error);
  }
}

}  // namespace
}  // namespace hashlab::data
