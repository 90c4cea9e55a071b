// The report's reader: a run directory (config.yaml, metrics.jsonl,
// codes/database.hlc) into RunData. Whatever is missing or malformed becomes
// a notice; only a path that is no run directory at all throws (report.h).
#include "app/report.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string_view>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "app/report_util.h"
#include "app/run_dir.h"
#include "csrc/codes/code_file.h"
#include "csrc/core/error.h"
#include "csrc/core/fs_util.h"
#include "csrc/eval/bit_stats.h"
#include "csrc/eval/metric_catalog.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace hashlab::report {
namespace {

using detail::integer_at;
using detail::string_at;
using detail::thin;

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The integer a whole string spells (the config's model.bits), or nullopt;
// never throws.
std::optional<int64_t> key_integer(std::string_view s) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string yaml_string(const YAML::Node& root, std::initializer_list<const char*> path) {
  try {
    YAML::Node n = root;
    for (const char* k : path) {
      if (!n.IsMap()) return "";
      n = n[k];
    }
    if (n && n.IsScalar()) return n.as<std::string>();
  } catch (const YAML::Exception&) {
  }
  return "";
}

// The database codes' bit balance and correlation (csrc/eval/bit_stats.h),
// rounded for the page: 5 decimals for a balance, 4 for a correlation.
void read_bit_stats(RunData& r, const ReportOptions& opts) {
  const fs::path path = RunDir(r.dir).database_codes();
  if (!fs::exists(path)) {
    r.notices.push_back(fmt::format(
        "{} does not exist (the run has not finished, or output.save_codes is off): no bit "
        "balance or bit correlation",
        path.string()));
    return;
  }
  codes::Codes c;
  try {
    c = codes::read_codes(path.string());
  } catch (const std::exception& e) {
    r.notices.push_back(fmt::format("no bit statistics: {}", e.what()));
    return;
  }
  if (c.kind() != codes::CodeKind::binary) {
    r.notices.push_back(fmt::format("{} holds {}: bit balance and correlation apply to binary codes",
                                    path.string(), c.describe()));
    return;
  }
  const int64_t n = c.size();
  if (n < 2) {
    r.notices.push_back(fmt::format("{}: {} codes, too few for bit statistics", path.string(), n));
    return;
  }
  eval::BitStatsOptions bo;
  bo.max_rows = opts.max_corr_rows;
  const eval::BitStats s = eval::bit_stats(c.as_binary(), bo);
  json ones = json::array(), corr = json::array();
  for (double v : s.ones) ones.push_back(std::round(v * 1e5) / 1e5);
  for (int i = 0; i < s.corr_bits; ++i) {
    json row = json::array();
    for (int j = 0; j < s.corr_bits; ++j) row.push_back(std::round(s.corr_at(i, j) * 1e4) / 1e4);
    corr.push_back(std::move(row));
  }
  r.bit_stats = {{"nbits", s.nbits},
                 {"count", s.count},
                 {"corr_bits", s.corr_bits},
                 {"sampled", s.sampled},
                 {"ones", std::move(ones)},
                 {"corr", std::move(corr)},
                 {"constant_bits", s.constant_bits},
                 {"mean_abs_corr", s.mean_abs_corr},
                 {"max_abs_corr", s.max_abs_corr},
                 {"max_pair", {s.max_pair.first, s.max_pair.second}}};
}

// Reads a file a line at a time through a fixed buffer. A line longer than
// `max` bytes is read through but not kept, so no line can exhaust memory.
class LineReader {
 public:
  explicit LineReader(const std::string& path) : path_(path), f_(std::fopen(path.c_str(), "rb")) {
    if (!f_) fail("{}: cannot open ({})", path, std::strerror(errno));
  }
  ~LineReader() { std::fclose(f_); }
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // The next line without its '\n' in `line` (empty when longer than `max`),
  // its length in `bytes`, whether a '\n' ended it in `ended`. False at the end.
  bool next(std::string& line, size_t max, size_t& bytes, bool& ended) {
    line.clear();
    bytes = 0;
    ended = false;
    bool any = false;
    for (;;) {
      if (pos_ == end_) {
        pos_ = 0;
        end_ = std::fread(buf_.data(), 1, buf_.size(), f_);
        if (end_ == 0) {
          if (std::ferror(f_)) fail("{}: read error ({})", path_, std::strerror(errno));
          return any;
        }
      }
      any = true;
      const char* start = buf_.data() + pos_;
      const char* nl = static_cast<const char*>(std::memchr(start, '\n', end_ - pos_));
      const size_t n = nl ? static_cast<size_t>(nl - start) : end_ - pos_;
      if (bytes + n <= max) line.append(start, n);
      else line.clear();
      bytes += n;
      pos_ += n;
      if (nl) {
        ++pos_;
        ended = true;
        return true;
      }
    }
  }

 private:
  std::string path_;
  std::FILE* f_;
  std::vector<char> buf_ = std::vector<char>(size_t{1} << 16);
  size_t pos_ = 0, end_ = 0;
};

// Why a metrics line is beyond what the reader accepts (kMaxRecordDepth,
// kMaxRecordKeys, kMaxKeyBytes), or "" when it is within: one pass over the
// text outside strings, before nlohmann's recursive parser sees it.
std::string beyond_bounds(std::string_view line) {
  int depth = 0;
  size_t keys = 0, str_start = 0, last_str = 0;
  bool in_str = false, escaped = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (in_str) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_str = false, last_str = i - str_start;
      continue;
    }
    if (c == '"') {
      in_str = true;
      str_start = i + 1;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxRecordDepth)
        return fmt::format("nested deeper than {} levels", kMaxRecordDepth);
    } else if (c == ']' || c == '}') {
      --depth;
    } else if (c == ':') {
      if (++keys > kMaxRecordKeys) return fmt::format("more than {} fields", kMaxRecordKeys);
      if (last_str > kMaxKeyBytes)
        return fmt::format("a field name of {} bytes (at most {})", last_str, kMaxKeyBytes);
    }
  }
  return "";
}

// What is wrong with the type of a field the reader acts on, or "".
std::string wrong_type(const json& rec) {
  struct Field {
    const char* key;
    bool (*ok)(const json&);
    const char* want;
  };
  static const Field fields[] = {
      {"event", [](const json& v) { return v.is_string(); }, "a string"},
      {"step", [](const json& v) { return v.is_number_integer(); }, "an integer"},
      {"final", [](const json& v) { return v.is_boolean(); }, "true or false"},
      {"message", [](const json& v) { return v.is_string(); }, "a string"},
  };
  for (const auto& f : fields) {
    auto it = rec.find(f.key);
    if (it == rec.end() || f.ok(*it)) continue;
    const std::string type = it->type_name();
    const char* article = type == "null" ? "" : (type == "array" || type == "object") ? "an " : "a ";
    return fmt::format("\"{}\" is {}{}, not {}", f.key, article, type, f.want);
  }
  return "";
}

// A curve as it is read: every `stride`-th value is kept, and the stride
// doubles (dropping every other kept point) whenever twice `keep` points have
// accumulated, so memory stays bounded however long the run.
class CurveBuilder {
 public:
  explicit CurveBuilder(int keep) : keep_(std::max(keep, 2)) {}

  void add(double step, double v) {
    if (!std::isfinite(v)) return;
    // A step at or before the last one: a resumed session repeats the steps
    // after its checkpoint, and its values replace the earlier session's.
    while (!pts_.empty() && pts_.back().first >= step) pts_.pop_back();
    if (logged_++ % stride_ == 0) pts_.emplace_back(step, v);
    last_ = {step, v};
    if (pts_.size() >= 2 * static_cast<size_t>(keep_)) {
      size_t j = 0;
      for (size_t i = 0; i < pts_.size(); i += 2) pts_[j++] = pts_[i];
      pts_.resize(j);
      stride_ *= 2;
    }
  }

  Curve finish(std::string event, std::string field) {
    if (logged_ > 0 && (pts_.empty() || pts_.back() != last_)) pts_.push_back(last_);
    const bool thinned = stride_ > 1 || pts_.size() > static_cast<size_t>(keep_);
    return Curve{std::move(event), std::move(field), thin(std::move(pts_), keep_), logged_, thinned};
  }

 private:
  int keep_;
  std::vector<std::pair<double, double>> pts_;
  std::pair<double, double> last_{0, 0};
  int64_t stride_ = 1, logged_ = 0;
};

// metrics.jsonl, streamed a line at a time (a killed run can leave a cut
// line; a long run a file larger than memory). Every line that is not a
// record the reader can use becomes a notice naming the file and line.
void read_metrics(RunData& r, const std::string& path, const ReportOptions& opts,
                  json& last_control) {
  std::map<std::pair<std::string, std::string>, size_t> index;  // (event, field) -> builders
  std::vector<std::pair<std::string, std::string>> names;
  std::vector<CurveBuilder> builders;
  bool too_many_curves = false;
  int64_t lineno = 0, bad = 0;
  auto skip = [&](const std::string& why) {
    if (++bad <= 5) r.notices.push_back(fmt::format("{} line {}: {}; skipped", path, lineno, why));
  };
  try {
    LineReader in(path);
    std::string line;
    size_t bytes = 0;
    bool ended = false;
    while (in.next(line, kMaxRecordBytes, bytes, ended)) {
      ++lineno;
      if (bytes > kMaxRecordBytes) {
        skip(fmt::format("a record of {} bytes (at most {})", bytes, kMaxRecordBytes));
        continue;
      }
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      if (std::string why = beyond_bounds(line); !why.empty()) {
        skip(why);
        continue;
      }
      json rec = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (rec.is_discarded() || !rec.is_object()) {
        skip(fmt::format("{} ({} bytes, starting \"{}\")",
                         ended ? "not a JSON object"
                               : "cut short, the last line has no end (the run was killed while "
                                 "writing it)",
                         line.size(), line.substr(0, 40)));
        continue;
      }
      try {
        if (std::string why = wrong_type(rec); !why.empty()) {
          skip(why);
          continue;
        }
        const std::string ev = string_at(rec, "event");
        if (ev == "start") {
          ++r.starts;
          if (auto m = string_at(rec, "method"); !m.empty()) r.method = m;
          if (int64_t b = integer_at(rec, "bits"); b > 0 && b <= (1 << 20)) r.bits = int(b);
          continue;
        }
        if (ev == "eval" && rec.value("final", false)) {
          r.final_eval = std::move(rec);
          continue;
        }
        if (ev == "interrupt" || ev == "error") {
          last_control = std::move(rec);
          continue;
        }
        auto st = rec.find("step");
        if (st == rec.end()) {
          if (r.other_records.size() < kMaxOtherRecords) r.other_records.push_back(std::move(rec));
          else ++r.other_records_skipped;
          continue;
        }
        const double step = st->get<double>();
        for (auto it = rec.begin(); it != rec.end(); ++it) {
          if (!it.value().is_number() || it.key() == "step" || it.key() == "epoch") continue;
          auto key = std::make_pair(ev, it.key());
          auto f = index.find(key);
          if (f == index.end()) {
            if (builders.size() >= kMaxCurves) {
              too_many_curves = true;
              continue;
            }
            f = index.emplace(key, builders.size()).first;
            names.push_back(key);
            builders.emplace_back(opts.max_points);
          }
          builders[f->second].add(step, it.value().get<double>());
        }
      } catch (const std::exception& e) {
        skip(e.what());
      }
    }
  } catch (const Error& e) {
    r.notices.push_back(fmt::format("{} (after line {})", e.what(), lineno));
  }
  if (bad > 5)
    r.notices.push_back(fmt::format("{}: {} malformed lines in all, skipped", path, bad));
  if (lineno == 0) r.notices.push_back(fmt::format("{} is empty", path));
  if (too_many_curves)
    r.notices.push_back(fmt::format("{}: more than {} distinct scalars; only the first {} are drawn",
                                    path, kMaxCurves, kMaxCurves));
  if (r.other_records_skipped > 0)
    r.notices.push_back(fmt::format("{}: {} records without a step beyond the first {} are not shown",
                                    path, r.other_records_skipped, kMaxOtherRecords));
  // "train" first, then the methods' own step records in the order they
  // appeared, then the periodic evaluations.
  auto rank = [](const std::string& ev) { return ev == "train" ? 0 : ev == "eval" ? 2 : 1; };
  std::vector<size_t> order(builders.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return rank(names[a].first) < rank(names[b].first);
  });
  for (size_t i : order) r.curves.push_back(builders[i].finish(names[i].first, names[i].second));
}

}  // namespace


RunData read_run(const std::string& dir_in, const ReportOptions& opts) {
  RunData r;
  r.dir = dir_in;
  const fs::path dir(dir_in);
  if (!fs::is_directory(dir)) fail("{}: not a directory", dir_in);
  const RunDir rd(dir_in);
  const fs::path cfg_path = rd.config(), metrics_path = rd.metrics();
  if (!rd.holds_run())
    fail("{}: not a run directory (neither config.yaml nor metrics.jsonl)", dir_in);

  // ---- config
  YAML::Node cfg;
  if (fs::exists(cfg_path)) {
    r.config_text = read_file(cfg_path.string());
    try {
      cfg = YAML::Load(r.config_text);
    } catch (const YAML::Exception& e) {
      r.notices.push_back(fmt::format("{}: not valid YAML ({})", cfg_path.string(), e.what()));
    }
  } else {
    r.notices.push_back(fmt::format("{} is missing", cfg_path.string()));
  }

  // ---- metrics.jsonl
  json last_control = json::object();  // the last interrupt or error record
  if (fs::exists(metrics_path)) {
    read_metrics(r, metrics_path.string(), opts, last_control);
  } else {
    r.notices.push_back(fmt::format("{} is missing: no curves and no final metrics",
                                    metrics_path.string()));
  }

  // ---- identity
  if (r.method.empty()) r.method = yaml_string(cfg, {"method"});
  if (r.bits == 0) {
    if (int64_t b = integer_at(r.final_eval, "bits"); b > 0 && b <= (1 << 20)) r.bits = int(b);
    else if (auto v = key_integer(yaml_string(cfg, {"model", "bits"})); v && *v > 0 && *v <= (1 << 20))
      r.bits = int(*v);
  }
  std::string name = yaml_string(cfg, {"name"});
  if (name.empty()) {
    const fs::path abs = fs::absolute(dir).lexically_normal();
    name = (abs.has_filename() ? abs : abs.parent_path()).parent_path().filename().string();
  }
  r.label = name;  // without a trailing _b<digits>
  const size_t b = name.rfind("_b");
  if (b != std::string::npos && b > 0 && all_digits(std::string_view(name).substr(b + 2)))
    r.label = name.substr(0, b);
  // The protocol of the first metric the final evaluation reports, else the config's.
  r.protocol = yaml_string(cfg, {"data", "protocol"});
  for (auto it = r.final_eval.begin(); r.final_eval.is_object() && it != r.final_eval.end(); ++it)
    if (const eval::MetricInfo* m = eval::find_metric(it.key()); m && m->protocol) {
      r.protocol = protocol_name(*m->protocol);
      break;
    }

  // ---- status
  if (!r.final_eval.is_null()) {
    r.status = "finished";
  } else if (string_at(last_control, "event") == "interrupt") {
    r.status = fmt::format("interrupted at step {}", integer_at(last_control, "step"));
    r.notices.push_back(fmt::format(
        "the run was interrupted at step {} and has no final evaluation; `hashlab train --resume "
        "--run-dir {}` continues it",
        integer_at(last_control, "step"), dir_in));
  } else if (string_at(last_control, "event") == "error") {
    r.status = "failed";
    r.notices.push_back(fmt::format("the run failed: {}", string_at(last_control, "message", "?")));
  } else {
    bool running = false;
    try {
      DirLock probe(dir_in, DirLock::Mode::shared, "hashlab report");
    } catch (const Error&) {
      running = true;
    }
    r.status = running ? "training" : "stopped";
    r.notices.push_back(
        running ? std::string("the run is still training: the curves so far, no final evaluation "
                              "yet (regenerate the report later)")
                : fmt::format("no final evaluation in {}: the run was stopped before it finished "
                              "(killed?); `hashlab train --resume --run-dir {}` continues it",
                              metrics_path.string(), dir_in));
  }
  if (r.status == "finished") read_bit_stats(r, opts);
  return r;
}

}  // namespace hashlab::report
