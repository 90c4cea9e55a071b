#include "csrc/codes/code_file.h"

#include <cstring>
#include <fstream>
#include <memory>

#ifdef HASHLAB_WITH_FAISS
#include <faiss/IndexBinaryFlat.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#endif

#include "csrc/codes/codes.h"
#include "csrc/core/error.h"
#include "csrc/core/fs_util.h"

namespace hashlab::codes {
namespace {

constexpr char kMagic[8] = {'H', 'L', 'C', 'O', 'D', 'E', 'S', '1'};
constexpr size_t kHeaderBytes = 64;
constexpr size_t kHeaderCrcBytes = 52;  // the header crc covers bytes 0..51
// Bounds on header fields (checked before any product is formed).
constexpr uint64_t kMaxCodes = uint64_t{1} << 40;
constexpr uint32_t kMaxBits = 1u << 16;
constexpr uint32_t kMaxDsub = 1u << 20;

#pragma pack(push, 1)
struct Header {
  char magic[8];
  uint32_t version;
  uint32_t kind;
  uint32_t nbits;
  uint32_t M, K, dsub;
  uint64_t count;
  uint64_t payload_bytes;
  uint32_t crc32;
  uint32_t header_crc32;  // version 2: crc32 of bytes 0..51; version 1: zero
  uint8_t zero[8];
};
#pragma pack(pop)
static_assert(sizeof(Header) == kHeaderBytes, "code file header must be 64 bytes");


// The whole file, mapped (MappedFile: a change on disk while it is read is
// an error naming the file, never a SIGBUS).
std::shared_ptr<MappedFile> map_file(const std::string& path) {
  auto m = MappedFile::open(path, "code file");
  if (m->size() < kHeaderBytes)
    fail("code file {}: truncated: {} bytes, shorter than the {}-byte header", path, m->size(),
         kHeaderBytes);
  return m;
}

// Runs a check that reads the mapping; when it fails because the file changed
// under it (a read past a truncation sees zeros), says that instead.
template <typename Fn>
auto reading(const MappedFile& m, Fn fn) {
  try {
    return fn();
  } catch (const Error&) {
    m.check_unchanged("while it was read");
    throw;
  }
}

// Validates everything but the checksum.
Header parse_header(const std::string& path, const MappedFile& m) {
  Header h;
  std::memcpy(&h, m.data(), sizeof h);
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0) {
    uint64_t magic;
    std::memcpy(&magic, h.magic, 8);
    fail("code file {}: offset 0: bad magic {:#018x} (not a hashlab code file)", path, magic);
  }
  if (h.version != 1 && h.version != kCodeFileVersion)
    fail("code file {}: offset 8: version {} not supported (this build reads versions 1 to {})",
         path, h.version, kCodeFileVersion);
  if (h.version >= 2) {
    const uint32_t crc = crc32_of(m.data(), kHeaderCrcBytes);
    if (crc != h.header_crc32)
      fail("code file {}: header checksum mismatch: bytes 0..51 have crc32 {:#010x}, offset 52 "
           "says {:#010x} (corrupt header)",
           path, crc, h.header_crc32);
  }
  for (uint8_t z : h.zero)
    if (z != 0) fail("code file {}: offsets 56..63 must be zero (corrupt header)", path);
  // Every size is bounded before it is multiplied, so no product overflows.
  uint64_t expect = 0;
  if (h.count > kMaxCodes)
    fail("code file {}: offset 32: count {} is beyond the limit of {} codes", path, h.count,
         kMaxCodes);
  if (h.kind == static_cast<uint32_t>(CodeKind::binary)) {
    if (h.nbits < 1 || h.nbits > kMaxBits)
      fail("code file {}: offset 16: nbits {} must be in [1, {}]", path, h.nbits, kMaxBits);
    if (h.M != 0 || h.K != 0 || h.dsub != 0)
      fail("code file {}: offsets 20..31: binary codes have M = K = dsub = 0, got {} {} {}", path,
           h.M, h.K, h.dsub);
    expect = h.count * static_cast<uint64_t>(code_bytes(h.nbits));
  } else if (h.kind == static_cast<uint32_t>(CodeKind::pq)) {
    if (h.M < 1 || h.M > kMaxBits / 8 || h.K < 1 || h.K > 256 || h.dsub < 1 || h.dsub > kMaxDsub)
      fail("code file {}: bad PQ shape M {} K {} dsub {} (need 1 <= M <= {}, 1 <= K <= 256, "
           "1 <= dsub <= {})",
           path, h.M, h.K, h.dsub, kMaxBits / 8, kMaxDsub);
    if (h.nbits != 8 * h.M)
      fail("code file {}: offset 16: nbits {} of PQ codes must be 8 M = {}", path, h.nbits,
           8 * h.M);
    expect = uint64_t(h.M) * h.K * h.dsub * sizeof(float) + h.count * h.M;
  } else {
    fail("code file {}: offset 12: unknown kind {}", path, h.kind);
  }
  if (h.payload_bytes != expect)
    fail("code file {}: header says {} payload bytes but its shape needs {}", path,
         h.payload_bytes, expect);
  if (m.size() != kHeaderBytes + h.payload_bytes)
    fail("code file {}: {}: {} bytes on disk, header says {}", path,
         m.size() < kHeaderBytes + h.payload_bytes ? "truncated" : "trailing bytes", m.size(),
         kHeaderBytes + h.payload_bytes);
  return h;
}

void check_crc(const std::string& path, const MappedFile& m, const Header& h) {
  const uint32_t crc = crc32_of(m.data() + kHeaderBytes, h.payload_bytes);
  if (crc != h.crc32)
    fail("code file {}: checksum mismatch: payload crc32 {:#010x}, header says {:#010x} "
         "(corrupt file)",
         path, crc, h.crc32);
}

struct Piece {
  const void* data;
  size_t bytes;
};

// Writes header + pieces with AtomicFile (path.tmp.<pid>, fsync, checked
// close, rename over path): a reader that mapped the old file keeps its
// inode, and the new one appears whole or not at all.
void write_atomically(const std::string& path, Header h, std::initializer_list<Piece> pieces) {
  uint32_t crc = 0;
  uint64_t total = 0;
  for (const Piece& p : pieces) {
    crc = crc32_of(p.data, p.bytes, crc);
    total += p.bytes;
  }
  h.crc32 = crc;
  h.payload_bytes = total;
  h.header_crc32 = crc32_of(&h, kHeaderCrcBytes);
  try {
    AtomicFile f(path);
    f.write(&h, sizeof h);
    for (const Piece& p : pieces) f.write(p.data, p.bytes);
    f.commit();
  } catch (const Error& e) {
    fail("code file {}", e.what());
  }
}

Header new_header(CodeKind kind) {
  Header h;
  std::memset(&h, 0, sizeof h);
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.version = kCodeFileVersion;
  h.kind = static_cast<uint32_t>(kind);
  return h;
}

void check_binary(const BinaryCodes& c, const std::string& what) {
  HL_CHECK(c.nbits >= 1, "{}: nbits must be >= 1, got {}", what, c.nbits);
  HL_CHECK(c.codes.defined() && c.codes.dim() == 2 && c.codes.scalar_type() == torch::kUInt8 &&
               c.codes.size(1) == code_bytes(c.nbits),
           "{}: codes must be uint8 [N, {}] for {} bits", what, code_bytes(c.nbits), c.nbits);
}

torch::Tensor view_of(const std::shared_ptr<MappedFile>& m, size_t offset, at::IntArrayRef sizes,
                      torch::Dtype dtype) {
  void* p = m->data() + offset;
  return torch::from_blob(p, sizes, [m](void*) {}, torch::TensorOptions().dtype(dtype));
}

}  // namespace

CodeFileInfo read_code_file_info(const std::string& path) {
  auto m = map_file(path);
  const Header h = reading(*m, [&] { return parse_header(path, *m); });
  return {static_cast<CodeKind>(h.kind), h.version, static_cast<int>(h.nbits),
          static_cast<int>(h.M), static_cast<int>(h.K), static_cast<int>(h.dsub),
          static_cast<int64_t>(h.count), h.payload_bytes, h.crc32};
}

void write_binary_codes(const std::string& path, const BinaryCodes& codes) {
  check_binary(codes, fmt::format("write_binary_codes({})", path));
  const torch::Tensor c = codes.codes.to(torch::kCPU).contiguous();
  Header h = new_header(CodeKind::binary);
  h.nbits = static_cast<uint32_t>(codes.nbits);
  h.count = static_cast<uint64_t>(c.size(0));
  write_atomically(path, h, {{c.data_ptr<uint8_t>(), static_cast<size_t>(c.numel())}});
}

BinaryCodes read_binary_codes(const std::string& path, bool verify_checksum) {
  auto m = map_file(path);
  const Header h = reading(*m, [&] { return parse_header(path, *m); });
  if (h.kind != static_cast<uint32_t>(CodeKind::binary))
    fail("code file {}: holds PQ codes, expected binary codes", path);
  if (verify_checksum) reading(*m, [&] { check_crc(path, *m, h); });
  m->check_unchanged("while it was loaded");
  BinaryCodes out;
  out.file = m;
  out.nbits = static_cast<int>(h.nbits);
  out.codes = view_of(m, kHeaderBytes,
                      {static_cast<int64_t>(h.count), code_bytes(h.nbits)}, torch::kUInt8);
  return out;
}

void write_pq_codes(const std::string& path, const PQCodes& codes) {
  const std::string what = fmt::format("write_pq_codes({})", path);
  HL_CHECK(codes.M >= 1 && codes.K >= 1 && codes.K <= 256 && codes.dsub >= 1,
           "{}: bad PQ shape M {} K {} dsub {}", what, codes.M, codes.K, codes.dsub);
  HL_CHECK(codes.codebooks.defined() &&
               codes.codebooks.sizes() == at::IntArrayRef({codes.M, codes.K, codes.dsub}),
           "{}: codebooks must be float [{}, {}, {}]", what, codes.M, codes.K, codes.dsub);
  HL_CHECK(codes.ids.defined() && codes.ids.dim() == 2 && codes.ids.size(1) == codes.M &&
               codes.ids.scalar_type() == torch::kUInt8,
           "{}: ids must be uint8 [N, {}]", what, codes.M);
  const torch::Tensor cb = codes.codebooks.to(torch::kCPU, torch::kFloat).contiguous();
  const torch::Tensor ids = codes.ids.to(torch::kCPU).contiguous();
  HL_CHECK(ids.numel() == 0 || ids.max().item<int>() < codes.K, "{}: an id is >= K = {}", what,
           codes.K);
  Header h = new_header(CodeKind::pq);
  h.nbits = static_cast<uint32_t>(codes.M * 8);
  h.M = codes.M;
  h.K = codes.K;
  h.dsub = codes.dsub;
  h.count = static_cast<uint64_t>(ids.size(0));
  write_atomically(path, h,
                   {{cb.data_ptr<float>(), static_cast<size_t>(cb.numel()) * sizeof(float)},
                    {ids.data_ptr<uint8_t>(), static_cast<size_t>(ids.numel())}});
}

PQCodes read_pq_codes(const std::string& path) {
  auto m = map_file(path);
  const Header h = reading(*m, [&] { return parse_header(path, *m); });
  if (h.kind != static_cast<uint32_t>(CodeKind::pq))
    fail("code file {}: holds binary codes, expected PQ codes", path);
  reading(*m, [&] { check_crc(path, *m, h); });
  m->check_unchanged("while it was loaded");
  PQCodes out;
  out.file = m;
  out.M = static_cast<int>(h.M);
  out.K = static_cast<int>(h.K);
  out.dsub = static_cast<int>(h.dsub);
  out.codebooks = view_of(m, kHeaderBytes, {out.M, out.K, out.dsub}, torch::kFloat);
  const size_t ids_at = kHeaderBytes + size_t(h.M) * h.K * h.dsub * sizeof(float);
  out.ids = view_of(m, ids_at, {static_cast<int64_t>(h.count), out.M}, torch::kUInt8);
  return out;
}

Codes Codes::binary(BinaryCodes codes) {
  check_binary(codes, "binary codes");
  Codes c;
  c.kind_ = CodeKind::binary;
  c.binary_ = std::move(codes);
  return c;
}

Codes Codes::pq(PQCodes codes) {
  HL_CHECK(codes.M >= 1 && codes.K >= 1 && codes.K <= 256 && codes.dsub >= 1,
           "PQ codes: bad shape M {} K {} dsub {}", codes.M, codes.K, codes.dsub);
  HL_CHECK(codes.ids.defined() && codes.ids.dim() == 2 && codes.ids.size(1) == codes.M &&
               codes.ids.scalar_type() == torch::kUInt8,
           "PQ codes: ids must be uint8 [N, {}]", codes.M);
  Codes c;
  c.kind_ = CodeKind::pq;
  c.pq_ = std::move(codes);
  return c;
}

int64_t Codes::size() const { return data().defined() ? data().size(0) : 0; }

int Codes::nbits() const { return kind_ == CodeKind::pq ? 8 * pq_.M : binary_.nbits; }

const torch::Tensor& Codes::data() const {
  return kind_ == CodeKind::pq ? pq_.ids : binary_.codes;
}

const BinaryCodes& Codes::as_binary() const {
  HL_CHECK(kind_ == CodeKind::binary, "expected binary codes, got {}", describe());
  return binary_;
}

const PQCodes& Codes::as_pq() const {
  HL_CHECK(kind_ == CodeKind::pq, "expected PQ codes, got {}", describe());
  return pq_;
}

std::string Codes::describe() const {
  if (kind_ == CodeKind::pq) return fmt::format("PQ codes (M={}, K={})", pq_.M, pq_.K);
  return fmt::format("{}-bit binary codes", binary_.nbits);
}

void write_codes(const std::string& path, const Codes& codes) {
  if (codes.kind() == CodeKind::pq) {
    write_pq_codes(path, codes.as_pq());
  } else {
    write_binary_codes(path, codes.as_binary());
  }
}

Codes read_codes(const std::string& path) {
  if (read_code_file_info(path).kind == CodeKind::pq) return Codes::pq(read_pq_codes(path));
  return Codes::binary(read_binary_codes(path));
}

void export_faiss_binary(const std::string& path, const BinaryCodes& codes) {
  check_binary(codes, fmt::format("export_faiss_binary({})", path));
#ifdef HASHLAB_WITH_FAISS
  HL_CHECK(codes.nbits % 8 == 0,
           "export_faiss_binary({}): FAISS binary indexes need a multiple of 8 bits, got {}", path,
           codes.nbits);
  const torch::Tensor c = codes.codes.to(torch::kCPU).contiguous();
  try {
    faiss::IndexBinaryFlat index(codes.nbits);
    index.add(c.size(0), c.data_ptr<uint8_t>());
    // Same atomic-replace discipline as our own files: FAISS writes through
    // an AtomicFile (every write checked; fsync, checked close, rename).
    struct Writer : faiss::IOWriter {
      explicit Writer(const std::string& p) : file(p) { name = p; }
      size_t operator()(const void* ptr, size_t size, size_t nitems) override {
        file.write(ptr, size * nitems);
        return nitems;
      }
      AtomicFile file;
    } writer(path);
    faiss::write_index_binary(&index, &writer);
    writer.file.commit();
  } catch (const Error& e) {
    fail("faiss file {}", e.what());
  } catch (const faiss::FaissException& e) {
    fail("faiss file {}: FAISS could not write the index: {}", path, e.what());
  }
#else
  fail("export_faiss_binary({}): hashlab was built without FAISS", path);
#endif
}

#ifdef HASHLAB_WITH_FAISS
namespace {
// FAISS trusts the sizes in its files (a forged vector length makes it
// allocate whatever it says), so an IndexBinaryFlat file is checked first:
// "IBxF", int32 d, int32 code_size, int64 ntotal, bool is_trained,
// int32 metric_type, then the codes as a vector (uint64 length + bytes).
void check_faiss_binary_flat(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("faiss file {}: cannot open", path);
  in.seekg(0, std::ios::end);
  const uint64_t size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  unsigned char h[33];
  if (size < sizeof h || !in.read(reinterpret_cast<char*>(h), sizeof h)) return;  // FAISS reports it
  if (std::memcmp(h, "IBxF", 4) != 0) return;  // another index type: FAISS reports it
  int32_t d, code_size;
  int64_t ntotal;
  uint64_t vec_len;
  std::memcpy(&d, h + 4, 4);
  std::memcpy(&code_size, h + 8, 4);
  std::memcpy(&ntotal, h + 12, 8);
  std::memcpy(&vec_len, h + 25, 8);
  if (d < 8 || d > static_cast<int32_t>(kMaxBits) || d % 8 != 0)
    fail("faiss file {}: offset 4: d = {} bits must be a multiple of 8 in [8, {}]", path, d,
         kMaxBits);
  if (code_size != d / 8)
    fail("faiss file {}: offset 8: code_size {} but d = {} bits needs {}", path, code_size, d,
         d / 8);
  if (ntotal < 0 || static_cast<uint64_t>(ntotal) > kMaxCodes)
    fail("faiss file {}: offset 12: ntotal {} out of range [0, {}]", path, ntotal, kMaxCodes);
  const uint64_t need = static_cast<uint64_t>(ntotal) * static_cast<uint64_t>(code_size);
  if (vec_len != need)
    fail("faiss file {}: offset 25: the code vector says {} bytes, but ntotal {} x code_size {} "
         "is {}",
         path, vec_len, ntotal, code_size, need);
  if (size != sizeof h + need)
    fail("faiss file {}: {} bytes on disk, its header says {}", path, size, sizeof h + need);
}
}  // namespace
#endif

BinaryCodes import_faiss_binary(const std::string& path) {
#ifdef HASHLAB_WITH_FAISS
  check_faiss_binary_flat(path);
  std::unique_ptr<faiss::IndexBinary> index;
  try {
    index.reset(faiss::read_index_binary(path.c_str()));
  } catch (const faiss::FaissException& e) {
    fail("faiss file {}: FAISS could not read a binary index: {}", path, e.what());
  } catch (const std::bad_alloc&) {
    fail("faiss file {}: FAISS ran out of memory reading it (a size inside the file is corrupt "
         "or forged)",
         path);
  }
  auto* flat = dynamic_cast<faiss::IndexBinaryFlat*>(index.get());
  if (flat == nullptr)
    fail("faiss file {}: is a binary index but not an IndexBinaryFlat (cannot take its codes)",
         path);
  BinaryCodes out;
  out.nbits = flat->d;
  out.codes = torch::empty({flat->ntotal, static_cast<int64_t>(flat->code_size)}, torch::kUInt8);
  std::memcpy(out.codes.data_ptr<uint8_t>(), flat->xb.data(), flat->xb.size());
  return out;
#else
  fail("import_faiss_binary({}): hashlab was built without FAISS", path);
#endif
}

}  // namespace hashlab::codes
