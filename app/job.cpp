#include "app/job.h"

#include "app/report.h"
#include "app/run_dir.h"
#include "csrc/core/distributed.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "csrc/codes/code_file.h"
#include "csrc/core/checkpoint.h"
#include "csrc/core/device.h"
#include "csrc/core/error.h"
#include "csrc/core/fs_util.h"
#include "csrc/core/json_text.h"
#include "csrc/core/logging.h"
#include "app/builtin_methods.h"
#include "csrc/eval/evaluate_codes.h"
#include "csrc/eval/metric_catalog.h"
#include "csrc/eval/metrics.h"
#include "csrc/export/script_emitter.h"
#include "datasets/loader.h"
#include "trainers/trainer.h"

namespace hashlab {
namespace fs = std::filesystem;

namespace {

// Top-level keys besides the sections read by their owners.
struct TopLevel {
  std::string name;
  int64_t seed = 0;
  std::string threads = "auto";
  std::string device = "auto";
  std::string method;
  bool save_codes = true;
  bool export_model = true;
  int64_t eval_batch_size = 256;
};

TopLevel read_top_level(const Config& cfg) {
  TopLevel t;
  Section root = cfg.root();
  std::string stem = cfg.path().empty() ? "run" : fs::path(cfg.path()).stem().string();
  t.name = stem;
  root.get("name", t.name);
  root.get("seed", t.seed, Range{0, 9.2e18});
  // threads: "auto" or an integer.
  if (root.has("threads")) {
    const YAML::Node& n = root.node()["threads"];
    if (!n.IsScalar()) fail("{}: expected 'auto' or an integer", root.where("threads"));
    t.threads = n.Scalar();
  }
  root.known({"threads"});
  root.get("device", t.device);
  t.method = root.require<std::string>("method");
  Section out = root.sub("output");
  out.get("save_codes", t.save_codes);
  out.get("export", t.export_model);
  out.finish();
  root.known({"data", "model", "optim", "train", "eval", "dist"});
  root.finish();
  if (t.name.empty() || t.name.find('/') != std::string::npos || t.name == "." || t.name == "..")
    fail("{}: '{}' is not usable as a directory name", root.where("name"), t.name);
  return t;
}

// Eval section: the metric options plus `batch_size` for encoding.
int64_t eval_batch_size(const Config& cfg) {
  int64_t bs = 256;
  Section e = cfg.section("eval");
  e.get("batch_size", bs, Range{1, 1e7});
  return bs;
}

eval::EvalOptions eval_options(Section s) {
  s.known({"batch_size"});
  return eval::EvalOptions::from_yaml(s);
}

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

MethodContext make_context(const data::Dataset& ds, const data::DataOptions& dopts,
                           torch::Device device, uint64_t seed, int64_t total_steps) {
  MethodContext ctx;
  ctx.input_shape = item_shape(ds, dopts);
  ctx.num_classes = ds.num_classes;
  ctx.multi_label = ds.multi_label;
  ctx.device = device;
  ctx.seed = seed;
  ctx.total_steps = total_steps;
  if (ds.is_image()) {
    ctx.input_scale = dopts.images.scale;
    ctx.mean = dopts.images.mean;
    ctx.std = dopts.images.std;
  } else {
    ctx.input_scale = 1.0;
  }
  return ctx;
}

std::string summary_line(const nlohmann::json& r) {
  std::string s;
  // The code length, then the headline metrics (csrc/eval/metric_catalog.h).
  std::vector<std::string> keys = {"bits"};
  for (const auto& m : eval::metric_catalog())
    if (m.headline && m.kind == eval::MetricKind::scalar) keys.push_back(m.key);
  for (const auto& key : keys) {
    if (!r.contains(key)) continue;
    const auto& v = r[key];
    s += fmt::format("{}{}={}", s.empty() ? "" : "  ", key,
                     v.is_number_float() ? fmt::format("{:.4f}", v.get<double>()) : json_text(v));
  }
  return s;
}

}  // namespace

namespace {
// report.html of the run as it stands. A report that cannot be written never
// fails the run: everything it shows is already on disk.
void write_report(const std::string& run_dir) {
  try {
    log().info("report: {}", report::write_run_report(run_dir));
  } catch (const std::exception& e) {
    log().warn("no report.html: {}", e.what());
  }
}
}  // namespace

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

namespace {

// What a resumed run may not change: the checkpoint was trained with them.
const std::vector<std::string> kFixedOnResume = {"method", "data", "seed"};

// What this rank is about to train, for the ranks of a data-parallel job to
// compare before anything is written (dist::agree_on_fingerprint): every
// config key but those a rank may set for itself (threads, the timeout) and
// the data files' paths (another machine may keep the same files elsewhere:
// their contents are compared instead), the data's contents, the split,
// the method's build record and the code length.
dist::Fingerprint train_fingerprint(const Config& cfg, const data::Dataset& ds,
                                    const data::Split& split, const std::string& build,
                                    const Method& m, bool resume) {
  auto bytes = [](const torch::Tensor& t) {
    if (!t.defined()) return std::string("(none)");
    const torch::Tensor c = t.contiguous();
    return fmt::format("[{}] {}, {}", fmt::join(c.sizes(), ", "), std::string(c.dtype().name()),
                       dist::checksum(c.data_ptr(), c.nbytes()));
  };
  dist::Fingerprint f;
  std::vector<std::string> tops;
  for (const auto& kv : cfg.node()) tops.push_back(kv.first.Scalar());
  for (const auto& [k, v] : flat_keys(cfg, tops)) {
    if (k == "threads" || k == "dist.timeout" || k == "data.root" ||
        k.rfind("data.files", 0) == 0 || k.rfind("data.labels", 0) == 0)
      continue;
    f.emplace_back(k, v);
  }
  f.emplace_back("--resume", resume ? "yes" : "no");
  f.emplace_back("the data's items", std::to_string(ds.size()));
  std::string paths;
  for (const auto& p : ds.image_paths) paths += p + "\n";
  f.emplace_back("the data's features (contents)",
                 ds.features.defined() ? bytes(ds.features) : dist::checksum(paths.data(), paths.size()));
  f.emplace_back("the data's labels (contents)", bytes(ds.labels));
  f.emplace_back("the split's queries", bytes(split.query));
  f.emplace_back("the split's database", bytes(split.database));
  f.emplace_back("the split's training set", bytes(split.train));
  f.emplace_back("the method's build record", build);
  f.emplace_back("the code length", std::to_string(m.nbits()));
  return f;
}

// Removes a run directory this job created when the job fails before
// writing anything into it (a refused data-parallel job, bad data): no empty
// or lock-only directory is left behind.
struct CreatedDirectory {
  std::string path;
  bool keep = false;
  ~CreatedDirectory() {
    if (path.empty() || keep) return;
    std::error_code ec;
    fs::remove(fs::path(path) / ".lock", ec);
    fs::remove(path, ec);  // only if empty: a stale file of someone else's stays
  }
};


}  // namespace

nlohmann::json run_train_job(const TrainJobOptions& jo) {
  // ---- config (and, on resume, the run directory it belongs to)
  std::string run_dir = jo.run_dir;
  Config cfg;
  std::vector<std::string> resume_changes;
  std::map<std::string, std::string> saved_model;  // model options in config.yaml, on resume
  if (jo.resume) {
    if (run_dir.empty()) {
      if (jo.config_path.empty()) fail("--resume needs -c CONFIG or --run-dir DIR");
      Config probe = Config::load(jo.config_path, jo.overrides);
      TopLevel t = read_top_level(probe);
      run_dir = RunDir::latest(jo.runs_root, t.name);
      if (run_dir.empty())
        fail("--resume: no earlier run of '{}' under {}/{}", t.name, jo.runs_root, t.name);
    }
    std::string saved = RunDir(run_dir).config();
    if (!fs::exists(saved)) fail("--resume: {} has no config.yaml (not a run directory)", run_dir);
    cfg = Config::load(saved, jo.overrides);
    // Overrides may change how training goes on (iterations, lr, eval,
    // threads, a loss weight: recorded in config.yaml below), not the data or
    // the seed the checkpoint was trained with; model overrides that change
    // the model's shape are refused once the model is built.
    Config before = Config::load(saved);
    saved_model = flat_keys(before, {"model"});
    auto changed = key_differences(flat_keys(before, kFixedOnResume), flat_keys(cfg, kFixedOnResume));
    if (!changed.empty())
      fail("--resume {}: the overrides change what the checkpoint was trained with ({}); start a "
           "new run instead",
           run_dir, fmt::format("{}", fmt::join(changed, "; ")));
    std::vector<std::string> all_tops;
    for (const auto& kv : cfg.node()) all_tops.push_back(kv.first.Scalar());
    for (const auto& kv : before.node()) all_tops.push_back(kv.first.Scalar());
    resume_changes = key_differences(flat_keys(before, all_tops), flat_keys(cfg, all_tops));
  } else {
    if (jo.config_path.empty()) fail("hashlab train needs -c CONFIG");
    cfg = Config::load(jo.config_path, jo.overrides);
  }
  if (jo.print_config) {
    std::cout << cfg.dump();
    return {};
  }

  // ---- validate every section we own before touching data
  TopLevel top = read_top_level(cfg);
  auto dopts = data::DataOptions::from_yaml(cfg.section("data"));
  auto train_opts = TrainOptions::from_yaml(cfg.section("train"));
  auto optim_opts = OptimOptions::from_yaml(cfg.section("optim"));
  const eval::EvalOptions eval_opts = eval_options(cfg.section("eval"));  // validates
  const int64_t eval_bs = eval_batch_size(cfg);
  register_builtin_methods();
  if (!method_registry().has(top.method)) {
    auto names = method_registry().names();
    std::string hint = did_you_mean(top.method, names);
    fail("{}: method: unknown method '{}' (known: {}){}", cfg.where("method"), top.method,
         fmt::format("{}", fmt::join(names, ", ")),
         hint.empty() ? "" : " (did you mean '" + hint + "'?)");
  }

  set_threads(resolve_threads(top.threads, cfg.where("threads") + ": threads"));
  seed_everything(static_cast<uint64_t>(top.seed));
  torch::Device device = resolve_device(top.device, cfg.where("device") + ": device");

  // ---- data-parallel: this process may be one rank of a job (torchrun's
  // variables, or `hashlab train --nproc N`). Rank 0 alone writes the run.
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  // dist: backend (auto | gloo | nccl) and timeout (seconds a collective
  // waits; HASHLAB_DIST_TIMEOUT wins), validated on one process too.
  std::string backend = "auto";
  dist::DistEnv denv = dist::DistEnv::from_env();
  {
    Section ds = cfg.section("dist");
    ds.get_choice("backend", backend, {"auto", "gloo", "nccl"});
    if (ds.has("timeout")) {
      int64_t timeout = 300;
      ds.get("timeout", timeout, Range{1, 86400 * 7});
      if (!denv.timeout_from_env) denv.timeout = std::chrono::seconds(timeout);
    }
    ds.finish();
  }
  if (denv.distributed()) {
    dist::check_backend(backend, c10::DeviceTypeName(device.type(), /*lower_case=*/true),
                          dist::rank_prefix(denv) + cfg.where("dist.backend") + ": dist.backend");
    if (train_opts.batch_size % denv.world_size != 0)
      fail("{}: train.batch_size {} is the global batch and must split evenly over {} ranks",
           cfg.where("train.batch_size"), train_opts.batch_size, denv.world_size);
    group = dist::make_gloo_group(denv);
  }
  const bool writer = denv.rank == 0;

  // ---- run directory: created (a fresh name never collides: mkdir is
  // atomic) and locked for the life of this process, so a second writer is
  // refused instead of mixing its files with ours.
  CreatedDirectory created;
  std::unique_ptr<DirLock> lock;
  if (writer) {
    if (run_dir.empty()) {
      run_dir = make_unique_directory((fs::path(jo.runs_root) / top.name / timestamp_now()).string());
      created.path = run_dir;
    } else if (!fs::exists(run_dir)) {
      fs::create_directories(run_dir);
      created.path = run_dir;
    }
    lock = std::make_unique<DirLock>(
        run_dir, DirLock::Mode::exclusive,
        fmt::format("hashlab train{} --run-dir {}", jo.resume ? " --resume" : "", run_dir));
    for (const auto& f : remove_stale_temp_files(run_dir))
      log().warn("removed {}, left by a writer that was killed", f);
    if (!jo.resume && RunDir(run_dir).holds_run())
      fail("run directory {} already holds a run; pick another --run-dir, or add --resume to "
           "continue it (from its last checkpoint, or from the start if it has none)",
           run_dir);
  }
  if (group) run_dir = dist::broadcast_string(*group, run_dir, "data-parallel training");  // rank 0 chose it
  const RunDir rd(run_dir);
  const std::string last_ckpt = rd.last_checkpoint();

  // ---- data
  auto t_data = std::chrono::steady_clock::now();
  data::Dataset ds = data::load_dataset(dopts);
  data::Split split = data::make_split(ds, dopts);
  log().info("data {}: {} items, {} queries, {} database, {} train ({:.1f} s)", ds.name, ds.size(),
             split.query.size(0), split.database.size(0), split.train.size(0),
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t_data).count());

  // ---- method
  MethodContext ctx =
      make_context(ds, dopts, device, static_cast<uint64_t>(top.seed), train_opts.iterations);
  Section model_cfg = cfg.section("model");
  auto method = create_method(top.method, model_cfg, ctx, cfg.where("method") + ": method");
  if (auto* mod = method->module()) mod->to(device);
  if (eval_opts.pq_distance == eval::PQDistance::adc && method->code_kind() != codes::CodeKind::pq)
    fail("{}: eval.pq_distance: adc ranks PQ codes, but method '{}' makes binary codes",
         cfg.where("eval.pq_distance"), top.method);
  const std::string build = build_record(cfg, *method, ctx);
  // Before anything is written: a checkpoint of another build is refused here.
  if (jo.resume && fs::exists(last_ckpt))
    Checkpointer::check_resumable(last_ckpt, build, without_encode_options(saved_model, *method),
                                  *method);

  // ---- the ranks agree on what they train, or all refuse, before anything
  // is written or any collective whose sizes depend on it runs (Gloo's
  // transport aborts the process on a message of another size)
  if (group) {
    Trainer::check_data_parallel(*method, denv.world_size);
    dist::agree_on_fingerprint(*group,
                               train_fingerprint(cfg, ds, split, build, *method, jo.resume),
                               "data-parallel training");
  }

  // ---- only now write into the run directory (rank 0)
  created.keep = true;
  std::unique_ptr<MetricsWriter> metrics_file;
  MetricsWriter closed;  // ranks other than 0 write nothing
  if (writer) {
    rd.create_layout();
    if (!jo.resume || !resume_changes.empty()) atomic_write(rd.config(), cfg.dump());
    add_log_file(rd.log());
    metrics_file = std::make_unique<MetricsWriter>(rd.metrics());
  }
  MetricsWriter& metrics = writer ? *metrics_file : closed;
  log().info("{}run directory: {}", dist::rank_prefix(denv), run_dir);
  for (const auto& c : resume_changes) log().info("--resume changes {} (config.yaml updated)", c);
  log().info("method {} | device {} | {} threads | seed {}", top.method, device.str(),
             at::get_num_threads(), top.seed);
  nlohmann::json start = {{"method", top.method}, {"bits", method->nbits()},
                          {"device", device.str()}, {"threads", at::get_num_threads()},
                          {"resume", jo.resume}};
  if (!resume_changes.empty()) start["changes"] = resume_changes;
  if (denv.distributed()) start["world_size"] = denv.world_size;
  if (writer) metrics.write("start", start);

  // From here a failure is recorded in log.txt and metrics.jsonl as well as
  // reported on stderr, so the run directory never claims a run finished
  // that did not (an interrupt is recorded by the trainer).
  try {
    // ---- train or fit
    data::LoaderOptions lo;
    lo.batch_size(train_opts.batch_size).shuffle(true).drop_last(true).augment(true);
    lo.seed(static_cast<uint64_t>(top.seed)).prefetch(train_opts.prefetch).device(device);
    lo.images(dopts.images);
    lo.shard_rank(denv.rank).shard_count(denv.world_size);
    data::Loader train_loader(ds, split.train, lo);
    TrainerSetup setup;
    if (writer) {
      setup.checkpoint_dir = rd.checkpoints();
      setup.metrics = &metrics;
      setup.evaluate = [&] {
        return evaluate_run(*method, ds, split, dopts, cfg.section("eval"), device, eval_bs);
      };
    }
    setup.build_record = build;
    setup.resume_hint = fmt::format("hashlab train --resume --run-dir {}", run_dir);
    setup.group = group;
    Trainer trainer(*method, &train_loader, train_opts, optim_opts, device, setup);
    auto t_train = std::chrono::steady_clock::now();
    if (jo.resume) {
      if (fs::exists(last_ckpt)) {
        trainer.resume(last_ckpt);
      } else {
        log().warn("--resume: {} does not exist (the run stopped before its first checkpoint); "
                   "{} from the start",
                   last_ckpt, trainer.fitting() ? "fitting" : "training");
      }
    }
    // Every rank resumes from the same step (a rank on another machine that
    // cannot see rank 0's checkpoint would start from step 0).
    if (group)
      dist::agree_on_fingerprint(
          *group, {{"the step training resumes from", std::to_string(trainer.step())}},
          "data-parallel training");
    trainer.train();
    // This session's wall time; train_seconds adds the sessions this run
    // resumed (a resumed run reports the whole training).
    const double session_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_train).count();
    const double train_seconds = trainer.train_seconds();
    if (!writer) return {};  // rank 0 evaluates and writes the run
    write_model_file(rd.method_file(), *method, build);

    // ---- evaluate, save codes, export; the final evaluation is recorded
    // last, so "final" in metrics.jsonl means every file was written.
    codes::Codes qcodes, dbcodes;
    nlohmann::json result = evaluate_run(*method, ds, split, dopts, cfg.section("eval"), device,
                                         eval_bs, &qcodes, &dbcodes);
    result["step"] = trainer.step();
    result["train_seconds"] = train_seconds;
    if (jo.resume) result["session_seconds"] = session_seconds;
    if (top.save_codes) {
      fs::create_directories(rd.codes_dir());
      codes::write_codes(rd.query_codes(), qcodes);
      codes::write_codes(rd.database_codes(), dbcodes);
    }
    if (top.export_model) {
      try {
        auto module = method->to_torchscript(ctx);
        const std::string path = rd.hasher();
        exporter::save_hasher(module, path);
        log().info("exported TorchScript hasher to {}", path);
      } catch (const Error& e) {
        log().warn("no TorchScript export: {}", e.what());
      } catch (const c10::Error& e) {
        // The trained model and codes are already saved; report and go on.
        log().error("TorchScript export failed: {}", e.what_without_backtrace());
      }
    }
    result["final"] = true;
    metrics.write("eval", result);
    log().info("{} done in {:.1f} s: {}", top.method, train_seconds, summary_line(result));
    write_report(run_dir);
    result["run_dir"] = run_dir;
    return result;
  } catch (const ExitStatus&) {
    if (writer) write_report(run_dir);  // interrupted: the curves so far
    throw;
  } catch (const std::exception& e) {
    std::string msg = e.what();
    if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) msg = ce->what_without_backtrace();
    if (!writer) throw;
    try {
      metrics.write("error", {{"message", msg}});
    } catch (const std::exception&) {
      // metrics.jsonl cannot be written (disk full): the original error matters.
    }
    log_to_file_only(fmt::format("error: {}", msg));
    write_report(run_dir);
    throw;
  }
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
  TopLevel top = read_top_level(r.config);
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

}  // namespace hashlab
