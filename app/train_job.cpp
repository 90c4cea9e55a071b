#include "app/train_job.h"

#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>

#include "app/builtin_methods.h"
#include "app/job.h"
#include "app/job_config.h"
#include "app/report.h"
#include "app/run_dir.h"
#include "csrc/codes/code_file.h"
#include "csrc/core/device.h"
#include "csrc/core/distributed.h"
#include "csrc/core/error.h"
#include "csrc/core/fs_util.h"
#include "csrc/core/json_text.h"
#include "csrc/core/logging.h"
#include "csrc/eval/metric_catalog.h"
#include "csrc/export/script_emitter.h"
#include "datasets/loader.h"
#include "trainers/checkpointer.h"
#include "trainers/trainer.h"

namespace hashlab {
namespace fs = std::filesystem;

namespace {

// What a resumed run may not change: the checkpoint was trained with them.
const std::vector<std::string> kFixedOnResume = {"method", "data", "seed"};

// The code length, then the headline metrics (csrc/eval/metric_catalog.h).
std::string summary_line(const nlohmann::json& r) {
  std::string s;
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

// report.html of the run as it stands. A report that cannot be written never
// fails the run: everything it shows is already on disk.
void write_report(const std::string& run_dir) {
  try {
    log().info("report: {}", report::write_run_report(run_dir));
  } catch (const std::exception& e) {
    log().warn("no report.html: {}", e.what());
  }
}

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

// One `hashlab train`, as the stages app/train_job.h lists. Each stage reads
// what the ones before it set; run() calls them in order.
class TrainJob {
 public:
  TrainJob(const TrainJobOptions& jo, std::string* run_dir_out)
      : jo_(jo), run_dir_(jo.run_dir), run_dir_out_(run_dir_out) {}

  nlohmann::json run() {
    resolve_config();
    if (jo_.print_config) {
      std::cout << cfg_.dump();
      return {};
    }
    read_options();
    join_group();
    open_run_dir();
    build_data();
    build_method();
    agree();
    start_records();
    // From here a failure is recorded in log.txt and metrics.jsonl as well
    // as reported on stderr, so the run directory never claims a run
    // finished that did not (an interrupt is recorded by the trainer).
    try {
      train();
      if (!writer_) return {};  // rank 0 evaluates and writes the run
      return finish();
    } catch (const ExitStatus&) {
      if (writer_) write_report(run_dir_);  // interrupted: the curves so far
      throw;
    } catch (const std::exception& e) {
      if (!writer_) throw;
      record_failure(e);
      throw;
    }
  }

 private:
  // ---- resolve_config: the config, or on --resume the run's own with the
  // overrides. Overrides may change how training goes on (iterations, lr,
  // eval, threads, a loss weight: recorded in config.yaml), not the data or
  // the seed the checkpoint was trained with; model overrides that change
  // the model's shape are refused once the model is built (build_method).
  Config given_config() const {
    if (jo_.config_text.empty()) return Config::load(jo_.config_path, jo_.overrides);
    Config c = Config::from_string(jo_.config_text, jo_.config_name);
    for (const auto& o : jo_.overrides) c.apply_override(o);
    return c;
  }

  void resolve_config() {
    const bool given = !jo_.config_path.empty() || !jo_.config_text.empty();
    if (!jo_.resume) {
      if (!given) fail("hashlab train needs -c CONFIG");
      cfg_ = given_config();
      return;
    }
    if (run_dir_.empty()) {
      if (!given) fail("--resume needs -c CONFIG or --run-dir DIR");
      Config probe = given_config();
      const TopLevel t = TopLevel::from_yaml(probe);
      run_dir_ = RunDir::latest(jo_.runs_root, t.name);
      if (run_dir_.empty())
        fail("--resume: no earlier run of '{}' under {}/{}", t.name, jo_.runs_root, t.name);
    }
    const std::string saved = RunDir(run_dir_).config();
    if (!fs::exists(saved)) fail("--resume: {} has no config.yaml (not a run directory)", run_dir_);
    cfg_ = Config::load(saved, jo_.overrides);
    const Config before = Config::load(saved);
    saved_model_ = flat_keys(before, {"model"});
    auto changed =
        key_differences(flat_keys(before, kFixedOnResume), flat_keys(cfg_, kFixedOnResume));
    if (!changed.empty())
      fail("--resume {}: the overrides change what the checkpoint was trained with ({}); start a "
           "new run instead",
           run_dir_, fmt::format("{}", fmt::join(changed, "; ")));
    std::vector<std::string> all_tops;
    for (const auto& kv : cfg_.node()) all_tops.push_back(kv.first.Scalar());
    for (const auto& kv : before.node()) all_tops.push_back(kv.first.Scalar());
    resume_changes_ = key_differences(flat_keys(before, all_tops), flat_keys(cfg_, all_tops));
  }

  // ---- read_options: every section this job owns, before touching data.
  void read_options() {
    top_ = TopLevel::from_yaml(cfg_);
    dopts_ = data::DataOptions::from_yaml(cfg_.section("data"));
    train_opts_ = TrainOptions::from_yaml(cfg_.section("train"));
    optim_opts_ = OptimOptions::from_yaml(cfg_.section("optim"));
    eval_opts_ = eval_options(cfg_.section("eval"));
    eval_bs_ = eval_batch_size(cfg_);
    register_builtin_methods();
    if (!method_registry().has(top_.method)) {
      auto names = method_registry().names();
      std::string hint = did_you_mean(top_.method, names);
      fail("{}: method: unknown method '{}' (known: {}){}", cfg_.where("method"), top_.method,
           fmt::format("{}", fmt::join(names, ", ")),
           hint.empty() ? "" : " (did you mean '" + hint + "'?)");
    }
    set_threads(resolve_threads(top_.threads, cfg_.where("threads") + ": threads"));
    seed_everything(static_cast<uint64_t>(top_.seed));
    device_ = resolve_device(top_.device, cfg_.where("device") + ": device");
    dist_opts_ = dist::DistOptions::from_yaml(cfg_.section("dist"));
  }

  // ---- join_group: this process may be one rank of a data-parallel job
  // (torchrun's variables, or `hashlab train --nproc N`). Rank 0 alone
  // writes the run.
  void join_group() {
    denv_ = dist::DistEnv::from_env();
    dist_opts_.apply_to(denv_);
    writer_ = denv_.rank == 0;
    if (!denv_.distributed()) return;
    dist::check_backend(dist_opts_.backend,
                        c10::DeviceTypeName(device_.type(), /*lower_case=*/true),
                        dist::rank_prefix(denv_) + cfg_.where("dist.backend") + ": dist.backend");
    if (train_opts_.batch_size % denv_.world_size != 0)
      fail("{}: train.batch_size {} is the global batch and must split evenly over {} ranks",
           cfg_.where("train.batch_size"), train_opts_.batch_size, denv_.world_size);
    group_ = dist::make_gloo_group(denv_);
  }

  // ---- open_run_dir: created (a fresh name never collides: mkdir is
  // atomic) and locked for the life of this process, so a second writer is
  // refused instead of mixing its files with ours. Nothing is written yet.
  void open_run_dir() {
    if (writer_) {
      if (run_dir_.empty()) {
        run_dir_ = make_unique_directory(
            (fs::path(jo_.runs_root) / top_.name / timestamp_now()).string());
        created_.path = run_dir_;
      } else if (!fs::exists(run_dir_)) {
        fs::create_directories(run_dir_);
        created_.path = run_dir_;
      }
      lock_ = std::make_unique<DirLock>(
          run_dir_, DirLock::Mode::exclusive,
          fmt::format("hashlab train{} --run-dir {}", jo_.resume ? " --resume" : "", run_dir_));
      for (const auto& f : remove_stale_temp_files(run_dir_))
        log().warn("removed {}, left by a writer that was killed", f);
      if (!jo_.resume && RunDir(run_dir_).holds_run())
        fail("run directory {} already holds a run; pick another --run-dir, or add --resume to "
             "continue it (from its last checkpoint, or from the start if it has none)",
             run_dir_);
    }
    if (group_)  // rank 0 chose it
      run_dir_ = dist::broadcast_string(*group_, run_dir_, "data-parallel training");
    rd_.emplace(run_dir_);
    if (run_dir_out_) *run_dir_out_ = run_dir_;
  }

  // ---- build_data
  void build_data() {
    auto t0 = std::chrono::steady_clock::now();
    ds_ = data::load_dataset(dopts_);
    split_ = data::make_split(ds_, dopts_);
    log().info("data {}: {} items, {} queries, {} database, {} train ({:.1f} s)", ds_.name,
               ds_.size(), split_.query.size(0), split_.database.size(0), split_.train.size(0),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }

  // ---- build_method: before anything is written, a checkpoint of another
  // build is refused here.
  void build_method() {
    ctx_ = make_context(ds_, dopts_, device_, static_cast<uint64_t>(top_.seed),
                        train_opts_.iterations);
    Section model_cfg = cfg_.section("model");
    method_ = create_method(top_.method, model_cfg, ctx_, cfg_.where("method") + ": method");
    if (auto* mod = method_->module()) mod->to(device_);
    if (eval_opts_.pq_distance == eval::PQDistance::adc &&
        method_->code_kind() != codes::CodeKind::pq)
      fail("{}: eval.pq_distance: adc ranks PQ codes, but method '{}' makes binary codes",
           cfg_.where("eval.pq_distance"), top_.method);
    build_ = build_record(cfg_, *method_, ctx_);
    if (jo_.resume && fs::exists(rd_->last_checkpoint()))
      Checkpointer::check_resumable(rd_->last_checkpoint(), build_,
                                    without_encode_options(saved_model_, *method_), *method_);
  }

  // ---- agree: the ranks agree on what they train, or all refuse, before
  // anything is written or any collective whose sizes depend on it runs
  // (Gloo's transport aborts the process on a message of another size).
  void agree() {
    if (!group_) return;
    Trainer::check_data_parallel(*method_, denv_.world_size);
    dist::agree_on_fingerprint(*group_,
                               train_fingerprint(cfg_, ds_, split_, build_, *method_, jo_.resume),
                               "data-parallel training");
  }

  // ---- start_records: only now is the run directory written (rank 0).
  void start_records() {
    created_.keep = true;
    if (writer_) {
      rd_->create_layout();
      if (!jo_.resume || !resume_changes_.empty()) atomic_write(rd_->config(), cfg_.dump());
      add_log_file(rd_->log());
      metrics_ = std::make_unique<MetricsWriter>(rd_->metrics());
    } else {
      metrics_ = std::make_unique<MetricsWriter>();  // ranks other than 0 write nothing
    }
    log().info("{}run directory: {}", dist::rank_prefix(denv_), run_dir_);
    for (const auto& c : resume_changes_) log().info("--resume changes {} (config.yaml updated)", c);
    log().info("method {} | device {} | {} threads | seed {}", top_.method, device_.str(),
               at::get_num_threads(), top_.seed);
    nlohmann::json start = {{"method", top_.method}, {"bits", method_->nbits()},
                            {"device", device_.str()}, {"threads", at::get_num_threads()},
                            {"resume", jo_.resume}};
    if (!resume_changes_.empty()) start["changes"] = resume_changes_;
    if (denv_.distributed()) start["world_size"] = denv_.world_size;
    if (writer_) metrics_->write("start", start);
  }

  // ---- train: the Trainer over the method, resumed from the last
  // checkpoint (every rank from the same step) or from the start.
  void train() {
    data::LoaderOptions lo;
    lo.batch_size(train_opts_.batch_size).shuffle(true).drop_last(true).augment(true);
    lo.seed(static_cast<uint64_t>(top_.seed)).prefetch(train_opts_.prefetch).device(device_);
    lo.images(dopts_.images);
    lo.shard_rank(denv_.rank).shard_count(denv_.world_size);
    data::Loader train_loader(ds_, split_.train, lo);
    TrainerSetup setup;
    if (writer_) {
      setup.checkpoint_dir = rd_->checkpoints();
      setup.metrics = metrics_.get();
      setup.evaluate = [this] {
        return evaluate_run(*method_, ds_, split_, dopts_, cfg_.section("eval"), device_, eval_bs_);
      };
    }
    setup.build_record = build_;
    setup.resume_hint = fmt::format("hashlab train --resume --run-dir {}", run_dir_);
    setup.group = group_;
    Trainer trainer(*method_, &train_loader, train_opts_, optim_opts_, device_, setup);
    auto t0 = std::chrono::steady_clock::now();
    const std::string last = rd_->last_checkpoint();
    if (jo_.resume) {
      if (fs::exists(last)) {
        trainer.resume(last);
      } else {
        log().warn("--resume: {} does not exist (the run stopped before its first checkpoint); "
                   "{} from the start",
                   last, trainer.fitting() ? "fitting" : "training");
      }
    }
    // A rank on another machine that cannot see rank 0's checkpoint would
    // start from step 0.
    if (group_)
      dist::agree_on_fingerprint(
          *group_, {{"the step training resumes from", std::to_string(trainer.step())}},
          "data-parallel training");
    trainer.train();
    // This session's wall time; train_seconds adds the sessions this run
    // resumed (a resumed run reports the whole training).
    session_seconds_ =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    train_seconds_ = trainer.train_seconds();
    step_ = trainer.step();
  }

  // ---- finish (rank 0): model file, evaluation, codes, export; the final
  // evaluation is recorded last, so "final" in metrics.jsonl means every
  // file was written.
  nlohmann::json finish() {
    write_model_file(rd_->method_file(), *method_, build_);
    codes::Codes qcodes, dbcodes;
    nlohmann::json result = evaluate_run(*method_, ds_, split_, dopts_, cfg_.section("eval"),
                                         device_, eval_bs_, &qcodes, &dbcodes);
    result["step"] = step_;
    result["train_seconds"] = train_seconds_;
    if (jo_.resume) result["session_seconds"] = session_seconds_;
    if (top_.save_codes) {
      fs::create_directories(rd_->codes_dir());
      codes::write_codes(rd_->query_codes(), qcodes);
      codes::write_codes(rd_->database_codes(), dbcodes);
    }
    if (top_.export_model) export_hasher();
    result["final"] = true;
    metrics_->write("eval", result);
    log().info("{} done in {:.1f} s: {}", top_.method, train_seconds_, summary_line(result));
    write_report(run_dir_);
    result["run_dir"] = run_dir_;
    return result;
  }

  // The trained model and codes are already saved: a method without an
  // export, or an export that fails, is reported and the run goes on.
  void export_hasher() {
    try {
      auto module = method_->to_torchscript(ctx_);
      exporter::save_hasher(module, rd_->hasher());
      log().info("exported TorchScript hasher to {}", rd_->hasher());
    } catch (const Error& e) {
      log().warn("no TorchScript export: {}", e.what());
    } catch (const c10::Error& e) {
      log().error("TorchScript export failed: {}", e.what_without_backtrace());
    }
  }

  // A failure after start_records (rank 0): in metrics.jsonl, log.txt and the report.
  void record_failure(const std::exception& e) {
    std::string msg = e.what();
    if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) msg = ce->what_without_backtrace();
    try {
      metrics_->write("error", {{"message", msg}});
    } catch (const std::exception&) {
      // metrics.jsonl cannot be written (disk full): the original error matters.
    }
    log_to_file_only(fmt::format("error: {}", msg));
    write_report(run_dir_);
  }

  const TrainJobOptions& jo_;
  // resolve_config
  std::string run_dir_;
  std::string* run_dir_out_ = nullptr;  // told the run directory once chosen
  Config cfg_;
  std::vector<std::string> resume_changes_;
  std::map<std::string, std::string> saved_model_;  // model options in config.yaml, on resume
  // read_options
  TopLevel top_;
  data::DataOptions dopts_;
  TrainOptions train_opts_;
  OptimOptions optim_opts_;
  eval::EvalOptions eval_opts_;
  int64_t eval_bs_ = 256;
  dist::DistOptions dist_opts_;
  torch::Device device_ = torch::kCPU;
  // join_group
  dist::DistEnv denv_;
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  bool writer_ = true;
  // open_run_dir (declared before the lock, so the lock is released first)
  CreatedDirectory created_;
  std::unique_ptr<DirLock> lock_;
  std::optional<RunDir> rd_;
  // build_data, build_method
  data::Dataset ds_;
  data::Split split_;
  MethodContext ctx_;
  std::unique_ptr<Method> method_;
  std::string build_;
  // start_records
  std::unique_ptr<MetricsWriter> metrics_;
  // train
  double session_seconds_ = 0, train_seconds_ = 0;
  int64_t step_ = 0;
};

}  // namespace

nlohmann::json run_train_job(const TrainJobOptions& jo, std::string* run_dir) {
  return TrainJob(jo, run_dir).run();
}

}  // namespace hashlab
