// Run reports: one self-contained HTML file per run directory (report.html),
// and a comparison of several runs (`hashlab report RUN1 RUN2 ... --out F`).
//
// A report reads only the run directory: config.yaml, metrics.jsonl (every
// record: the final evaluation, periodic evaluations, training records, the
// methods' own records) and codes/database.hlc (bit balance and bit
// correlation). It never needs the dataset, so it can be regenerated at any
// time, also while the run is still training (the curves so far) or after it
// was killed. Whatever is missing or malformed (a metrics line cut short by a
// kill, no final evaluation, no codes) is reported as a notice at the top of
// the page; the report is still written.
//
// The page inlines Chart.js (Debian's libjs-chart.js, read from
// kChartJsPath or $HASHLAB_CHARTJS) and the data as JSON, so it opens offline
// with no fetch. Every chart's canvas records how it drew (data-drawn =
// "WxH", data-painted = non-transparent pixels) and the page records script
// errors in #report-errors and data-report-status="done" on <body> when
// finished, so a headless browser's DOM dump can check it.
//
// This header is the whole interface. Behind it: report_reader.cpp reads a
// run directory (read_run; the bit statistics themselves are
// csrc/eval/bit_stats.h), report_render.cpp writes the sections, pages and
// tables, report_page.h builds the HTML page around the stylesheet and script
// of app/report/ (report.css, report.js), which the build embeds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace hashlab::report {

inline constexpr const char* kChartJsPath = "/usr/share/javascript/chart.js/chart.min.js";

// What the reader accepts from one metrics.jsonl line. nlohmann's parser,
// copies and dump() recurse, so a record nested without bound would crash the
// reader (and `train`, which writes the report at its end); a record beyond
// any bound is skipped with a notice naming the file and line.
inline constexpr size_t kMaxRecordBytes = size_t{1} << 20;  // one line
inline constexpr int kMaxRecordDepth = 64;                   // nested arrays and objects
inline constexpr size_t kMaxRecordKeys = 10000;              // field names in one record
inline constexpr size_t kMaxKeyBytes = 256;                  // one field name
// What the reader keeps, however long the file: memory is bounded by these,
// not by the number of records.
inline constexpr size_t kMaxCurves = 1000;        // distinct (event, field) curves
inline constexpr size_t kMaxOtherRecords = 100;   // records without a step

// One scalar a run logged per step: (step, value) in step order, the last
// value of each step (a resumed run repeats steps after its checkpoint),
// thinned evenly to at most ReportOptions::max_points (the last one kept).
struct Curve {
  std::string event;  // "train", "code_histogram", ..., or "eval" (periodic evaluations)
  std::string field;
  std::vector<std::pair<double, double>> points;
  int64_t logged = 0;    // values read for it (a resumed run's repeated steps included)
  bool thinned = false;  // points were dropped for drawing (the page says so)
};

// Everything a report uses from one run directory.
struct RunData {
  std::string dir;
  std::string label;        // config `name` without a trailing _b<bits>, else the directory
  std::string method;       // "" when unknown
  int bits = 0;             // 0 when unknown
  std::string protocol;     // "label", "euclidean" or ""
  std::string status;       // "finished", "interrupted at step N", "failed: ...", ...
  std::string config_text;  // config.yaml as written ("" when missing)
  int starts = 0;           // "start" records (1 + times resumed)
  nlohmann::json final_eval;  // the final "eval" record, or null
  // Curves of the records that carry a step: "train" first, then the
  // methods' own records in the order they appeared, then "eval".
  std::vector<Curve> curves;
  std::vector<nlohmann::json> other_records;  // records without a step (fit, method setup)
  int64_t other_records_skipped = 0;          // beyond kMaxOtherRecords
  // Database codes (csrc/eval/bit_stats.h, rounded): {"nbits", "count", "sampled",
  // "ones": [...], "corr": [[...]], ...}, or null.
  nlohmann::json bit_stats;
  std::vector<std::string> notices;  // what is missing or malformed, in words
};

struct ReportOptions {
  int64_t max_corr_rows = 200000;  // database codes sampled for the bit statistics
  int max_points = 2000;           // per curve (evenly thinned beyond that)
};

// Reads a run directory. Throws hashlab::Error only when `dir` is not a
// directory or holds neither config.yaml nor metrics.jsonl; every other
// problem (a malformed line, a record of the wrong type or beyond the bounds
// above) becomes a notice. metrics.jsonl is streamed: memory is bounded by
// the points kept, whatever the size of the file.
RunData read_run(const std::string& dir, const ReportOptions& opts = {});

// Chart.js source (kChartJsPath, or $HASHLAB_CHARTJS when set), or "" when
// the file is missing (the page then shows the tables and says why there are
// no charts).
std::string chartjs_source();

std::string run_report_html(const RunData& run, const std::string& chartjs);
std::string compare_report_html(const std::vector<RunData>& runs, const std::string& chartjs);

// The comparison table, one row per run: label, method, bits, protocol, the
// headline metrics (mAP@all, mAP@1000, P@H<=2 for the label protocol;
// m-Recall, SiGAH mAP and Pre@100 for the Euclidean one), training seconds,
// status, run directory.
std::string compare_table_csv(const std::vector<RunData>& runs);
// The same as markdown: one table per metric, labels down, code lengths across.
std::string compare_table_markdown(const std::vector<RunData>& runs);

// Reads `run_dir` and writes run_dir/report.html atomically. Returns its path.
std::string write_run_report(const std::string& run_dir, const ReportOptions& opts = {});

}  // namespace hashlab::report
