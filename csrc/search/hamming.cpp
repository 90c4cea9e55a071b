// Public entry points of hamming.h: check inputs at the op boundary, then run
// the CPU twin (hamming_cpu.cpp) or, for CUDA inputs in a CUDA build, the CUDA
// twin (hamming_cuda_adapter.cpp).
#include "csrc/search/hamming.h"

#include "csrc/search/hamming_impl.h"

namespace hashlab::search {
namespace {

void check_codes(const char* op, const char* what, const torch::Tensor& t, int nbits) {
  TORCH_CHECK(t.defined() && t.dim() == 2, op, ": ", what, " must be a 2-D [n, bytes] tensor, got ",
              t.defined() ? t.sizes() : c10::IntArrayRef{});
  TORCH_CHECK(t.scalar_type() == torch::kUInt8, op, ": ", what, " must be uint8, got ",
              t.scalar_type());
  TORCH_CHECK(t.size(1) == (nbits + 7) / 8, op, ": ", what, " has ", t.size(1),
              " bytes per code but nbits = ", nbits, " needs ", (nbits + 7) / 8);
}

}  // namespace

// Returns true when the inputs are CUDA tensors (and the build can run them).
bool check_inputs(const char* op, const torch::Tensor& queries, const torch::Tensor& database,
                  int nbits) {
  TORCH_CHECK(nbits >= 1 && nbits <= kMaxBits, op, ": nbits must be in [1, ", kMaxBits,
              "], got ", nbits);
  check_codes(op, "queries", queries, nbits);
  check_codes(op, "database", database, nbits);
  TORCH_CHECK(queries.device() == database.device(), op, ": queries on ", queries.device(),
              " but database on ", database.device());
  if (!queries.is_cuda()) return false;
#ifdef HASHLAB_WITH_CUDA
  return true;
#else
  TORCH_CHECK(false, op, ": CUDA tensors given, but hashlab was built without CUDA search");
#endif
}

TopK hamming_topk(const torch::Tensor& queries, const torch::Tensor& database, int nbits,
                  int64_t k, int threads) {
  const bool on_cuda = check_inputs("hamming_topk", queries, database, nbits);
  TORCH_CHECK(k >= 1 && k <= database.size(0), "hamming_topk: k must be in [1, ",
              database.size(0), "] (the database size), got ", k);
#ifdef HASHLAB_WITH_CUDA
  if (on_cuda) return cuda::topk(queries.contiguous(), database.contiguous(), nbits, k);
#endif
  (void)on_cuda;
  return cpu::topk(queries.contiguous(), database.contiguous(), nbits, k, threads);
}

void radius_limit_exceeded(const char* op, int64_t max_results, int radius, int64_t nq,
                           int64_t n) {
  throw RadiusLimitExceeded(
      fmt::format("{}: more than {} results within radius {} ({} queries over {} codes); lower "
                  "the radius or raise max_results",
                  op, max_results, radius, nq, n),
      max_results);
}

RadiusResult radius_search(const char* op, const torch::Tensor& queries,
                           const torch::Tensor& database, int nbits, int radius, int threads,
                           int64_t max_results, bool on_cuda, bool release_pages) {
  TORCH_CHECK(radius >= 0, op, ": radius must be >= 0, got ", radius);
  TORCH_CHECK(max_results >= 1, op, ": max_results must be >= 1, got ", max_results);
  radius = std::min(radius, nbits);
#ifdef HASHLAB_WITH_CUDA
  if (on_cuda) {
    // The CUDA twin counts before it collects, and device memory is bounded:
    // the limit is checked on the whole result.
    RadiusResult r = cuda::radius(queries.contiguous(), database.contiguous(), nbits, radius);
    if (r.indices.size(0) > max_results)
      radius_limit_exceeded(op, max_results, radius, queries.size(0), database.size(0));
    return r;
  }
#endif
  (void)on_cuda;
  RadiusResult r = cpu::radius(queries.contiguous(), database.contiguous(), nbits, radius,
                               threads, release_pages, max_results);
  if (!r.offsets.defined())
    radius_limit_exceeded(op, max_results, radius, queries.size(0), database.size(0));
  return r;
}

RadiusResult hamming_radius(const torch::Tensor& queries, const torch::Tensor& database,
                            int nbits, int radius, int threads, int64_t max_results) {
  const bool on_cuda = check_inputs("hamming_radius", queries, database, nbits);
  return radius_search("hamming_radius", queries, database, nbits, radius, threads, max_results,
                       on_cuda, false);
}

RankAll hamming_rank_all(const torch::Tensor& queries, const torch::Tensor& database, int nbits,
                         int threads) {
  const bool on_cuda = check_inputs("hamming_rank_all", queries, database, nbits);
  TORCH_CHECK(database.size(0) <= std::numeric_limits<int32_t>::max(),
              "hamming_rank_all: int32 indices cannot hold a database of ", database.size(0));
#ifdef HASHLAB_WITH_CUDA
  if (on_cuda) return cuda::rank_all(queries.contiguous(), database.contiguous(), nbits);
#endif
  (void)on_cuda;
  return cpu::rank_all(queries.contiguous(), database.contiguous(), nbits, threads);
}

torch::Tensor hamming_distances(const torch::Tensor& queries, const torch::Tensor& database,
                                int nbits, int threads) {
  const bool on_cuda = check_inputs("hamming_distances", queries, database, nbits);
#ifdef HASHLAB_WITH_CUDA
  if (on_cuda) return cuda::distances(queries.contiguous(), database.contiguous(), nbits);
#endif
  (void)on_cuda;
  return cpu::distances(queries.contiguous(), database.contiguous(), nbits, threads);
}

}  // namespace hashlab::search
