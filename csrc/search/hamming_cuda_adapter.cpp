// Binds the raw-pointer CUDA kernels (hamming_cuda.cuh) to tensors: device
// guard, current stream, one workspace tensor from the caching allocator.
// Compiled only when LibTorch has CUDA (CMakeLists: *_cuda_adapter.cpp).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "csrc/search/hamming_cuda.cuh"
#include "csrc/search/hamming_impl.h"

namespace hashlab::search::cuda {
namespace {

namespace ck = hashlab::search::cuda_kernels;

torch::Tensor workspace(size_t bytes, const torch::Device& device) {
  return torch::empty({static_cast<int64_t>(std::max<size_t>(bytes, 1))},
                      torch::TensorOptions().dtype(torch::kUInt8).device(device));
}

torch::TensorOptions on(const torch::Tensor& like, torch::Dtype dtype) {
  return torch::TensorOptions().dtype(dtype).device(like.device());
}

}  // namespace

TopK topk(const torch::Tensor& queries, const torch::Tensor& database, int nbits, int64_t k) {
  const c10::cuda::CUDAGuard guard(queries.device());
  const int64_t nq = queries.size(0), n = database.size(0);
  TORCH_CHECK(nq * k < (int64_t{1} << 31), "hamming_topk (CUDA): nq * k = ", nq * k,
              " too large for one call; split the queries");
  TopK out{torch::empty({nq, k}, on(queries, torch::kInt32)),
           torch::empty({nq, k}, on(queries, torch::kInt64))};
  const size_t bytes = ck::topk_workspace_bytes(nq, n, nbits, k);
  auto ws = workspace(bytes, queries.device());
  ck::topk(queries.data_ptr<uint8_t>(), nq, database.data_ptr<uint8_t>(), n, nbits, k,
           ws.data_ptr(), bytes, out.distances.data_ptr<int32_t>(), out.indices.data_ptr<int64_t>(),
           at::cuda::getCurrentCUDAStream());
  return out;
}

RadiusResult radius(const torch::Tensor& queries, const torch::Tensor& database, int nbits,
                    int radius) {
  const c10::cuda::CUDAGuard guard(queries.device());
  const int64_t nq = queries.size(0), n = database.size(0);
  const auto stream = at::cuda::getCurrentCUDAStream();
  auto counts = torch::zeros({nq}, on(queries, torch::kInt64));
  {
    const size_t bytes = ck::radius_workspace_bytes(nq, n, nbits, 0);
    auto ws = workspace(bytes, queries.device());
    ck::radius_count(queries.data_ptr<uint8_t>(), nq, database.data_ptr<uint8_t>(), n, nbits,
                     radius, ws.data_ptr(), bytes, counts.data_ptr<int64_t>(), stream);
  }
  RadiusResult out;
  out.offsets = torch::cat({torch::zeros({1}, counts.options()), counts.cumsum(0)});
  const int64_t total = out.offsets[nq].item<int64_t>();  // host sync: sizes the output
  out.indices = torch::empty({total}, on(queries, torch::kInt64));
  out.distances = torch::empty({total}, on(queries, torch::kInt32));
  const size_t bytes = ck::radius_workspace_bytes(nq, n, nbits, total);
  auto ws = workspace(bytes, queries.device());
  ck::radius_collect(queries.data_ptr<uint8_t>(), nq, database.data_ptr<uint8_t>(), n, nbits,
                     radius, out.offsets.data_ptr<int64_t>(), total, ws.data_ptr(), bytes,
                     out.distances.data_ptr<int32_t>(), out.indices.data_ptr<int64_t>(), stream);
  return out;
}

RankAll rank_all(const torch::Tensor& queries, const torch::Tensor& database, int nbits) {
  const c10::cuda::CUDAGuard guard(queries.device());
  const int64_t nq = queries.size(0), n = database.size(0);
  TORCH_CHECK(nq * n < (int64_t{1} << 31), "hamming_rank_all (CUDA): nq * n_db = ", nq * n,
              " too large for one call; split the queries");
  RankAll out{torch::empty({nq, n}, on(queries, torch::kInt32)),
              torch::zeros({nq, nbits + 1}, on(queries, torch::kInt64))};
  const size_t bytes = ck::rank_all_workspace_bytes(nq, n, nbits);
  auto ws = workspace(bytes, queries.device());
  ck::rank_all(queries.data_ptr<uint8_t>(), nq, database.data_ptr<uint8_t>(), n, nbits,
               ws.data_ptr(), bytes, out.indices.data_ptr<int32_t>(), out.counts.data_ptr<int64_t>(),
               at::cuda::getCurrentCUDAStream());
  return out;
}

torch::Tensor distances(const torch::Tensor& queries, const torch::Tensor& database, int nbits) {
  const c10::cuda::CUDAGuard guard(queries.device());
  const int64_t nq = queries.size(0), n = database.size(0);
  auto out = torch::empty({nq, n}, on(queries, torch::kInt32));
  const size_t bytes = ck::distances_workspace_bytes(nq, n, nbits);
  auto ws = workspace(bytes, queries.device());
  ck::distances(queries.data_ptr<uint8_t>(), nq, database.data_ptr<uint8_t>(), n, nbits,
                ws.data_ptr(), bytes, out.data_ptr<int32_t>(), at::cuda::getCurrentCUDAStream());
  return out;
}

}  // namespace hashlab::search::cuda
