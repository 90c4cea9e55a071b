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

RadiusResult hamming_radius(const torch::Tensor& queries, const torch::Tensor& database,
                            int nbits, int radius, int threads) {
  const bool on_cuda = check_inputs("hamming_radius", queries, database, nbits);
  TORCH_CHECK(radius >= 0, "hamming_radius: radius must be >= 0, got ", radius);
  radius = std::min(radius, nbits);
#ifdef HASHLAB_WITH_CUDA
  if (on_cuda) return cuda::radius(queries.contiguous(), database.contiguous(), nbits, radius);
#endif
  (void)on_cuda;
  return cpu::radius(queries.contiguous(), database.contiguous(), nbits, radius, threads);
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
