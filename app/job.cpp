#include "app/job.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>

#include "csrc/codes/code_file.h"
#include "csrc/core/checkpoint.h"
#include "csrc/core/device.h"
#include "csrc/core/error.h"
#include "csrc/core/fs_util.h"
#include "csrc/core/logging.h"
#include "app/builtin_methods.h"
#include "csrc/eval/evaluate_codes.h"
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
  root.known({"data", "model", "optim", "train", "eval"});
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

MethodContext make_context(const data::Dataset& ds, const data::DataOptions& dopts,
                           torch::Device device, uint64_t seed, int64_t total_steps) {
  MethodContext ctx;
  data::Loader probe(ds, torch::arange(std::min<int64_t>(ds.size(), 1), torch::kLong),
                     eval_loader_options(dopts, torch::kCPU, 1).prefetch(0));
  auto b = probe.batch_at(0);
  ctx.input_shape.assign(b.x.sizes().begin() + 1, b.x.sizes().end());
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

void write_method_file(const std::string& path, const Method& m) {
  torch::serialize::OutputArchive a, inner;
  m.save(inner);
  a.write("method", inner);
  archive_write(a, "method_name", m.name());
  archive_write(a, "nbits", static_cast<int64_t>(m.nbits()));
  write_checkpoint(path, a);
}

void read_method_file(const std::string& path, Method& m) {
  torch::serialize::InputArchive a, inner;
  read_checkpoint(path, a);
  std::string name = archive_read_string(a, "method_name");
  if (name != m.name())
    fail("{}: holds a '{}' model but the run's config builds '{}'", path, name, m.name());
  if (!a.try_read("method", inner)) fail("{}: no method state inside", path);
  m.load(inner);
}

std::string summary_line(const nlohmann::json& r) {
  std::string s;
  for (const char* key : {"bits", "map_all", "map_all_tie_aware", "map_1000", "p_h2", "r_h2"}) {
    if (!r.contains(key)) continue;
    const auto& v = r[key];
    s += fmt::format("{}{}={}", s.empty() ? "" : "  ", key,
                     v.is_number_float() ? fmt::format("{:.4f}", v.get<double>()) : v.dump());
  }
  return s;
}

}  // namespace

std::string latest_run_dir(const std::string& root, const std::string& name) {
  fs::path dir = fs::path(root) / name;
  if (!fs::is_directory(dir)) return "";
  std::vector<std::string> runs;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && fs::exists(e.path() / "config.yaml")) runs.push_back(e.path().string());
  if (runs.empty()) return "";
  std::sort(runs.begin(), runs.end());
  return runs.back();
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

nlohmann::json evaluate_run(Method& method, const data::Dataset& ds, const data::Split& split,
                            const data::DataOptions& dopts, Section eval_cfg, torch::Device device,
                            int64_t batch_size, codes::Codes* qcodes_out,
                            codes::Codes* dbcodes_out) {
  auto opts = eval_options(eval_cfg);
  auto t0 = std::chrono::steady_clock::now();
  auto q = encode_indices(method, ds, split.query, dopts, device, batch_size);
  auto db = encode_indices(method, ds, split.database, dopts, device, batch_size);
  double t_encode = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::json r;
  if (ds.has_labels() && dopts.protocol == "label") {
    auto ql = ds.labels.index_select(0, split.query);
    auto dl = ds.labels.index_select(0, split.database);
    // Asymmetric PQ distances rank the queries' un-quantised embeddings.
    torch::Tensor query_vectors;
    if (opts.pq_distance == "adc")
      query_vectors = map_indices(method, ds, split.query, dopts, device, batch_size,
                                  [&](const torch::Tensor& x) { return method.embed(x); });
    r = eval::evaluate_codes(q, db, ql, dl, opts, query_vectors);
  } else {
    if (!ds.features.defined())
      fail("evaluation: the Euclidean protocol needs in-memory features");
    auto f = ds.features.flatten(1).to(torch::kFloat32);
    r = eval::evaluate_codes_euclidean(q, db, f.index_select(0, split.query),
                                       f.index_select(0, split.database), opts);
  }
  r["method"] = method.name();
  r["encode_seconds"] = t_encode;
  r["eval_seconds"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() - t_encode;
  if (qcodes_out) *qcodes_out = q;
  if (dbcodes_out) *dbcodes_out = db;
  return r;
}

nlohmann::json run_train_job(const TrainJobOptions& jo) {
  // ---- config (and, on resume, the run directory it belongs to)
  std::string run_dir = jo.run_dir;
  Config cfg;
  if (jo.resume) {
    if (run_dir.empty()) {
      if (jo.config_path.empty()) fail("--resume needs -c CONFIG or --run-dir DIR");
      Config probe = Config::load(jo.config_path, jo.overrides);
      TopLevel t = read_top_level(probe);
      run_dir = latest_run_dir(jo.runs_root, t.name);
      if (run_dir.empty())
        fail("--resume: no earlier run of '{}' under {}/{}", t.name, jo.runs_root, t.name);
    }
    std::string saved = (fs::path(run_dir) / "config.yaml").string();
    if (!fs::exists(saved)) fail("--resume: {} has no config.yaml (not a run directory)", run_dir);
    cfg = Config::load(saved, jo.overrides);
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

  // ---- run directory
  if (run_dir.empty())
    run_dir = (fs::path(jo.runs_root) / top.name / timestamp_now()).string();
  if (!jo.resume && fs::exists(fs::path(run_dir) / "metrics.jsonl"))
    fail("run directory {} already holds a run; pick another --run-dir or add --resume", run_dir);
  fs::create_directories(fs::path(run_dir) / "checkpoints");
  fs::create_directories(fs::path(run_dir) / "model");
  if (!jo.resume) atomic_write((fs::path(run_dir) / "config.yaml").string(), cfg.dump());
  add_log_file((fs::path(run_dir) / "log.txt").string());
  MetricsWriter metrics((fs::path(run_dir) / "metrics.jsonl").string());
  log().info("run directory: {}", run_dir);
  log().info("method {} | device {} | {} threads | seed {}", top.method, device.str(),
             at::get_num_threads(), top.seed);

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
  if (eval_opts.pq_distance == "adc" && method->code_kind() != codes::CodeKind::pq)
    fail("{}: eval.pq_distance: adc ranks PQ codes, but method '{}' makes binary codes",
         cfg.where("eval.pq_distance"), top.method);
  metrics.write("start", {{"method", top.method}, {"bits", method->nbits()},
                          {"device", device.str()}, {"threads", at::get_num_threads()},
                          {"resume", jo.resume}});

  // ---- train or fit
  data::LoaderOptions lo;
  lo.batch_size(train_opts.batch_size).shuffle(true).drop_last(true).augment(true);
  lo.seed(static_cast<uint64_t>(top.seed)).prefetch(train_opts.prefetch).device(device);
  lo.images(dopts.images);
  data::Loader train_loader(ds, split.train, lo);
  Trainer trainer(*method, &train_loader, train_opts, optim_opts, device,
                  (fs::path(run_dir) / "checkpoints").string(), &metrics);
  trainer.evaluate = [&] {
    return evaluate_run(*method, ds, split, dopts, cfg.section("eval"), device, eval_bs);
  };
  trainer.resume_hint = fmt::format("hashlab train --resume --run-dir {}", run_dir);
  auto t_train = std::chrono::steady_clock::now();
  if (jo.resume) {
    std::string last = trainer.last_checkpoint_path();
    if (fs::exists(last)) {
      trainer.resume(last);
    } else if (method->fits()) {
      log().warn("--resume: {} does not exist (the fit stopped before its first checkpoint); "
                 "fitting from the start",
                 last);
    } else {
      fail("--resume: {} does not exist", last);
    }
  }
  trainer.train();
  // This session's wall time; train_seconds adds the sessions this run
  // resumed (a resumed run reports the whole training).
  const double session_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_train).count();
  const double train_seconds = trainer.train_seconds();
  write_method_file((fs::path(run_dir) / "model" / "method.pt").string(), *method);

  // ---- evaluate, save codes, export
  codes::Codes qcodes, dbcodes;
  nlohmann::json result = evaluate_run(*method, ds, split, dopts, cfg.section("eval"), device,
                                       eval_bs, &qcodes, &dbcodes);
  result["step"] = trainer.step();
  result["train_seconds"] = train_seconds;
  if (jo.resume) result["session_seconds"] = session_seconds;
  result["final"] = true;
  metrics.write("eval", result);
  if (top.save_codes) {
    fs::create_directories(fs::path(run_dir) / "codes");
    codes::write_codes((fs::path(run_dir) / "codes" / "query.hlc").string(), qcodes);
    codes::write_codes((fs::path(run_dir) / "codes" / "database.hlc").string(), dbcodes);
  }
  if (top.export_model) {
    try {
      auto module = method->to_torchscript(ctx);
      std::string path = (fs::path(run_dir) / "model" / "hasher.pt").string();
      exporter::save_hasher(module, path);
      log().info("exported TorchScript hasher to {}", path);
    } catch (const Error& e) {
      log().warn("no TorchScript export: {}", e.what());
    } catch (const c10::Error& e) {
      // The trained model and codes are already saved; report and go on.
      log().error("TorchScript export failed: {}", e.what_without_backtrace());
    }
  }
  log().info("{} done in {:.1f} s: {}", top.method, train_seconds, summary_line(result));
  result["run_dir"] = run_dir;
  return result;
}

LoadedRun load_run(const std::string& run_dir, const std::vector<std::string>& overrides) {
  LoadedRun r;
  r.dir = run_dir;
  std::string cfg_path = (fs::path(run_dir) / "config.yaml").string();
  if (!fs::exists(cfg_path)) fail("{}: not a run directory (no config.yaml)", run_dir);
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
  read_method_file((fs::path(run_dir) / "model" / "method.pt").string(), *r.method);
  if (auto* mod = r.method->module()) mod->to(device);
  return r;
}

}  // namespace hashlab
