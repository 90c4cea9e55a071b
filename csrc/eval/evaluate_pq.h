// Label-protocol evaluation of product-quantization codes (DeepQuan style):
// rank the database by PQ distance (float; ties by database index), then the
// metrics of metrics.h that need no distance groups: mAP@all, mAP@K, P@N, R@N.
// (Tie-aware AP, P@H<=r and the PR curve are defined on integer Hamming
// distances and are not reported.)
#pragma once

#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "csrc/codes/code_file.h"
#include "csrc/eval/metrics.h"

namespace hashlab::eval {

// mode sdc: queries are uint8 ids [nq, M], distances from the M K×K tables.
// mode adc: queries are float vectors [nq, M·dsub], distances from per-query tables.
// db_ids: uint8 [n, M]. Labels as in Relevance::from_labels.
// Adds "pq_mode" and "bits" (M · ceil(log2 K)).
nlohmann::json evaluate_pq(const codes::PQCodes& pq, const torch::Tensor& queries,
                           const torch::Tensor& db_ids, const torch::Tensor& query_labels,
                           const torch::Tensor& db_labels, PQDistance mode = PQDistance::sdc,
                           const EvalOptions& opts = {});

}  // namespace hashlab::eval
