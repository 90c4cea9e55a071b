// The report's renderer: the sections of a run's page and of a comparison
// page (tables, and one chart spec per chart for report_page.h), and the
// comparison table as CSV and markdown. It reads RunData only (report.h).
#include "app/report.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "app/report_page.h"
#include "app/report_util.h"
#include "app/run_dir.h"
#include "csrc/core/fs_util.h"
#include "csrc/core/json_text.h"
#include "csrc/eval/metric_catalog.h"

using nlohmann::json;

namespace hashlab::report {
namespace {

using detail::number_at;
using detail::string_at;
using detail::thin;

// ------------------------------------------------------------------ helpers

// A value for a table cell: integers as integers, metrics with 4 decimals,
// large values (seconds, losses) with one.
std::string num(double v) {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  if (std::fabs(v) >= 1000) return fmt::format("{:.1f}", v);
  if (std::fabs(v) < 1e-3) return fmt::format("{:.3g}", v);
  return fmt::format("{:.4f}", v);
}

// The number a key spells ("1000" in {"p_at_n": {"1000": ...}}), or nullopt
// when it spells none or one out of range; never throws.
std::optional<double> key_number(const std::string& s) {
  if (s.empty() || std::isspace(static_cast<unsigned char>(s[0]))) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

// {"100": v, "1000": v, ...} -> [(100, v), (1000, v)] in key order.
std::vector<std::pair<double, double>> keyed_curve(const json& obj) {
  std::vector<std::pair<double, double>> pts;
  if (!obj.is_object()) return pts;
  for (auto it = obj.begin(); it != obj.end(); ++it)
    if (auto x = key_number(it.key()); x && it.value().is_number())
      pts.emplace_back(*x, it.value().get<double>());
  std::sort(pts.begin(), pts.end());
  return pts;
}

// The members of metric family `family` (metric_catalog.h, one number in
// the key, e.g. "recall_at_<i>") as (number, value) points in order.
std::vector<std::pair<double, double>> family_curve(const json& j, const std::string& family) {
  std::vector<std::pair<double, double>> pts;
  if (!j.is_object()) return pts;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const eval::MetricInfo* m = eval::find_metric(it.key());
    if (!m || m->key != family || !it.value().is_number()) continue;
    const auto nums = eval::family_numbers(*m, it.key());
    if (nums.size() == 1) pts.emplace_back(double(nums[0]), it.value().get<double>());
  }
  std::sort(pts.begin(), pts.end());
  return pts;
}

// A curve for a chart: its finite points, at most ReportOptions{}.max_points
// (a final evaluation's curves are as long as its record allows).
json series(const std::string& label, const std::vector<std::pair<double, double>>& pts) {
  std::vector<std::pair<double, double>> finite;
  for (const auto& [x, y] : pts)
    if (std::isfinite(x) && std::isfinite(y)) finite.emplace_back(x, y);
  json data = json::array();
  for (const auto& [x, y] : thin(std::move(finite), ReportOptions{}.max_points))
    data.push_back({x, y});
  return {{"label", label}, {"data", data}};
}

json axis(const std::string& label, bool log = false) {
  json a = {{"label", label}};
  if (log) a["log"] = true;
  return a;
}

json line_chart(const std::string& title, json series_list, json x, json y) {
  return {{"kind", "line"}, {"title", title}, {"series", std::move(series_list)},
          {"x", std::move(x)}, {"y", std::move(y)}};
}

bool has_points(const json& series_list) {
  for (const auto& s : series_list)
    if (!s["data"].empty()) return true;
  return false;
}

// ------------------------------------------------------------------ sections
struct Column {
  std::string key, title;
};

// The headline metrics (metric_catalog.h) that any of the runs reports.
std::vector<Column> headline_columns(const std::vector<RunData>& runs) {
  std::vector<Column> cols;
  for (const auto& m : eval::metric_catalog()) {
    if (!m.headline) continue;
    for (const auto& r : runs)
      if (number_at(r.final_eval, m.key)) {
        cols.push_back({m.key, m.title});
        break;
      }
  }
  return cols;
}

std::string cell(const RunData& r, const std::string& key) {
  auto v = number_at(r.final_eval, key);
  if (!v) return "–";
  const eval::MetricInfo* m = eval::find_metric(key);
  return m && m->kind == eval::MetricKind::info ? fmt::format("{:.1f}", *v)
                                                : fmt::format("{:.4f}", *v);
}

// Final-evaluation scalars in the catalogue's reading order (metric_catalog.h:
// the metrics, a family's members by key), then any scalar the catalogue does
// not know, then counts and timings.
std::vector<std::pair<std::string, double>> final_scalars(const json& f) {
  std::vector<std::pair<std::string, double>> out;
  if (!f.is_object()) return out;
  std::map<size_t, std::vector<std::pair<std::string, double>>> known;
  std::vector<std::pair<std::string, double>> unknown;
  const auto& catalog = eval::metric_catalog();
  for (auto it = f.begin(); it != f.end(); ++it) {
    if (!it.value().is_number() || it.value().is_boolean()) continue;
    const std::pair<std::string, double> kv(it.key(), it.value().get<double>());
    if (const eval::MetricInfo* m = eval::find_metric(it.key()))
      known[static_cast<size_t>(m - catalog.data())].push_back(kv);
    else
      unknown.push_back(kv);
  }
  bool unknown_done = false;
  for (auto& [index, kvs] : known) {
    if (!unknown_done && catalog[index].kind == eval::MetricKind::info) {
      out.insert(out.end(), unknown.begin(), unknown.end());
      unknown_done = true;
    }
    out.insert(out.end(), kvs.begin(), kvs.end());
  }
  if (!unknown_done) out.insert(out.end(), unknown.begin(), unknown.end());
  return out;
}

// A curve's chart as its catalogue entry says (metric_catalog.h CurveChart).
json curve_chart(const eval::MetricInfo& m, json series_list) {
  return line_chart(m.chart.title.empty() ? m.title : m.chart.title, std::move(series_list),
                    axis(m.chart.x, m.chart.x_log), axis(m.chart.y));
}

// The precision-recall curve, every curve of an exact key in the catalogue
// (P@N, R@N), and Recall@i: one chart each, a series per run (labelled by
// run when `overlay`).
void retrieval_charts(Page& page, const std::vector<const RunData*>& runs, bool overlay) {
  auto label_of = [&](const RunData* r) {
    return overlay ? fmt::format("{} {}b", r->label, r->bits) : std::string("precision");
  };
  std::vector<std::pair<const eval::MetricInfo*, json>> curves;  // in catalogue order
  for (const auto& m : eval::metric_catalog())
    if (m.kind == eval::MetricKind::curve && !m.is_family()) curves.emplace_back(&m, json::array());
  json pr = json::array(), ri = json::array();
  for (const RunData* r : runs) {
    const json& f = r->final_eval;
    if (f.contains("pr_curve") && f["pr_curve"].is_object()) {
      const json& c = f["pr_curve"];
      std::vector<std::pair<double, double>> pts;
      if (c.contains("precision") && c.contains("recall") && c["precision"].is_array() &&
          c["recall"].is_array())
        for (size_t i = 0; i < c["precision"].size() && i < c["recall"].size(); ++i)
          if (c["recall"][i].is_number() && c["precision"][i].is_number())
            pts.emplace_back(c["recall"][i].get<double>(), c["precision"][i].get<double>());
      pr.push_back(series(label_of(r), pts));
    }
    for (auto& [m, s] : curves)
      if (f.contains(m->key))
        s.push_back(series(overlay ? label_of(r) : m->chart.series, keyed_curve(f[m->key])));
    auto rec = family_curve(f, "recall_at_<i>");
    if (!rec.empty()) ri.push_back(series(overlay ? label_of(r) : "Recall@i", rec));
  }
  if (has_points(pr))
    page.chart(line_chart("Precision-recall over Hamming radii 0..B", pr, axis("recall"),
                          axis("precision")));
  for (auto& [m, s] : curves)
    if (has_points(s)) page.chart(curve_chart(*m, std::move(s)));
  if (has_points(ri)) {
    std::string k = runs.empty() ? "" : num(number_at(runs[0]->final_eval, "recall_k").value_or(0));
    page.chart(line_chart(fmt::format("Recall@i of the true {} Euclidean neighbours (eq. 6)", k), ri,
                          axis("i (items retrieved)", true), axis("recall")));
  }
}

// Every family of curves in the catalogue (SiGAH's R-n: sigah_r<n>) that
// the final evaluation reports: one chart each, a series per member in key
// order.
void family_curve_charts(Page& page, const RunData& r) {
  for (const auto& family : eval::metric_catalog()) {
    if (family.kind != eval::MetricKind::curve || !family.is_family()) continue;
    json s = json::array();
    for (auto it = r.final_eval.begin(); r.final_eval.is_object() && it != r.final_eval.end();
         ++it) {
      if (eval::find_metric(it.key()) != &family || !it.value().is_object()) continue;
      s.push_back(series(eval::member_text(family, it.key(), family.chart.series),
                         keyed_curve(it.value())));
    }
    if (has_points(s)) page.chart(curve_chart(family, std::move(s)));
  }
}

void m_recall_grid(Page& page, const json& f) {
  std::map<int64_t, std::map<int64_t, double>> grid;
  std::set<int64_t> Ks;
  for (auto it = f.begin(); f.is_object() && it != f.end(); ++it) {
    const eval::MetricInfo* m = eval::find_metric(it.key());
    if (!m || m->key != "m_recall_k<k>_K<K>" || !it.value().is_number()) continue;
    const auto kK = eval::family_numbers(*m, it.key());
    grid[kK[0]][kK[1]] = it.value().get<double>();
    Ks.insert(kK[1]);
  }
  if (grid.empty()) return;
  page.h3("m-Recall grid (eq. 7): k true neighbours, first K items");
  std::vector<std::string> head = {"k"};
  for (int64_t K : Ks) head.push_back(fmt::format("K={}", K));
  std::vector<std::vector<std::string>> rows;
  for (const auto& [k, row] : grid) {
    std::vector<std::string> cells = {fmt::format("{}", k)};
    for (int64_t K : Ks) cells.push_back(row.count(K) ? fmt::format("{:.4f}", row.at(K)) : "–");
    rows.push_back(cells);
  }
  page.table(head, rows);
}

void training_charts(Page& page, const RunData& r) {
  bool any = false;
  std::vector<std::string> thinned;
  for (const auto& c : r.curves) {
    if (c.event == "eval" || c.points.empty()) continue;
    // The methods' own records: a constant field (a histogram's bin count)
    // says nothing as a curve.
    const auto& pts = c.points;
    if (c.event != "train" && std::all_of(pts.begin(), pts.end(), [&](const auto& p) {
          return p.second == pts[0].second;
        }))
      continue;
    const std::string title = c.event == "train" ? c.field : c.event + ": " + c.field;
    if (c.thinned)
      thinned.push_back(fmt::format("{} ({} values, {} drawn)", title, c.logged, pts.size()));
    if (!any) {
      page.h2("Training curves");
      page.para("Every scalar the training logged, per step (units for a fitted method); a "
                "resumed run's repeated steps show their last value.");
      page.open_grid();
      any = true;
    }
    page.chart(line_chart(title, json::array({series(c.field, pts)}), axis("step"), axis(c.field)));
  }
  if (any) page.close_grid();
  if (!thinned.empty())
    page.raw("<p class=\"caption\" id=\"thinned\">" +
             esc(fmt::format("Thinned evenly for drawing (the last value kept): {}.",
                             fmt::join(thinned, "; "))) +
             "</p>\n");
  // Periodic evaluations, and the final one at its step; not the counts,
  // settings and timings (kind info in the catalogue), which are no measure
  // of the codes.
  bool evals = false;
  for (const auto& c : r.curves) {
    const eval::MetricInfo* m = eval::find_metric(c.field);
    if (c.event != "eval" || (m && m->kind == eval::MetricKind::info)) continue;
    if (!evals) {
      page.h2("Evaluation during training");
      page.open_grid();
      evals = true;
    }
    auto pts = c.points;
    if (auto v = number_at(r.final_eval, c.field))
      pts.emplace_back(number_at(r.final_eval, "step").value_or(0), *v);
    page.chart(line_chart(c.field, json::array({series(c.field, pts)}), axis("step"), axis(c.field)));
  }
  if (evals) page.close_grid();
}

void bit_charts(Page& page, const RunData& r) {
  if (r.bit_stats.is_null()) return;
  const json& b = r.bit_stats;
  const int B = b["nbits"];
  page.h2("Database codes");
  const int Bc = b.value("corr_bits", B);
  page.para(fmt::format(
      "{} codes of {} bits{}. Mean |correlation| between two bits{}: {:.4f}; the largest is "
      "{:.4f} (bits {} and {}); {} constant bits.",
      b["count"].get<int64_t>(), B,
      b["sampled"] == b["count"] ? std::string()
                                 : fmt::format(" ({} sampled evenly)", b["sampled"].get<int64_t>()),
      Bc < B ? fmt::format(" of the first {}", Bc) : std::string(),
      b["mean_abs_corr"].get<double>(), b["max_abs_corr"].get<double>(),
      b["max_pair"][0].get<int>(), b["max_pair"][1].get<int>(), b["constant_bits"].get<int>()));
  page.open_grid();
  json labels = json::array();
  for (int i = 0; i < B; ++i) labels.push_back(i);
  json y = axis("fraction of ones");
  y["min"] = 0;
  y["max"] = 1;
  page.chart({{"kind", "bar"},
              {"title", "Bit balance: fraction of ones per bit (0.5 is balanced)"},
              {"labels", labels},
              {"values", b["ones"]},
              {"x", axis("bit")},
              {"y", y}});
  page.raw("<div>");
  page.chart({{"kind", "heatmap"},
              {"title", Bc < B ? fmt::format("Bit correlation of bits 0..{} (blue -1, white 0, red +1)", Bc - 1)
                               : std::string("Bit correlation (blue -1, white 0, red +1)")},
              {"matrix", b["corr"]}},
             "square");
  page.raw(fmt::format("<p class=\"caption\" id=\"chart{}-caption\">Point at a cell for its "
                       "value.</p></div>\n",
                       page.num_charts() - 1));
  page.close_grid();
}

std::string heading(const RunData& r) {
  return fmt::format("{} · {}{} · {}", r.label, r.method.empty() ? "?" : r.method,
                     r.bits ? fmt::format(" · {} bits", r.bits) : "", r.status);
}

}  // namespace

std::string run_report_html(const RunData& r, const std::string& chartjs) {
  Page page;
  page.raw("<h1>" + esc(heading(r)) + "</h1>\n<p class=\"sub\">" + esc(r.dir) + "</p>\n");
  page.notices(r.notices);

  // ---- summary
  std::vector<std::vector<std::string>> rows = {
      {"method", r.method.empty() ? "?" : r.method},
      {"code length", r.bits ? fmt::format("{} bits", r.bits) : "?"},
      {"protocol", r.protocol.empty() ? "?" : r.protocol},
      {"status", r.status},
  };
  if (r.starts > 1) rows.push_back({"sessions", fmt::format("{} (resumed {} times)", r.starts, r.starts - 1)});
  if (auto v = number_at(r.final_eval, "train_seconds"))
    rows.push_back({"training time", fmt::format("{:.1f} s", *v)});
  if (auto v = number_at(r.final_eval, "encode_seconds"))
    rows.push_back({"encoding time", fmt::format("{:.2f} s", *v)});
  if (auto v = number_at(r.final_eval, "eval_seconds"))
    rows.push_back({"evaluation time", fmt::format("{:.2f} s", *v)});
  if (!r.curves.empty() && r.curves[0].event != "eval" && !r.curves[0].points.empty())
    rows.push_back({"last logged step", num(r.curves[0].points.back().first)});
  page.h2("Run");
  page.table({"", ""}, rows, "kv");

  // ---- final metrics
  if (!r.final_eval.is_null()) {
    page.h2("Final evaluation");
    std::vector<std::vector<std::string>> m;
    for (const auto& [k, v] : final_scalars(r.final_eval)) m.push_back({k, num(v)});
    page.table({"metric", "value"}, m, "kv");
    m_recall_grid(page, r.final_eval);
    page.open_grid();
    retrieval_charts(page, {&r}, false);
    family_curve_charts(page, r);
    page.close_grid();
  }
  training_charts(page, r);
  bit_charts(page, r);

  // ---- records without a step (fits, method setup)
  if (!r.other_records.empty()) {
    page.h2("Other records");
    for (const auto& rec : r.other_records) {
      std::vector<std::vector<std::string>> kv;
      for (auto it = rec.begin(); it != rec.end(); ++it) {
        if (it.key() == "event") continue;
        std::string v = it.value().is_number() ? num(it.value().get<double>()) : json_text(it.value());
        if (v.size() > 200) v = v.substr(0, 200) + " …";
        kv.push_back({it.key(), v});
      }
      page.h3(string_at(rec, "event", "record"));
      page.table({"field", "value"}, kv, "kv");
    }
  }
  if (!r.config_text.empty()) {
    page.h2("Resolved config (config.yaml)");
    page.raw("<pre class=\"config\">" + esc(r.config_text) + "</pre>\n");
  }
  return page.render(heading(r), chartjs);
}

std::string compare_report_html(const std::vector<RunData>& runs, const std::string& chartjs) {
  Page page;
  page.raw(fmt::format("<h1>Comparison of {} runs</h1>\n", runs.size()));
  std::vector<std::string> notices;
  for (const auto& r : runs)
    for (const auto& n : r.notices) notices.push_back(r.label + ": " + n);
  page.notices(notices);

  const auto cols = headline_columns(runs);
  std::vector<std::string> head = {"run", "method", "bits", "protocol"};
  for (const auto& c : cols) head.push_back(c.title);
  head.push_back("status");
  head.push_back("directory");
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : runs) {
    std::vector<std::string> row = {r.label, r.method, r.bits ? std::to_string(r.bits) : "?",
                                    r.protocol};
    for (const auto& c : cols) row.push_back(cell(r, c.key));
    row.push_back(r.status);
    row.push_back(r.dir);
    rows.push_back(row);
  }
  page.h2("Runs");
  page.table(head, rows);

  // Methods × code lengths, one table per metric.
  std::vector<std::string> labels;
  std::set<int> bits;
  for (const auto& r : runs) {
    if (std::find(labels.begin(), labels.end(), r.label) == labels.end()) labels.push_back(r.label);
    if (r.bits) bits.insert(r.bits);
  }
  for (const auto& c : cols) {
    page.h3(c.title + " by code length");
    std::vector<std::string> h = {"run"};
    for (int b : bits) h.push_back(fmt::format("{} bits", b));
    std::vector<std::vector<std::string>> t;
    for (const auto& l : labels) {
      std::vector<std::string> row = {l};
      for (int b : bits) {
        std::string v = "–";
        for (const auto& r : runs)
          if (r.label == l && r.bits == b && number_at(r.final_eval, c.key)) v = cell(r, c.key);
        row.push_back(v);
      }
      t.push_back(row);
    }
    page.table(h, t);
  }

  page.h2("Curves");
  page.open_grid();
  std::vector<const RunData*> ptrs;
  for (const auto& r : runs) ptrs.push_back(&r);
  retrieval_charts(page, ptrs, true);
  for (const auto& c : cols) {
    json s = json::array();
    for (const auto& l : labels) {
      std::vector<std::pair<double, double>> pts;
      for (const auto& r : runs)
        if (r.label == l && r.bits)
          if (auto v = number_at(r.final_eval, c.key)) pts.emplace_back(r.bits, *v);
      std::sort(pts.begin(), pts.end());
      s.push_back(series(l, pts));
    }
    if (bits.size() > 1 && has_points(s))
      page.chart(line_chart(c.title + " against code length", s, axis("bits", true), axis(c.title)));
  }
  page.close_grid();
  return page.render(fmt::format("hashlab comparison of {} runs", runs.size()), chartjs);
}

std::string compare_table_csv(const std::vector<RunData>& runs) {
  auto q = [](const std::string& s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string o = "\"";
    for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
    return o + "\"";
  };
  const auto cols = headline_columns(runs);
  std::string out = "run,method,bits,protocol";
  for (const auto& c : cols) out += "," + c.key;
  out += ",status,run_dir\n";
  for (const auto& r : runs) {
    out += q(r.label) + "," + q(r.method) + "," + (r.bits ? std::to_string(r.bits) : "") + "," +
           q(r.protocol);
    for (const auto& c : cols) {
      auto v = number_at(r.final_eval, c.key);
      out += "," + (v ? fmt::format("{}", *v) : std::string());
    }
    out += "," + q(r.status) + "," + q(r.dir) + "\n";
  }
  return out;
}

std::string compare_table_markdown(const std::vector<RunData>& runs) {
  std::vector<std::string> labels;
  std::set<int> bits;
  for (const auto& r : runs) {
    if (std::find(labels.begin(), labels.end(), r.label) == labels.end()) labels.push_back(r.label);
    bits.insert(r.bits);
  }
  std::string out;
  for (const auto& c : headline_columns(runs)) {
    out += fmt::format("\n{}:\n\n| run |", c.title);
    for (int b : bits) out += fmt::format(" {} bits |", b);
    out += "\n|---|";
    for (size_t i = 0; i < bits.size(); ++i) out += "---|";
    out += "\n";
    for (const auto& l : labels) {
      out += "| " + l + " |";
      for (int b : bits) {
        std::string v = "–";
        for (const auto& r : runs)
          if (r.label == l && r.bits == b && number_at(r.final_eval, c.key)) v = cell(r, c.key);
        out += " " + v + " |";
      }
      out += "\n";
    }
  }
  return out;
}

std::string write_run_report(const std::string& run_dir, const ReportOptions& opts) {
  RunData r = read_run(run_dir, opts);
  const std::string path = RunDir(run_dir).report();
  atomic_write(path, run_report_html(r, chartjs_source()));
  return path;
}

}  // namespace hashlab::report
