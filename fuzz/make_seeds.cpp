// Writes small valid files, one folder per reader, to seed the fuzz corpora:
//   make_seeds OUT_DIR  ->  OUT_DIR/{idx,cifar,vecs,npy,image_list}/...
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <zlib.h>

using Buf = std::vector<uint8_t>;

static void put_be32(Buf& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}
static void put_le32(Buf& b, uint32_t v) {
  for (int s = 0; s <= 24; s += 8) b.push_back(static_cast<uint8_t>(v >> s));
}
static Buf gzip(const Buf& in) {
  uLongf n = compressBound(in.size()) + 64;
  Buf out(n);
  z_stream zs{};
  deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}
static void write(const std::filesystem::path& p, const Buf& b) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), b.size());
}
static Buf npy(const std::string& descr, const std::string& shape, const Buf& payload) {
  std::string h = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  Buf b = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<uint8_t>(h.size()), 0};
  b.insert(b.end(), h.begin(), h.end());
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::filesystem::path out = argv[1];
  // idx: 2 images of 3x3, 4 labels, int32 and float32 vectors.
  Buf img = {0, 0, 8, 3};
  put_be32(img, 2); put_be32(img, 3); put_be32(img, 3);
  for (int i = 0; i < 18; ++i) img.push_back(static_cast<uint8_t>(i * 13));
  write(out / "idx/images", img);
  write(out / "idx/images.gz", gzip(img));
  Buf lab = {0, 0, 8, 1};
  put_be32(lab, 4);
  for (uint8_t v : {1, 0, 9, 3}) lab.push_back(v);
  write(out / "idx/labels", lab);
  Buf i32 = {0, 0, 0x0C, 2};
  put_be32(i32, 2); put_be32(i32, 1); put_be32(i32, 7); put_be32(i32, 0xfffffff0u);
  write(out / "idx/int32", i32);
  Buf f32 = {0, 0, 0x0D, 1};
  put_be32(f32, 1); put_be32(f32, 0x3fc00000u);
  write(out / "idx/float32", f32);
  // CIFAR: one CIFAR-10 record, one CIFAR-100 record.
  Buf c10 = {7}; c10.resize(3073, 5);
  write(out / "cifar/c10.bin", c10);
  Buf c100 = {3, 42}; c100.resize(3074, 9);
  write(out / "cifar/c100.bin", c100);
  write(out / "cifar/c10.bin.gz", gzip(c10));
  // CIFAR-10 python batch of one image, pickled as Python 2's cPickle writes
  // it (protocol 2): {"data": numpy uint8 [1, 3072], "labels": [7]}.
  {
    // (Hex escapes are split off where the next character is a hex digit.)
    const char head[] =
        "\x80\x02}(U\x04" "data" "cnumpy.core.multiarray\n_reconstruct\n"
        "cnumpy\nndarray\nK\x00\x85U\x01" "b\x87R(K\x01K\x01M\x00\x0c\x86"
        "cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xff"
        "J\xff\xff\xff\xffK\x00tb\x89T";
    Buf pk(head, head + sizeof(head) - 1);
    put_le32(pk, 3072);
    pk.resize(pk.size() + 3072, 5);
    const char tail[] = "tbU\x06labels](K\x07" "eu.";
    pk.insert(pk.end(), tail, tail + sizeof(tail) - 1);
    write(out / "cifar/c10_python_batch", pk);
  }
  // vecs: fvecs (d = 3, 2 rows), bvecs (d = 4), ivecs (d = 2).
  Buf fv;
  for (int r = 0; r < 2; ++r) { put_le32(fv, 3); for (int k = 0; k < 3; ++k) put_le32(fv, 0x3f800000u + k); }
  write(out / "vecs/a.fvecs", fv);
  Buf bv;
  for (int r = 0; r < 3; ++r) { put_le32(bv, 4); for (int k = 0; k < 4; ++k) bv.push_back(static_cast<uint8_t>(r * 4 + k)); }
  write(out / "vecs/a.bvecs", bv);
  write(out / "vecs/a.bvecs.gz", gzip(bv));
  Buf iv;
  put_le32(iv, 2); put_le32(iv, 5); put_le32(iv, 99);
  write(out / "vecs/gt.ivecs", iv);
  // npy: f4 [2, 2], u1 [3], i8 [1], i4 scalar.
  write(out / "npy/f4.npy", npy("<f4", "(2, 2)", Buf(16, 0x3f)));
  write(out / "npy/u1.npy", npy("|u1", "(3,)", Buf{1, 2, 3}));
  write(out / "npy/i8.npy", npy("<i8", "(1,)", Buf(8, 1)));
  write(out / "npy/i4.npy.gz", gzip(npy("<i4", "()", Buf(4, 2))));
  // image lists: single-label, multi-hot with CRLF.
  const std::string single = "img/a.jpg 0\nimg/b.jpg 12\n";
  write(out / "image_list/single.txt", Buf(single.begin(), single.end()));
  const std::string multi = "x/1.png 0 1 1\r\nx/2.png 1 0 0\r\n\r\n";
  write(out / "image_list/multi.txt", Buf(multi.begin(), multi.end()));
  return 0;
}
