// hashlab._C.evaluate: csrc/eval/evaluate_codes.h on code sets and labels
// (label protocol) or raw features (Euclidean protocol), with the `eval:`
// options read by the same strict EvalOptions::from_yaml as a config's.
#include <torch/extension.h>

#include <optional>

#include "csrc/core/config.h"
#include "csrc/core/error.h"
#include "csrc/eval/evaluate_codes.h"
#include "python/src/common.h"

namespace hashlab::python {

namespace {

// options_json: {"eval": {...keyword arguments...}} as JSON text (YAML reads it).
eval::EvalOptions eval_options(const std::string& options_json) {
  Config cfg = Config::from_string(options_json, "evaluate() keyword arguments");
  Section e = cfg.section("eval");
  e.known({"batch_size"});  // a run's eval section: how it encoded, nothing to evaluate
  return eval::EvalOptions::from_yaml(e);
}

using OptTensor = std::optional<torch::Tensor>;

py::object evaluate(const codes::Codes& q, const codes::Codes& db, const OptTensor& ql_,
                    const OptTensor& dl_, const OptTensor& qf_, const OptTensor& df_,
                    const OptTensor& qv_, const OptTensor& gt_, const std::string& options_json) {
  const torch::Tensor ql = ql_.value_or(torch::Tensor()), dl = dl_.value_or(torch::Tensor()),
                      qf = qf_.value_or(torch::Tensor()), df = df_.value_or(torch::Tensor()),
                      qv = qv_.value_or(torch::Tensor()), gt = gt_.value_or(torch::Tensor());
  const auto opts = eval_options(options_json);
  HL_CHECK(q.kind() == db.kind() && q.nbits() == db.nbits(),
           "evaluate: query_codes are {} but database_codes are {}", q.describe(), db.describe());
  const bool labels = ql.defined() || dl.defined(),
             features = qf.defined() || df.defined() || gt.defined();
  HL_CHECK(labels != features,
           "evaluate: give query_labels and database_labels (label protocol) or query_features "
           "and database_features, or true_neighbors (Euclidean protocol){}",
           labels ? ", not both" : "");
  nlohmann::json r;
  if (labels) {
    const auto qlab = check_labels(ql, q.size(), "query_labels");
    const auto dlab = check_labels(dl, db.size(), "database_labels");
    HL_CHECK(qlab.dim() == dlab.dim() && (qlab.dim() == 1 || qlab.size(1) == dlab.size(1)),
             "evaluate: query_labels are {} but database_labels are {} (both class ids [n], or "
             "both multi-hot with the same classes)",
             describe(ql), describe(dl));
    torch::Tensor vectors;
    if (qv.defined()) vectors = check_features(qv, q.size(), "query_vectors");
    py::gil_scoped_release release;
    r = eval::evaluate_codes(q, db, qlab, dlab, opts, vectors);
  } else {
    HL_CHECK(!qv.defined(), "evaluate: query_vectors apply to PQ codes on labels");
    if (gt.defined()) {
      HL_CHECK(!qf.defined() && !df.defined(),
               "evaluate: true_neighbors replace query_features and database_features; give one "
               "or the other");
      HL_CHECK(!gt.is_floating_point() && !gt.is_complex() && gt.scalar_type() != torch::kBool &&
                   gt.dim() == 2 && gt.size(0) == q.size() && gt.size(1) >= 1,
               "evaluate: true_neighbors: expected integer database ids [{}, k], got {}", q.size(),
               describe(gt));
      py::gil_scoped_release release;
      r = eval::evaluate_codes_euclidean(q, db, torch::Tensor(), torch::Tensor(), opts, gt);
      return to_python(r);
    }
    const auto qfeat = check_features(qf, q.size(), "query_features");
    const auto dfeat = check_features(df, db.size(), "database_features");
    HL_CHECK(qfeat.size(1) == dfeat.size(1),
             "evaluate: query_features have {} dimensions but database_features {}",
             qfeat.size(1), dfeat.size(1));
    py::gil_scoped_release release;
    r = eval::evaluate_codes_euclidean(q, db, qfeat, dfeat, opts);
  }
  return to_python(r);
}

}  // namespace

void bind_eval(py::module_& m) {
  m.def("evaluate", &evaluate, py::arg("query_codes"), py::arg("database_codes"),
        py::arg("query_labels"), py::arg("database_labels"), py::arg("query_features"),
        py::arg("database_features"), py::arg("query_vectors"), py::arg("true_neighbors"),
        py::arg("options_json"));
}

}  // namespace hashlab::python
