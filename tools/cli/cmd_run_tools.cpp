// Commands on a finished run directory (or on saved code files):
//   hashlab eval   --run DIR [--from-codes] [key=value ...]
//   hashlab eval   --query-codes Q.hlc --db-codes DB.hlc --query-labels F --db-labels F
//   hashlab encode --run DIR --input FILE [--format F] --out OUT.hlc
//   hashlab export --run DIR [--out PATH]
#include <filesystem>
#include <iostream>

#include "csrc/codes/code_file.h"
#include "csrc/core/error.h"
#include "csrc/core/fs_util.h"
#include "csrc/core/json_text.h"
#include "csrc/core/logging.h"
#include "csrc/eval/evaluate_codes.h"
#include "csrc/eval/metrics.h"
#include "csrc/export/script_emitter.h"
#include "datasets/dataset.h"
#include "tools/cli/commands.h"
#include "app/run_dir.h"
#include "app/job.h"

namespace fs = std::filesystem;
using namespace hashlab;

namespace {

struct EvalCmd {
  std::string run, qcodes, dbcodes, qlabels, dblabels, out;
  bool from_codes = false;
  std::vector<std::string> overrides;
};

void run_eval(const EvalCmd& c) {
  nlohmann::json r;
  if (!c.run.empty()) {
    if (c.from_codes) {
      r = evaluate_saved_codes(c.run, c.overrides);
    } else {
      LoadedRun run = load_run(c.run, c.overrides, RunAccess::read, "hashlab eval");
      r = evaluate_run(*run.method, run.dataset, run.split, run.data_options,
                       run.config.section("eval"), run.context.device, run.eval_batch_size);
    }
  } else {
    if (c.qcodes.empty() || c.dbcodes.empty() || c.qlabels.empty() || c.dblabels.empty())
      fail("hashlab eval: give --run DIR, or all of --query-codes --db-codes --query-labels "
           "--db-labels");
    auto q = codes::read_codes(c.qcodes);
    auto db = codes::read_codes(c.dbcodes);
    if (q.kind() != db.kind() || q.nbits() != db.nbits())
      fail("{} has {} but {} has {}", c.qcodes, q.describe(), c.dbcodes, db.describe());
    // Checked as training checks them (integers, class ids in [0, 2^24),
    // multi-hot 0/1), naming the file and the item.
    auto ql = data::read_labels(c.qlabels), dl = data::read_labels(c.dblabels);
    if (ql.size(0) != q.size())
      fail("{}: {} labels for {} query codes", c.qlabels, ql.size(0), q.size());
    if (dl.size(0) != db.size())
      fail("{}: {} labels for {} database codes", c.dblabels, dl.size(0), db.size());
    r = eval::evaluate_codes(q, db, ql, dl, {});
    q.check_unchanged("during the evaluation");
    db.check_unchanged("during the evaluation");
  }
  if (!c.out.empty()) atomic_write(c.out, json_text(r, 2) + "\n");
  std::cout << json_text(r) << "\n";
}

struct EncodeCmd {
  std::string run, input, labels, format, out;
  std::vector<std::string> overrides;
};

void run_encode(const EncodeCmd& c) {
  if (c.out.empty()) fail("hashlab encode: --out is required");
  std::vector<std::string> ov = c.overrides;
  LoadedRun run = load_run(c.run, ov, RunAccess::read, "hashlab encode");
  data::DataOptions d = run.data_options;
  d.files = {c.input};
  d.labels.clear();
  d.roles.clear();  // one file to encode: no split, no ground truth
  d.ground_truth.clear();
  if (!c.format.empty()) d.format = c.format;
  auto ds = data::load_dataset(d);
  const auto shape = item_shape(ds, d);
  if (shape != run.context.input_shape)
    fail("{}: items have shape [{}] after the run's transforms, but the run's hasher takes [{}] "
         "(the run was trained on {})",
         c.input, fmt::join(shape, ", "), fmt::join(run.context.input_shape, ", "),
         fmt::join(run.data_options.files, ", "));
  auto idx = torch::arange(ds.size(), torch::kLong);
  auto codes = encode_indices(*run.method, ds, idx, d, run.context.device, run.eval_batch_size);
  codes::write_codes(c.out, codes);
  std::cout << fmt::format("wrote {} {} of {} to {}\n", codes.size(), codes.describe(), c.input,
                           c.out);
}

void run_export(const std::string& run_dir, std::string out) {
  const bool into_run = out.empty();
  LoadedRun run = load_run(run_dir, {}, into_run ? RunAccess::write : RunAccess::read,
                           "hashlab export");
  if (into_run) out = RunDir(run_dir).hasher();
  auto module = run.method->to_torchscript(run.context);
  exporter::save_hasher(module, out);
  std::cout << "wrote " << out << "\n";
}

void add(CLI::App& app) {
  {
    auto* c = app.add_subcommand("eval", "Evaluate a trained run, or saved code files");
    auto o = std::make_shared<EvalCmd>();
    c->add_option("--run", o->run, "Run directory");
    c->add_flag("--from-codes", o->from_codes, "Use the run's saved codes instead of re-encoding");
    c->add_option("--query-codes", o->qcodes, "Query code file (.hlc)");
    c->add_option("--db-codes", o->dbcodes, "Database code file (.hlc)");
    c->add_option("--query-labels", o->qlabels, "Query labels (idx or npy)");
    c->add_option("--db-labels", o->dblabels, "Database labels (idx or npy)");
    c->add_option("--out", o->out, "Also write the metrics JSON here");
    c->add_option("overrides", o->overrides, "Config overrides (eval.map_at=[100,1000] ...)");
    c->callback([o] { run_eval(*o); });
  }
  {
    auto* c = app.add_subcommand("encode", "Encode a data file with a trained run's hasher");
    auto o = std::make_shared<EncodeCmd>();
    c->add_option("--run", o->run, "Run directory")->required();
    c->add_option("--input", o->input, "Data file (same format as the run's data)")->required();
    c->add_option("--format", o->format, "Data format if different from the run's");
    c->add_option("--out", o->out, "Output code file (.hlc)")->required();
    c->add_option("overrides", o->overrides, "Config overrides");
    c->callback([o] { run_encode(*o); });
  }
  {
    auto* c = app.add_subcommand("export", "Write a run's TorchScript hasher (model/hasher.pt)");
    auto run = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    c->add_option("--run", *run, "Run directory")->required();
    c->add_option("--out", *out, "Output path (default RUN/model/hasher.pt)");
    c->callback([run, out] { run_export(*run, *out); });
  }
}

}  // namespace

HASHLAB_CLI_COMMAND(20, add);
