// Code files (.hlc): binary codes or PQ codes on disk, plus FAISS interop.
//
// Layout (little-endian), a 64-byte header then the payload:
//   off  size  field
//     0     8  magic "HLCODES1"
//     8     4  version (kCodeFileVersion)
//    12     4  kind: 1 = binary, 2 = pq
//    16     4  nbits  (binary: bits per code; pq: M * 8)
//    20     4  M      (pq; 0 for binary)
//    24     4  K      (pq; 0 for binary)
//    28     4  dsub   (pq; 0 for binary)
//    32     8  count  (number of codes N)
//    40     8  payload bytes
//    48     4  crc32 (zlib) of the payload
//    52     4  crc32 of header bytes 0..51 (version 2; version 1: zero, unchecked)
//    56     8  zero
// Readers bound every field (count <= 2^40, 1 <= nbits <= 65536, PQ: nbits
// = 8 M, K <= 256, dsub <= 2^20) before sizing anything by it.
//   payload: binary: N * ceil(nbits/8) code bytes (FAISS layout, codes.h);
//            pq: codebooks float32 [M, K, dsub], then ids uint8 [N, M].
// Files are written atomically (AtomicFile: path.tmp.<pid>, fsync, rename) and
// read by memory-mapping (MappedFile, MAP_PRIVATE, so tensors from a file may
// be written to without touching the file; a file truncated or rewritten in
// place while mapped is an error naming it, never a SIGBUS: see
// check_unchanged). Every problem with a file (missing, short,
// foreign, other version, checksum mismatch) is a hashlab::Error naming the
// file and the problem.
#pragma once

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "csrc/core/mapped_file.h"

namespace hashlab::codes {

constexpr uint32_t kCodeFileVersion = 2;  // reads 1 and 2, writes 2
enum class CodeKind : uint32_t { binary = 1, pq = 2 };

struct BinaryCodes {
  int nbits = 0;
  torch::Tensor codes;  // uint8 [N, ceil(nbits/8)], CPU
  // Read from a file: the mapping `codes` views (null when in memory).
  std::shared_ptr<const MappedFile> file;
  // hashlab::Error naming the file when it changed on disk since it was read
  // (a mapped file read afterwards gives no consistent answer): call after
  // using the codes, `during` saying what for ("during the search").
  void check_unchanged(const std::string& during) const {
    if (file) file->check_unchanged(during);
  }
};

// Product-quantisation codes: code n is ids[n] (one codebook entry per
// subspace); its reconstruction is concat_m codebooks[m][ids[n][m]].
struct PQCodes {
  int M = 0;             // subspaces
  int K = 0;             // codewords per subspace (K <= 256)
  int dsub = 0;          // dimensions per subspace
  torch::Tensor codebooks;  // float [M, K, dsub], CPU
  torch::Tensor ids;        // uint8 [N, M], CPU
  std::shared_ptr<const MappedFile> file;  // as BinaryCodes::file
  void check_unchanged(const std::string& during) const {
    if (file) file->check_unchanged(during);
  }
};

// One set of codes of either kind: what a method encodes, a code file holds
// and the evaluation ranks. Binary: packed bits [N, ceil(nbits/8)]; PQ:
// codeword ids [N, M] with the codebooks they index.
class Codes {
 public:
  Codes() = default;
  static Codes binary(BinaryCodes codes);  // checks shape and dtype
  static Codes pq(PQCodes codes);

  CodeKind kind() const { return kind_; }
  int64_t size() const;  // number of codes N
  int nbits() const;     // binary: bits per code; pq: 8 M (one byte per subspace)
  // The per-item bytes: packed bits or ids, uint8 [N, bytes per code].
  const torch::Tensor& data() const;
  // hashlab::Error naming the actual kind when it differs.
  const BinaryCodes& as_binary() const;
  const PQCodes& as_pq() const;
  // "64-bit binary" or "PQ (M=8, K=256)".
  std::string describe() const;
  // BinaryCodes::check_unchanged for either kind.
  void check_unchanged(const std::string& during) const {
    kind_ == CodeKind::pq ? pq_.check_unchanged(during) : binary_.check_unchanged(during);
  }

 private:
  CodeKind kind_ = CodeKind::binary;
  BinaryCodes binary_;
  PQCodes pq_;
};

// Either kind, by the file's header (write: by the set's kind).
void write_codes(const std::string& path, const Codes& codes);
Codes read_codes(const std::string& path);

// What the header says, without reading the payload.
struct CodeFileInfo {
  CodeKind kind;
  uint32_t version;
  int nbits;
  int M, K, dsub;
  int64_t count;
  uint64_t payload_bytes;
  uint32_t crc32;
};
CodeFileInfo read_code_file_info(const std::string& path);

void write_binary_codes(const std::string& path, const BinaryCodes& codes);
// Memory-mapped. verify_checksum reads the whole payload once to check its
// crc32; without it nothing past the header is touched until used (a large
// index searched out of core), and the header is still checked.
BinaryCodes read_binary_codes(const std::string& path, bool verify_checksum = true);
void write_pq_codes(const std::string& path, const PQCodes& codes);
PQCodes read_pq_codes(const std::string& path);

// FAISS IndexBinaryFlat files (faiss::write_index_binary / read_index_binary).
// FAISS needs nbits to be a multiple of 8. Throws hashlab::Error when hashlab
// was built without FAISS, or the file is not an IndexBinaryFlat.
void export_faiss_binary(const std::string& path, const BinaryCodes& codes);
BinaryCodes import_faiss_binary(const std::string& path);

}  // namespace hashlab::codes
