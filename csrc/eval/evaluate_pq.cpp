#include "csrc/eval/evaluate_pq.h"

#include "csrc/core/error.h"
#include "csrc/search/pq.h"

namespace hashlab::eval {

nlohmann::json evaluate_pq(const codes::PQCodes& pq, const torch::Tensor& queries,
                           const torch::Tensor& db_ids, const torch::Tensor& query_labels,
                           const torch::Tensor& db_labels, PQDistance mode,
                           const EvalOptions& opts) {
  HL_CHECK(queries.size(0) == query_labels.size(0), "evaluate_pq: {} queries but {} labels",
           queries.size(0), query_labels.size(0));
  HL_CHECK(db_ids.size(0) == db_labels.size(0), "evaluate_pq: {} database codes but {} labels",
           db_ids.size(0), db_labels.size(0));
  const auto relevance = Relevance::from_labels(query_labels, db_labels);
  const int64_t nq = queries.size(0), n_db = db_ids.size(0);
  torch::Tensor sdc;
  if (mode == PQDistance::sdc) sdc = search::pq_sdc_tables(pq);
  LabelMetrics metrics(opts, n_db, /*nbits=*/-1);
  // int64 ranking + float distances + uint8 relevance per (query, item).
  const int64_t block = std::max<int64_t>(1, opts.block_bytes / (13 * std::max<int64_t>(n_db, 1)));
  for (int64_t q0 = 0; q0 < nq; q0 += block) {
    const int64_t b = std::min(block, nq - q0);
    auto qb = queries.slice(0, q0, q0 + b);
    auto tables = mode == PQDistance::sdc ? search::pq_sdc_query_tables(sdc, qb)
                                : search::pq_adc_tables(pq, qb);
    metrics.add({search::pq_rank_all(tables, db_ids, opts.threads), {}}, relevance.block(q0, b));
  }
  auto j = metrics.result();
  int log2k = 0;
  while ((1 << log2k) < pq.K) ++log2k;
  j["bits"] = pq.M * log2k;
  j["pq_mode"] = pq_distance_name(mode);
  return j;
}

}  // namespace hashlab::eval
