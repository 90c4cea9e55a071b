#include "app/job.h"

#include "app/builtin_methods.h"
#include "app/job_config.h"
#include "app/run_dir.h"

#include <chrono>
#include <filesystem>
#include <functional>

#include "csrc/core/device.h"
#include "csrc/core/error.h"
#include "csrc/eval/evaluate_codes.h"
#include "datasets/loader.h"
#include "trainers/checkpointer.h"
#include "trainers/trainer.h"

namespace hashlab {
namespace fs = std::filesystem;

namespace {

data::LoaderOptions eval_loader_options(const data::DataOptions& d, torch::Device device,
                                        int64_t batch_size) {
  data::LoaderOptions o;
  o.batch_size(batch_size).shuffle(false).drop_last(false).augment(false).images(d.images);
  o.device(device).prefetch(2);
  return o;
}

}  // namespace

std::vector<int64_t> item_shape(const data::Dataset& ds, const data::DataOptions& dopts) {
  if (ds.size() == 0) fail("data {}: no items", ds.name);
  data::Loader probe(ds, torch::arange(1, torch::kLong),
                     eval_loader_options(dopts, torch::kCPU, 1).prefetch(0));
  auto b = probe.batch_at(0);
  return {b.x.sizes().begin() + 1, b.x.sizes().end()};
}


namespace {
// Applies `fn` to the transformed inputs of pool items `idx` in order (no
// augmentation) and concatenates the CPU results.
torch::Tensor map_indices(Method& method, const data::Dataset& ds, const torch::Tensor& idx,
                          const data::DataOptions& dopts, torch::Device device, int64_t batch_size,
                          const std::function<torch::Tensor(const torch::Tensor&)>& fn) {
  torch::NoGradGuard ng;
  if (auto* mod = method.module()) mod->eval();
  data::Loader loader(ds, idx, eval_loader_options(dopts, device, batch_size));
  std::vector<torch::Tensor> out;
  for (int64_t s = 0; s < loader.steps_per_epoch(); ++s) out.push_back(fn(loader.next().x).cpu());
  if (out.empty()) return torch::Tensor();
  return torch::cat(out).contiguous();
}
}  // namespace

codes::Codes encode_indices(Method& method, const data::Dataset& ds, const torch::Tensor& idx,
                            const data::DataOptions& dopts, torch::Device device,
                            int64_t batch_size) {
  auto codes = map_indices(method, ds, idx, dopts, device, batch_size,
                           [&](const torch::Tensor& x) { return method.encode(x); });
  return method.make_codes(codes);
}

nlohmann::json evaluate_code_sets(const codes::Codes& q, const codes::Codes& db,
                                  const data::Dataset& ds, const data::Split& split,
                                  const data::DataOptions& dopts, const eval::EvalOptions& opts,
                                  const torch::Tensor& query_vectors) {
  if (ds.has_labels() && dopts.protocol == Protocol::label) {
    auto ql = ds.labels.index_select(0, split.query);
    auto dl = ds.labels.index_select(0, split.database);
    return eval::evaluate_codes(q, db, ql, dl, opts, query_vectors);
  }
  if (split.true_neighbors.defined())  // the benchmark's ground truth (data.ground_truth)
    return eval::evaluate_codes_euclidean(q, db, torch::Tensor(), torch::Tensor(), opts,
                                          split.true_neighbors);
  if (!ds.features.defined()) fail("evaluation: the Euclidean protocol needs in-memory features");
  auto f = ds.features.flatten(1).to(torch::kFloat32);
  return eval::evaluate_codes_euclidean(q, db, f.index_select(0, split.query),
                                        f.index_select(0, split.database), opts);
}

nlohmann::json evaluate_run(Method& method, const data::Dataset& ds, const data::Split& split,
                            const data::DataOptions& dopts, Section eval_cfg, torch::Device device,
                            int64_t batch_size, codes::Codes* qcodes_out,
                            codes::Codes* dbcodes_out) {
  auto opts = eval_options(eval_cfg);
  auto t0 = std::chrono::steady_clock::now();
  auto q = encode_indices(method, ds, split.query, dopts, device, batch_size);
  auto db = encode_indices(method, ds, split.database, dopts, device, batch_size);
  double t_encode = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Asymmetric PQ distances rank the queries' un-quantised embeddings.
  torch::Tensor query_vectors;
  if (opts.pq_distance == eval::PQDistance::adc && ds.has_labels() && dopts.protocol == Protocol::label)
    query_vectors = map_indices(method, ds, split.query, dopts, device, batch_size,
                                [&](const torch::Tensor& x) { return method.embed(x); });
  nlohmann::json r = evaluate_code_sets(q, db, ds, split, dopts, opts, query_vectors);
  r["method"] = method.name();
  r["encode_seconds"] = t_encode;
  r["eval_seconds"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() - t_encode;
  if (qcodes_out) *qcodes_out = q;
  if (dbcodes_out) *dbcodes_out = db;
  return r;
}

LoadedRun load_run(const std::string& run_dir, const std::vector<std::string>& overrides,
                   RunAccess access, const std::string& what) {
  LoadedRun r;
  r.dir = run_dir;
  const RunDir rd(run_dir);
  const std::string cfg_path = rd.config();
  if (!fs::exists(cfg_path)) fail("{}: not a run directory (no config.yaml)", run_dir);
  r.lock = std::make_unique<DirLock>(
      run_dir, access == RunAccess::write ? DirLock::Mode::exclusive : DirLock::Mode::shared,
      what);
  r.config = Config::load(cfg_path, overrides);
  TopLevel top = TopLevel::from_yaml(r.config);
  r.data_options = data::DataOptions::from_yaml(r.config.section("data"));
  auto train_opts = TrainOptions::from_yaml(r.config.section("train"));
  r.eval_batch_size = eval_batch_size(r.config);
  set_threads(resolve_threads(top.threads, "threads"));
  seed_everything(static_cast<uint64_t>(top.seed));
  torch::Device device = resolve_device(top.device, r.config.where("device") + ": device");
  r.dataset = data::load_dataset(r.data_options);
  r.split = data::make_split(r.dataset, r.data_options);
  r.context = make_context(r.dataset, r.data_options, device, static_cast<uint64_t>(top.seed),
                           train_opts.iterations);
  Section model_cfg = r.config.section("model");
  register_builtin_methods();
  r.method = create_method(top.method, model_cfg, r.context, "method");
  if (auto* mod = r.method->module()) mod->to(device);
  const std::string method_path = rd.method_file();
  if (!fs::exists(method_path))
    fail("{}: no trained model (the run has not finished; `hashlab train --resume --run-dir {}` "
         "completes it)",
         method_path, run_dir);
  read_model_file(method_path, *r.method, build_record(r.config, *r.method, r.context),
                   cfg_path + (overrides.empty() ? "" : " with the overrides"));
  if (auto* mod = r.method->module()) mod->to(device);
  return r;
}

RunSplit load_run_split(const std::string& run_dir, const std::vector<std::string>& overrides,
                        const std::string& what) {
  RunSplit r;
  const RunDir rd(run_dir);
  if (!fs::exists(rd.config())) fail("{}: not a run directory (no config.yaml)", run_dir);
  r.lock = std::make_unique<DirLock>(run_dir, DirLock::Mode::shared, what);
  r.config = Config::load(rd.config(), overrides);
  r.data_options = data::DataOptions::from_yaml(r.config.section("data"));
  r.dataset = data::load_dataset(r.data_options);
  r.split = data::make_split(r.dataset, r.data_options);
  return r;
}

nlohmann::json evaluate_saved_codes(const std::string& run_dir,
                                    const std::vector<std::string>& overrides,
                                    const std::string& what) {
  RunSplit rs = load_run_split(run_dir, overrides, what);
  const std::string qpath = RunDir(run_dir).query_codes();
  const std::string dbpath = RunDir(run_dir).database_codes();
  Section e = rs.config.section("eval");
  e.known({"batch_size"});
  const auto opts = eval::EvalOptions::from_yaml(e);
  const auto q = codes::read_codes(qpath);
  const auto db = codes::read_codes(dbpath);
  if (q.kind() != db.kind() || q.nbits() != db.nbits())
    fail("{} has {} but {} has {}", qpath, q.describe(), dbpath, db.describe());
  if (q.size() != rs.split.query.size(0) || db.size() != rs.split.database.size(0))
    fail("{}: the saved codes ({} queries, {} database items) do not match the run's split "
         "({} and {}); re-encode with `hashlab eval --run {}`",
         run_dir, q.size(), db.size(), rs.split.query.size(0), rs.split.database.size(0), run_dir);
  if (opts.pq_distance == eval::PQDistance::adc)
    fail("{}: the saved codes have no query vectors for eval.pq_distance=adc; evaluate with the "
         "model (without --from-codes)",
         run_dir);
  auto r = evaluate_code_sets(q, db, rs.dataset, rs.split, rs.data_options, opts);
  q.check_unchanged("during the evaluation");
  db.check_unchanged("during the evaluation");
  return r;
}

}  // namespace hashlab
