#include "csrc/search/sharded_search.h"

#include <limits>
#include <vector>

#include <ATen/Parallel.h>

#include "csrc/core/distributed.h"
#include "csrc/core/error.h"

namespace hashlab::search {

std::pair<int64_t, int64_t> shard_range(int64_t n, int rank, int world) {
  TORCH_CHECK(world >= 1 && rank >= 0 && rank < world, "shard_range: rank ", rank, " of ", world);
  return {n * rank / world, n * (rank + 1) / world};
}

TopK sharded_search(c10d::ProcessGroup& group, const BinaryIndex& shard, int64_t offset,
                    int64_t global_size, const torch::Tensor& queries, int64_t k, int threads) {
  TORCH_CHECK(k >= 1 && k <= global_size, "sharded_search: k must be in [1, ", global_size,
              "] (the index size), got ", k);
  const int world = group.getSize();
  const int64_t nq = queries.size(0);
  // This shard's top-min(k, size), global indices, padded to k.
  torch::Tensor dist = torch::full({nq, k}, std::numeric_limits<int32_t>::max(), torch::kInt32);
  torch::Tensor idx = torch::full({nq, k}, int64_t{-1}, torch::kInt64);
  const int64_t kk = std::min(k, shard.size());
  if (kk > 0) {
    TopK local = shard.search(queries, kk, threads);
    dist.narrow(1, 0, kk).copy_(local.distances);
    idx.narrow(1, 0, kk).copy_(local.indices + offset);
  }
  if (world == 1) return {dist, idx};
  std::vector<std::vector<at::Tensor>> all_d(1), all_i(1);
  for (int r = 0; r < world; ++r) {
    all_d[0].push_back(torch::empty_like(dist));
    all_i[0].push_back(torch::empty_like(idx));
  }
  std::vector<at::Tensor> in_d = {dist}, in_i = {idx};
  hashlab::dist::wait(group.allgather(all_d, in_d), group, "sharded search",
                      "the all-gather of the candidates' distances");
  hashlab::dist::wait(group.allgather(all_i, in_i), group, "sharded search",
                      "the all-gather of the candidates' indices");
  // Merge the world sorted lists of each query by (distance, global index).
  TopK out{torch::empty({nq, k}, torch::kInt32), torch::empty({nq, k}, torch::kInt64)};
  std::vector<const int32_t*> dp(world);
  std::vector<const int64_t*> ip(world);
  for (int r = 0; r < world; ++r) {
    dp[r] = all_d[0][r].data_ptr<int32_t>();
    ip[r] = all_i[0][r].data_ptr<int64_t>();
  }
  int32_t* od = out.distances.data_ptr<int32_t>();
  int64_t* oi = out.indices.data_ptr<int64_t>();
  at::parallel_for(0, nq, 64, [&](int64_t q0, int64_t q1) {
    std::vector<int64_t> pos(world);
    for (int64_t q = q0; q < q1; ++q) {
      std::fill(pos.begin(), pos.end(), 0);
      for (int64_t j = 0; j < k; ++j) {
        int best = -1;
        for (int r = 0; r < world; ++r) {
          if (pos[r] >= k) continue;
          const int64_t at = q * k + pos[r];
          if (ip[r][at] < 0) continue;  // padding
          if (best < 0) {
            best = r;
            continue;
          }
          const int64_t bt = q * k + pos[best];
          if (dp[r][at] < dp[best][bt] || (dp[r][at] == dp[best][bt] && ip[r][at] < ip[best][bt]))
            best = r;
        }
        TORCH_CHECK(best >= 0, "sharded_search: internal: ran out of candidates at rank ", j);
        od[q * k + j] = dp[best][q * k + pos[best]];
        oi[q * k + j] = ip[best][q * k + pos[best]];
        ++pos[best];
      }
    }
  });
  return out;
}

}  // namespace hashlab::search
