#include "csrc/search/binary_index.h"

#include <algorithm>

#include "csrc/codes/code_file.h"
#include "csrc/codes/codes.h"
#include "csrc/core/error.h"
#include "csrc/search/hamming_impl.h"

namespace hashlab::search {

BinaryIndex::BinaryIndex(int nbits) : BinaryIndex(nbits, "") {}

BinaryIndex::BinaryIndex(int nbits, const std::string& path) : nbits_(nbits) {
  TORCH_CHECK(nbits >= 1 && nbits <= kMaxBits, "BinaryIndex", path.empty() ? "" : " ", path,
              ": nbits must be in [1, ", kMaxBits, "], got ", nbits);
  codes_ = torch::empty({0, codes::code_bytes(nbits)}, torch::kUInt8);
}

BinaryIndex BinaryIndex::from_codes(const torch::Tensor& codes, int nbits) {
  BinaryIndex index(nbits);
  TORCH_CHECK(codes.defined() && codes.dim() == 2 && codes.scalar_type() == torch::kUInt8 &&
                  codes.size(1) == codes::code_bytes(nbits),
              "BinaryIndex: codes must be uint8 [n, ", codes::code_bytes(nbits), "] for ", nbits,
              " bits, got ", codes.defined() ? codes.sizes() : c10::IntArrayRef{}, " ",
              codes.defined() ? codes.scalar_type() : torch::kUInt8);
  index.codes_ = codes.contiguous();
  return index;
}

BinaryIndex BinaryIndex::load(const std::string& path, const LoadOptions& opts) {
  codes::BinaryCodes c = codes::read_binary_codes(path, opts.verify_checksum);
  BinaryIndex index(c.nbits, path);
  if (opts.mmap) {
    index.codes_ = c.codes;  // a view of the mapping, kept alive by the tensor
    index.mapped_ = true;
    index.release_pages_ = opts.release_pages;
    index.file_ = c.file;
  } else {
    index.codes_ = c.codes.clone();
    c.check_unchanged("while it was read into memory");
  }
  return index;
}

void BinaryIndex::check_file(const char* during) const {
  if (file_) file_->check_unchanged(during);
}

void BinaryIndex::save(const std::string& path) const {
  TORCH_CHECK(nbits_ > 0, "BinaryIndex::save: the index was never initialised");
  codes::write_binary_codes(path, {nbits_, codes_.to(torch::kCPU)});
}

void BinaryIndex::add(const torch::Tensor& more) {
  TORCH_CHECK(nbits_ > 0, "BinaryIndex::add: the index was never initialised");
  const int64_t bytes = codes::code_bytes(nbits_);
  TORCH_CHECK(more.defined() && more.dim() == 2 && more.scalar_type() == torch::kUInt8 &&
                  more.size(1) == bytes,
              "BinaryIndex::add: codes must be uint8 [m, ", bytes, "] for ", nbits_, " bits, got ",
              more.defined() ? more.sizes() : c10::IntArrayRef{});
  const int64_t n = size(), m = more.size(0);
  const torch::Device dev = n > 0 ? device() : more.device();
  if (!storage_.defined() || storage_.device() != dev || storage_.size(0) < n + m ||
      storage_.data_ptr() != codes_.data_ptr()) {
    // New storage (first add, a shared or mapped tensor, or full): doubling.
    const int64_t cap = std::max<int64_t>({n + m, 2 * n, 1024});
    torch::Tensor grown = torch::empty({cap, bytes}, torch::TensorOptions().dtype(torch::kUInt8).device(dev));
    if (n > 0) grown.narrow(0, 0, n).copy_(codes_);
    check_file("while its codes were copied");
    storage_ = grown;
    mapped_ = release_pages_ = false;
    file_.reset();
  }
  storage_.narrow(0, n, m).copy_(more.to(dev));
  codes_ = storage_.narrow(0, 0, n + m);
}

BinaryIndex BinaryIndex::to(torch::Device device) const {
  BinaryIndex out(nbits_);
  out.codes_ = codes_.to(device).clone();
  check_file("while its codes were copied");
  return out;
}

BinaryIndex BinaryIndex::shard(int64_t begin, int64_t end) const {
  TORCH_CHECK(0 <= begin && begin <= end && end <= size(), "BinaryIndex::shard: [", begin, ", ",
              end, ") is not inside [0, ", size(), ")");
  BinaryIndex out(nbits_);
  out.codes_ = codes_.narrow(0, begin, end - begin);
  out.mapped_ = mapped_;
  out.release_pages_ = release_pages_;
  out.file_ = file_;
  return out;
}

TopK BinaryIndex::search(const torch::Tensor& queries, int64_t k, int threads) const {
  const bool on_cuda = check_inputs("BinaryIndex::search", queries, codes_, nbits_);
  TORCH_CHECK(size() >= 1, "BinaryIndex::search: the index", path().empty() ? "" : " ", path(),
              " is empty (no codes to search)");
  TORCH_CHECK(k >= 1 && k <= size(), "BinaryIndex::search: k must be in [1, ", size(),
              "] (the index size), got ", k);
  if (on_cuda) return hamming_topk(queries, codes_, nbits_, k);
  TopK r = cpu::topk(queries.contiguous(), codes_, nbits_, k, threads, release_pages_);
  check_file("during the search");
  return r;
}

RadiusResult BinaryIndex::range_search(const torch::Tensor& queries, int radius, int threads,
                                       int64_t max_results) const {
  const bool on_cuda = check_inputs("BinaryIndex::range_search", queries, codes_, nbits_);
  TORCH_CHECK(size() >= 1, "BinaryIndex::range_search: the index", path().empty() ? "" : " ",
              path(), " is empty (no codes to search)");
  RadiusResult r = radius_search("BinaryIndex::range_search", queries, codes_, nbits_, radius,
                                 threads, max_results, on_cuda, release_pages_);
  check_file("during the search");
  return r;
}

RankAll BinaryIndex::rank_all(const torch::Tensor& queries, int threads) const {
  RankAll r = hamming_rank_all(queries, codes_, nbits_, threads);
  check_file("during the search");
  return r;
}

}  // namespace hashlab::search
