// The application layer's run access: a trained run loaded back for
// `hashlab eval|encode|export --run`, and the encoding and evaluation that
// both it and the train job (app/train_job.h) use.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "csrc/codes/code_file.h"
#include "csrc/core/config.h"
#include "csrc/core/fs_util.h"
#include "csrc/eval/metrics.h"
#include "datasets/dataset.h"
#include "datasets/splits.h"
#include "trainers/method.h"

namespace hashlab {

// A trained run loaded back: its config, data, split and method.
struct LoadedRun {
  std::string dir;
  Config config;
  data::DataOptions data_options;
  data::Dataset dataset;
  data::Split split;
  MethodContext context;
  std::unique_ptr<Method> method;
  int64_t eval_batch_size = 256;
  std::unique_ptr<DirLock> lock;  // held while the run is in use
};
// Loads a finished run. Its directory is locked for the life of the result
// (shared to read, exclusive to write into it; a run being trained is
// refused), and a model file built differently from the run's config (say,
// another code length) is refused naming the fields that differ.
enum class RunAccess { read, write };
LoadedRun load_run(const std::string& run_dir, const std::vector<std::string>& overrides = {},
                   RunAccess access = RunAccess::read, const std::string& what = "reading it");

// A run's data without its model: config (with the overrides), dataset and
// split, as the run was trained (`hashlab eval --from-codes`, Python's
// Run.split()). The directory is locked shared for the life of the result.
struct RunSplit {
  Config config;
  data::DataOptions data_options;
  data::Dataset dataset;
  data::Split split;
  std::unique_ptr<DirLock> lock;
};
RunSplit load_run_split(const std::string& run_dir, const std::vector<std::string>& overrides = {},
                        const std::string& what = "reading its split");

// `hashlab eval --run DIR --from-codes`: the run's saved codes
// (codes/query.hlc, codes/database.hlc) evaluated on its split with its
// `eval:` options (and the overrides), without the model.
nlohmann::json evaluate_saved_codes(const std::string& run_dir,
                                    const std::vector<std::string>& overrides = {},
                                    const std::string& what = "hashlab eval --from-codes");

// Encodes pool items `indices` of `dataset` in order (no augmentation): the
// method's codes (packed bits or PQ ids, on the CPU) as a code set.
codes::Codes encode_indices(Method& method, const data::Dataset& dataset,
                            const torch::Tensor& indices, const data::DataOptions& data_opts,
                            torch::Device device, int64_t batch_size);

// Evaluates query codes against database codes of the split by the data's
// protocol: labels (label protocol), or the true Euclidean neighbours in the
// raw features (Euclidean protocol, or unlabelled data). `query_vectors`:
// the queries' embeddings for asymmetric PQ distances (label protocol).
nlohmann::json evaluate_code_sets(const codes::Codes& query, const codes::Codes& database,
                                  const data::Dataset& dataset, const data::Split& split,
                                  const data::DataOptions& data_opts,
                                  const eval::EvalOptions& opts,
                                  const torch::Tensor& query_vectors = torch::Tensor());

// Evaluates a method on the split's queries against its database with the
// `eval:` options (label protocol, or Euclidean for unlabelled data).
nlohmann::json evaluate_run(Method& method, const data::Dataset& dataset, const data::Split& split,
                            const data::DataOptions& data_opts, Section eval_cfg,
                            torch::Device device, int64_t batch_size,
                            codes::Codes* query_codes = nullptr,
                            codes::Codes* db_codes = nullptr);

// The shape of one item of `dataset` as a method sees it (after the data
// options' transforms), e.g. [1, 28, 28] or [512].
std::vector<int64_t> item_shape(const data::Dataset& dataset, const data::DataOptions& data_opts);


}  // namespace hashlab
