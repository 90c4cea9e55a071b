// hashlab report RUN [RUN ...] [--out FILE] [--csv] [--markdown]
//   One run: writes RUN/report.html (or --out). Several: a comparison page
//   (--out, default compare.html). --csv / --markdown print the comparison
//   table on stdout; with either, HTML is written only when --out is given.
//   RUN may be a run directory or runs/<name> (its latest run).
#include <filesystem>
#include <iostream>

#include "app/run_dir.h"
#include "app/job.h"
#include "app/report.h"
#include "csrc/core/error.h"
#include "csrc/core/fs_util.h"
#include "csrc/core/logging.h"
#include "tools/cli/commands.h"

namespace fs = std::filesystem;
using namespace hashlab;

namespace {

struct ReportCmd {
  std::vector<std::string> runs;
  std::string out;
  bool csv = false, markdown = false;
};

// A run directory, or a folder of runs of one name (runs/<name>): its latest.
std::string resolve_run(const std::string& arg) {
  const fs::path p(arg);
  if (!fs::is_directory(p)) fail("{}: no such run directory", arg);
  if (RunDir(arg).holds_run()) return arg;
  std::string latest = RunDir::latest(p.parent_path().string(), p.filename().string());
  if (latest.empty())
    fail("{}: not a run directory (no config.yaml or metrics.jsonl), and no run inside it", arg);
  return latest;
}

void run_report(const ReportCmd& c) {
  std::vector<report::RunData> runs;
  for (const auto& a : c.runs) runs.push_back(report::read_run(resolve_run(a)));
  for (const auto& r : runs)
    for (const auto& n : r.notices) log().warn("{}: {}", r.dir, n);
  if (c.csv) std::cout << report::compare_table_csv(runs);
  if (c.markdown) std::cout << report::compare_table_markdown(runs);
  if ((c.csv || c.markdown) && c.out.empty()) return;
  const std::string js = report::chartjs_source();
  if (js.empty())
    log().warn("{} not found (Debian package libjs-chart.js, or set HASHLAB_CHARTJS): the report "
               "has tables but no charts",
               report::kChartJsPath);
  std::string path = c.out;
  std::string html;
  if (runs.size() == 1) {
    if (path.empty()) path = RunDir(runs[0].dir).report();
    html = report::run_report_html(runs[0], js);
  } else {
    if (path.empty()) path = "compare.html";
    html = report::compare_report_html(runs, js);
  }
  atomic_write(path, html);
  log().info("wrote {}", path);
}

void add(CLI::App& app) {
  auto* c = app.add_subcommand(
      "report", "Write a run's report.html, or a comparison page of several runs");
  auto o = std::make_shared<ReportCmd>();
  c->add_option("runs", o->runs, "Run directories (or runs/<name> for its latest run)")
      ->required();
  c->add_option("--out", o->out,
                "Output HTML (default: RUN/report.html for one run, compare.html for several)");
  c->add_flag("--csv", o->csv, "Print the comparison table as CSV on stdout");
  c->add_flag("--markdown", o->markdown,
              "Print the comparison table as markdown on stdout (one table per metric)");
  c->callback([o] { run_report(*o); });
}

}  // namespace

HASHLAB_CLI_COMMAND(60, add);
