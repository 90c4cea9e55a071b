#include "csrc/eval/evaluate_codes.h"

#include "csrc/core/error.h"
#include "csrc/eval/evaluate_pq.h"

namespace hashlab::eval {

namespace {
void check_same_kind(const codes::Codes& q, const codes::Codes& db) {
  HL_CHECK(q.kind() == db.kind() && q.nbits() == db.nbits(),
           "evaluation: the queries are {} but the database is {}", q.describe(), db.describe());
}
}  // namespace

nlohmann::json evaluate_codes(const codes::Codes& q, const codes::Codes& db,
                              const torch::Tensor& query_labels, const torch::Tensor& db_labels,
                              const EvalOptions& opts, const torch::Tensor& query_vectors) {
  check_same_kind(q, db);
  if (db.kind() == codes::CodeKind::binary) {
    HL_CHECK(opts.pq_distance == PQDistance::sdc || !query_vectors.defined(),
             "evaluation: eval.pq_distance: adc applies to PQ codes, not {}", db.describe());
    return evaluate_hamming(q.data(), db.data(), db.nbits(), query_labels, db_labels, opts);
  }
  const codes::PQCodes& pq = db.as_pq();
  const codes::PQCodes& qpq = q.as_pq();
  HL_CHECK(qpq.dsub == pq.dsub && qpq.K == pq.K &&
               (!qpq.codebooks.defined() || torch::equal(qpq.codebooks, pq.codebooks)),
           "evaluation: the query and database PQ codes use different codebooks");
  if (opts.pq_distance == PQDistance::adc) {
    HL_CHECK(query_vectors.defined(),
             "evaluation: eval.pq_distance: adc ranks the queries' vectors, which saved codes do "
             "not hold (use sdc, or evaluate the run: hashlab eval --run DIR)");
    return evaluate_pq(pq, query_vectors, pq.ids, query_labels, db_labels, PQDistance::adc, opts);
  }
  return evaluate_pq(pq, qpq.ids, pq.ids, query_labels, db_labels, PQDistance::sdc, opts);
}

nlohmann::json evaluate_codes_euclidean(const codes::Codes& q, const codes::Codes& db,
                                        const torch::Tensor& query_features,
                                        const torch::Tensor& db_features,
                                        const EvalOptions& opts,
                                        const torch::Tensor& true_neighbors) {
  check_same_kind(q, db);
  HL_CHECK(db.kind() == codes::CodeKind::binary,
           "evaluation: {} are evaluated with the label protocol (data.protocol: label)",
           db.describe());
  return evaluate_euclidean(q.data(), db.data(), db.nbits(), query_features, db_features, opts,
                            true_neighbors);
}

}  // namespace hashlab::eval
