// BinaryIndex: a database of binary codes that is built (or loaded) once and
// searched many times, the shape of FAISS's IndexBinaryFlat: add, exact
// top-k search, range search by Hamming radius, save/load.
//
//   auto index = BinaryIndex::load("db.hlc");            // memory-mapped
//   TopK r = index.search(queries, 100);                 // int32 [nq,k], int64 [nq,k]
//   RadiusResult h = index.range_search(queries, 2);     // CSR
//
// The codes are kept in the code-file layout (uint8 [n, ceil(nbits/8)], FAISS
// IndexBinaryFlat bytes), which is also what the CPU search scans in place:
// there is no per-call conversion (hamming.h's CPU twin interleaves each L1
// chunk as it scans it, once per search for all queries). So `save` writes a
// .hlc code file, and `load` memory-maps one: a file larger than memory is
// searched out of core, its pages dropped from the resident set as the scan
// passes (see LoadOptions).
//
// Results are exact and ordered by (distance, index) on every device. On CUDA
// (`to(device)`) the index holds the codes on the GPU and searches there.
// Bad arguments (shape, dtype, k, radius, device) are c10::Error naming the
// op and the value; file problems (a file changed on disk while mapped
// included) are hashlab::Error naming the file.
#pragma once

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "csrc/codes/code_file.h"
#include "csrc/search/hamming.h"

namespace hashlab::search {

class BinaryIndex {
 public:
  static constexpr int kMaxBits = search::kMaxBits;
  BinaryIndex() = default;
  // An empty index of `nbits`-bit codes (1..4096) on the CPU.
  explicit BinaryIndex(int nbits);
  // An index over `codes` (uint8 [n, ceil(nbits/8)], CPU or CUDA), sharing
  // the tensor (no copy) until the next add().
  static BinaryIndex from_codes(const torch::Tensor& codes, int nbits);

  struct LoadOptions {
    bool mmap = true;             // map the file (false: read it into memory)
    bool verify_checksum = true;  // read the payload once to check its crc32
    // Mapped only: drop scanned pages from the resident set as each search
    // goes (for files larger than memory; each search rereads them).
    bool release_pages = false;
  };
  // Loads a .hlc code file of binary codes (hashlab::Error for PQ codes).
  static BinaryIndex load(const std::string& path, const LoadOptions& opts);
  static BinaryIndex load(const std::string& path) { return load(path, LoadOptions{}); }
  // Writes a .hlc code file atomically.
  void save(const std::string& path) const;

  // Appends codes (uint8 [m, ceil(nbits/8)] on any device); they get indices
  // size() .. size() + m - 1. Amortised O(m): storage grows by doubling.
  void add(const torch::Tensor& codes);

  int nbits() const { return nbits_; }
  int64_t size() const { return codes_.defined() ? codes_.size(0) : 0; }
  // The file a loaded index maps, "" otherwise.
  std::string path() const { return file_ ? file_->path() : std::string(); }
  torch::Device device() const { return codes_.defined() ? codes_.device() : torch::kCPU; }
  bool mapped() const { return mapped_; }
  // The codes, uint8 [size(), ceil(nbits/8)] (a view; do not write to it).
  const torch::Tensor& codes() const { return codes_; }
  // The same codes on another device (a copy, not mapped).
  BinaryIndex to(torch::Device device) const;
  // Codes [begin, end) as an index of their own (a view: no copy; a mapped
  // index's shard stays mapped). Its results index the shard from 0.
  BinaryIndex shard(int64_t begin, int64_t end) const;

  // The k nearest codes of each query (uint8 [nq, ceil(nbits/8)], on the
  // index's device). 1 <= k <= size(). threads <= 0: at::get_num_threads() (CPU).
  // A loaded, mapped index whose file is truncated or rewritten in place
  // during a search (or since load) fails with a hashlab::Error naming the
  // file, after the search, instead of returning what it read (see
  // csrc/core/mapped_file.h: the reads never raise SIGBUS).
  TopK search(const torch::Tensor& queries, int64_t k, int threads = 0) const;
  // Every code within Hamming distance <= radius of each query; at most
  // max_results of them, all queries together (RadiusLimitExceeded past it:
  // see hamming.h).
  RadiusResult range_search(const torch::Tensor& queries, int radius, int threads = 0,
                            int64_t max_results = kDefaultMaxRadiusResults) const;
  // Every code of the index per query, ordered (see hamming_rank_all).
  RankAll rank_all(const torch::Tensor& queries, int threads = 0) const;

 private:
  int nbits_ = 0;
  torch::Tensor storage_;  // capacity rows (add); codes_ is its first size() rows
  torch::Tensor codes_;
  bool mapped_ = false, release_pages_ = false;
  // A mapped index's file: checked after every read of the codes.
  std::shared_ptr<const MappedFile> file_;

  BinaryIndex(int nbits, const std::string& path);  // path: named in errors
  void check_file(const char* during) const;
};

}  // namespace hashlab::search
