// Exact top-k over an index sharded across the ranks of a c10d process group
// (Gloo here; any backend with allgather of CPU int32/int64 tensors).
//
// Each rank holds a contiguous shard [offset, offset + shard.size()) of the
// global index and finds its own exact top-k under the order (distance,
// global index); the candidates are all-gathered and every rank merges them.
// This is exact: an item of the global top-k is in its shard's top-k, since
// every item that precedes it in the global order and lies in the same shard
// also precedes it there. Shards with fewer than k items send what they have,
// padded with distance INT32_MAX and index -1 (which sort last).
#pragma once

#include <cstdint>
#include <string>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include "csrc/search/binary_index.h"

namespace hashlab::search {

// queries: uint8 [nq, ceil(nbits/8)] on the CPU, the same on every rank.
// global_size: the whole index's size (k <= global_size). Returns the global
// top-k on every rank, indices global.
TopK sharded_search(c10d::ProcessGroup& group, const BinaryIndex& shard, int64_t offset,
                    int64_t global_size, const torch::Tensor& queries, int64_t k,
                    int threads = 0);

// The contiguous shard of `rank` out of `world` for an index of n items:
// [n * rank / world, n * (rank + 1) / world).
std::pair<int64_t, int64_t> shard_range(int64_t n, int rank, int world);

}  // namespace hashlab::search
