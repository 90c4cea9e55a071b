// Evaluation of a code set of either kind (csrc/codes/code_file.h Codes), so
// that callers need not branch on the kind of code a method produces.
//
// Label protocol: binary codes are ranked by Hamming distance and get every
// metric of metrics.h (evaluate_hamming); PQ codes are ranked by PQ distance
// (evaluate_pq.h): with opts.pq_distance "sdc" the query ids against the
// database ids, with "adc" the queries' un-quantised vectors `query_vectors`
// (float [nq, M·dsub]) against the database ids.
//
// Euclidean protocol (metrics.h evaluate_euclidean): binary codes only;
// `true_neighbors` as there (a benchmark's ground truth).
#pragma once

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "csrc/codes/code_file.h"
#include "csrc/eval/metrics.h"

namespace hashlab::eval {

nlohmann::json evaluate_codes(const codes::Codes& queries, const codes::Codes& database,
                              const torch::Tensor& query_labels, const torch::Tensor& db_labels,
                              const EvalOptions& opts = {},
                              const torch::Tensor& query_vectors = torch::Tensor());

nlohmann::json evaluate_codes_euclidean(const codes::Codes& queries, const codes::Codes& database,
                                        const torch::Tensor& query_features,
                                        const torch::Tensor& db_features,
                                        const EvalOptions& opts = {},
                                        const torch::Tensor& true_neighbors = torch::Tensor());

}  // namespace hashlab::eval
