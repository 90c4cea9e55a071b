#include "app/report.h"

#include "app/run_dir.h"
#include "csrc/eval/metric_catalog.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include "csrc/codes/code_file.h"
#include "csrc/codes/codes.h"
#include "csrc/core/error.h"
#include "csrc/core/fs_util.h"
#include "csrc/core/json_text.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace hashlab::report {
namespace {

// ------------------------------------------------------------------ helpers

std::string esc(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

// A value for a table cell: integers as integers, metrics with 4 decimals,
// large values (seconds, losses) with one.
std::string num(double v) {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  if (std::fabs(v) >= 1000) return fmt::format("{:.1f}", v);
  if (std::fabs(v) < 1e-3) return fmt::format("{:.3g}", v);
  return fmt::format("{:.4f}", v);
}

// Typed reads of a record's fields. Records come from a file anyone may have
// edited: a field of another type is "missing", never an exception.
std::optional<double> number_at(const json& j, const std::string& key) {
  if (!j.is_object()) return std::nullopt;
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

std::string string_at(const json& j, const std::string& key, const std::string& def = "") {
  if (!j.is_object()) return def;
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : def;
}

int64_t integer_at(const json& j, const std::string& key, int64_t def = 0) {
  if (!j.is_object()) return def;
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : def;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
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

std::optional<int64_t> key_integer(std::string_view s) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
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

// Every key `prefix<int>` of `j` as (int, value), sorted.
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

std::vector<std::pair<double, double>> thin(std::vector<std::pair<double, double>> pts, int max);

// A curve for a chart: its finite points, at most ReportOptions{}.max_points
// (a final evaluation's curves are as long as its record allows).
json series(const std::string& label, const std::vector<std::pair<double, double>>& pts) {
  std::vector<std::pair<double, double>> finite;
  for (const auto& [x, y] : pts)
    if (std::isfinite(x) && std::isfinite(y)) finite.emplace_back(x, y);
  json data = json::array();
  for (const auto& [x, y] : thin(std::move(finite), ReportOptions{}.max_points)) data.push_back({x, y});
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

// Thins a curve to at most `max` points, evenly, keeping the last.
std::vector<std::pair<double, double>> thin(std::vector<std::pair<double, double>> pts, int max) {
  if (max <= 0 || static_cast<int64_t>(pts.size()) <= max) return pts;
  std::vector<std::pair<double, double>> out;
  const double stride = double(pts.size() - 1) / double(max - 1);
  for (int i = 0; i < max; ++i) out.push_back(pts[static_cast<size_t>(std::llround(i * stride))]);
  return out;
}

// Numbers (and "–" for a missing one) are right-aligned in tables, text left:
// -?[0-9][0-9,]*(\.[0-9]+)?( s| bits)?, by hand (std::regex recurses per
// character, and cells hold names of any length).
bool is_number(const std::string& s) {
  if (s == "–") return true;
  std::string_view v(s);
  for (std::string_view unit : {" s", " bits"})
    if (v.size() > unit.size() && v.substr(v.size() - unit.size()) == unit) {
      v.remove_suffix(unit.size());
      break;
    }
  if (!v.empty() && v[0] == '-') v.remove_prefix(1);
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (v.empty() || !digit(v[0])) return false;
  size_t i = 0;
  while (i < v.size() && (digit(v[i]) || v[i] == ',')) ++i;
  if (i < v.size() && v[i] == '.') {
    const size_t first = ++i;
    while (i < v.size() && digit(v[i])) ++i;
    if (i == first) return false;
  }
  return i == v.size();
}

// ------------------------------------------------------------------ the page
class Page {
 public:
  void raw(const std::string& html) { body_ += html; }
  void h2(const std::string& title) { body_ += "<h2>" + esc(title) + "</h2>\n"; }
  void h3(const std::string& title) { body_ += "<h3>" + esc(title) + "</h3>\n"; }
  void para(const std::string& text) { body_ += "<p>" + esc(text) + "</p>\n"; }
  void open_grid() { body_ += "<div class=\"grid\">\n"; }
  void close_grid() { body_ += "</div>\n"; }
  // A chart spec (see the script's build()); `cls` sizes its box.
  void chart(json spec, const std::string& cls = "chart") {
    std::string id = fmt::format("chart{}", charts_.size());
    spec["id"] = id;
    body_ += fmt::format("<div class=\"{}\"><canvas id=\"{}\" role=\"img\" aria-label=\"{}\"></canvas>"
                         "</div>\n",
                         cls, id, esc(spec.value("title", "")));
    charts_.push_back(std::move(spec));
  }
  void table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows,
             const std::string& cls = "") {
    body_ += "<table" + (cls.empty() ? std::string() : " class=\"" + cls + "\"") + "><thead><tr>";
    for (const auto& h : head) body_ += "<th>" + esc(h) + "</th>";
    body_ += "</tr></thead><tbody>\n";
    for (const auto& r : rows) {
      body_ += "<tr>";
      for (const auto& c : r) body_ += (is_number(c) ? "<td class=\"n\">" : "<td>") + esc(c) + "</td>";
      body_ += "</tr>\n";
    }
    body_ += "</tbody></table>\n";
  }
  void notices(const std::vector<std::string>& list) {
    if (list.empty()) return;
    body_ += "<div class=\"notice\" id=\"report-notices\"><b>Notices</b><ul>";
    for (const auto& n : list) body_ += "<li>" + esc(n) + "</li>";
    body_ += "</ul></div>\n";
  }
  size_t num_charts() const { return charts_.size(); }
  std::string render(const std::string& title, const std::string& chartjs) const;

 private:
  std::string body_;
  json charts_ = json::array();
};

constexpr const char* kStyle = R"CSS(
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1280px;padding:0 16px;color:#222}
h1{font-size:1.5em;margin-bottom:4px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:8px 0 16px}th,td{border:1px solid #ddd;padding:3px 10px;text-align:left;font-variant-numeric:tabular-nums}
th{background:#f4f4f4}td.n{text-align:right}
table.kv td:first-child{font-family:ui-monospace,monospace}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:16px}
.chart{position:relative;height:320px;border:1px solid #eee;padding:6px}
.square{position:relative;height:560px;max-width:620px;border:1px solid #eee;padding:6px}
.notice{background:#fff6d5;border:1px solid #e8c547;padding:8px 12px;margin:12px 0}
#report-errors{background:#fde2e2;border:1px solid #d33;padding:8px;white-space:pre-wrap}
pre.config{background:#f7f7f7;padding:12px;overflow:auto;max-height:480px}
.caption{color:#555;font-size:.9em}
)CSS";

// Builds Chart.js configurations from the compact specs in #report-data and
// records for each canvas how it drew, and script errors, in the DOM.
constexpr const char* kScript = R"JS(
(function () {
  'use strict';
  const errors = [];
  function recordError(msg) {
    errors.push(String(msg));
    const el = document.getElementById('report-errors');
    el.textContent = errors.join('\n');
    el.hidden = false;
  }
  window.addEventListener('error', function (e) {
    recordError(e.message + (e.filename ? ' (' + e.filename + ':' + e.lineno + ')' : ''));
  });
  const consoleError = console.error;
  console.error = function () {
    recordError(Array.prototype.join.call(arguments, ' '));
    consoleError.apply(console, arguments);
  };
  const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2',
                   '#7f7f7f', '#bcbd22', '#17becf'];
  // Tick labels that never throw: Chart.js's own formatter fails
  // ("minimumFractionDigits value is out of range") when the tick step is not
  // finite, as for values near 1e308.
  function tickLabel(v, i, ticks) {
    if (!isFinite(v)) return '';
    if (v === 0) return '0';
    const a = Math.abs(v);
    const step = ticks && ticks.length > 1 ? Math.abs(ticks[1].value - ticks[0].value) : a;
    if (a >= 1e15 || a < 1e-4 || !isFinite(step) || !(step > 0))
      return v.toExponential(2).replace(/\.?0+e/, 'e');
    return v.toFixed(Math.max(0, Math.min(20, -Math.floor(Math.log10(step)))));
  }
  function logTickLabel(v) {  // 1, 2 and 5 times a power of ten, like Chart.js
    if (!(v > 0) || !isFinite(v)) return '';
    const m = Math.round(v / Math.pow(10, Math.floor(Math.log10(v))) * 1e6) / 1e6;
    return m === 1 || m === 2 || m === 5 ? tickLabel(v, 0, []) : '';
  }
  function axis(a) {
    a = a || {};
    const s = {type: a.log ? 'logarithmic' : 'linear',
               title: {display: !!a.label, text: a.label || ''},
               ticks: {callback: a.log ? logTickLabel : tickLabel}};
    if (a.min !== undefined) s.min = a.min;
    if (a.max !== undefined) s.max = a.max;
    return s;
  }
  // Chart.js draws a constant series on value-1..value+1, where a learning
  // rate of 0.01 reads as 0: give it an axis around its value instead.
  function fitConstant(s, spec) {
    let lo = Infinity, hi = -Infinity;
    spec.series.forEach(function (d) {
      d.data.forEach(function (p) { lo = Math.min(lo, p[1]); hi = Math.max(hi, p[1]); });
    });
    if (lo !== hi || !isFinite(lo) || (spec.y && spec.y.log) || s.min !== undefined ||
        s.max !== undefined)
      return;
    const d = lo === 0 ? 1 : Math.abs(lo) / 2;
    s.min = lo - d;
    s.max = lo + d;
  }
  function base(spec, legend) {
    return {animation: false, maintainAspectRatio: false, responsive: true,
            plugins: {title: {display: true, text: spec.title}, legend: {display: legend}}};
  }
  function lineConfig(spec) {
    const options = base(spec, spec.series.length > 1);
    options.scales = {x: axis(spec.x), y: axis(spec.y)};
    fitConstant(options.scales.y, spec);
    return {type: 'scatter', options: options, data: {datasets: spec.series.map(function (s, i) {
      const c = PALETTE[i % PALETTE.length];
      return {label: s.label, showLine: true, borderColor: c, backgroundColor: c, borderWidth: 1.5,
              pointRadius: s.data.length > 60 ? 0 : 2.5,
              data: s.data.map(function (p) { return {x: p[0], y: p[1]}; })};
    })}};
  }
  function barConfig(spec) {
    const options = base(spec, false);
    const x = spec.x || {};
    options.scales = {x: {title: {display: !!x.label, text: x.label || ''}}, y: axis(spec.y)};
    return {type: 'bar', options: options, data: {labels: spec.labels,
            datasets: [{label: spec.title, data: spec.values, backgroundColor: '#1f77b4'}]}};
  }
  function heatColor(v) {
    v = Math.max(-1, Math.min(1, v));
    const r = v < 0 ? Math.round(255 * (1 + v)) : 255;
    const g = Math.round(255 * (1 - Math.abs(v)));
    const b = v > 0 ? Math.round(255 * (1 - v)) : 255;
    return 'rgb(' + r + ',' + g + ',' + b + ')';
  }
  function heatmapConfig(spec, caption) {
    const m = spec.matrix, n = m.length;
    const cells = {id: 'cells', afterDatasetsDraw: function (chart) {
      const ctx = chart.ctx, x = chart.scales.x, y = chart.scales.y, a = chart.chartArea;
      const w = Math.abs(x.getPixelForValue(1) - x.getPixelForValue(0));
      const h = Math.abs(y.getPixelForValue(1) - y.getPixelForValue(0));
      ctx.save();
      ctx.beginPath();
      ctx.rect(a.left, a.top, a.right - a.left, a.bottom - a.top);
      ctx.clip();
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
        ctx.fillStyle = heatColor(m[i][j]);
        ctx.fillRect(x.getPixelForValue(j) - w / 2, y.getPixelForValue(i) - h / 2, w + 0.5, h + 0.5);
      }
      ctx.restore();
    }};
    const options = base(spec, false);
    const ticks = {callback: function (v) { return Number.isInteger(v) ? v : ''; }};
    options.scales = {x: {type: 'linear', min: -0.5, max: n - 0.5, ticks: ticks,
                          title: {display: true, text: 'bit'}},
                      y: {type: 'linear', min: -0.5, max: n - 0.5, reverse: true, ticks: ticks,
                          title: {display: true, text: 'bit'}}};
    options.plugins.tooltip = {enabled: false};
    options.onHover = function (e, els, chart) {
      const j = Math.round(chart.scales.x.getValueForPixel(e.x));
      const i = Math.round(chart.scales.y.getValueForPixel(e.y));
      if (caption && i >= 0 && j >= 0 && i < n && j < n)
        caption.textContent = 'bits ' + i + ' and ' + j + ': correlation ' + m[i][j].toFixed(4);
    };
    return {type: 'scatter', options: options, plugins: [cells],
            data: {datasets: [{label: 'correlation', data: []}]}};
  }
  function painted(canvas) {
    try {
      const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let n = 0;
      for (let k = 3; k < d.length; k += 4) if (d[k] !== 0) n++;
      return n;
    } catch (e) {
      return -1;
    }
  }
  const specs = JSON.parse(document.getElementById('report-data').textContent);
  const made = [];
  if (typeof Chart === 'undefined') {
    document.body.dataset.reportStatus = 'no-chartjs';
    return;
  }
  specs.forEach(function (spec) {
    const canvas = document.getElementById(spec.id);
    try {
      let cfg;
      if (spec.kind === 'line') cfg = lineConfig(spec);
      else if (spec.kind === 'bar') cfg = barConfig(spec);
      else if (spec.kind === 'heatmap')
        cfg = heatmapConfig(spec, document.getElementById(spec.id + '-caption'));
      else throw new Error('unknown chart kind ' + spec.kind);
      made.push([canvas, new Chart(canvas, cfg)]);
    } catch (e) {
      recordError(spec.id + ' (' + spec.title + '): ' + e.message);
    }
  });
  setTimeout(function () {
    made.forEach(function (mc) {
      mc[0].dataset.drawn = mc[1].width + 'x' + mc[1].height;
      mc[0].dataset.painted = painted(mc[0]);
      const y = mc[1].scales.y;
      if (y) mc[0].dataset.y = y.min + ':' + y.max;  // the y axis drawn
    });
    document.body.dataset.charts = made.length;
    document.body.dataset.reportStatus = 'done';
  }, 0);
})();
)JS";

// JSON text that can sit inside a <script> element: every '<', '>' and '&'
// (which JSON text holds only inside strings) as a \u escape, so no string
// (a metric key, a run name) can close the element or open "<!--<script>",
// which would swallow the rest of the page.
std::string script_json(const json& j) {
  const std::string s = json_text(j);
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '<': o += "\\u003c"; break;
      case '>': o += "\\u003e"; break;
      case '&': o += "\\u0026"; break;
      default: o += c;
    }
  }
  return o;
}

std::string Page::render(const std::string& title, const std::string& chartjs) const {
  std::string html;
  html.reserve(chartjs.size() + body_.size() + 64 * 1024);
  html += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n";
  html += "<meta name=\"generator\" content=\"hashlab report\">\n<title>" + esc(title) +
          "</title>\n<style>" + kStyle + "</style>\n";
  if (!chartjs.empty()) {
    // chart.min.js holds no "</script" (checked when read), so it can sit inline.
    html += "<script>\n" + chartjs + "\n</script>\n";
  }
  html += "</head>\n<body>\n<pre id=\"report-errors\" hidden></pre>\n";
  if (chartjs.empty() && !charts_.empty())
    html += fmt::format(
        "<div class=\"notice\">No charts: Chart.js was not found at {} (Debian package "
        "libjs-chart.js; or set HASHLAB_CHARTJS) when this report was written. The tables are "
        "complete; regenerate with <code>hashlab report</code> once it is installed.</div>\n",
        esc(kChartJsPath));
  html += body_;
  html += "<script type=\"application/json\" id=\"report-data\">" + script_json(charts_) +
          "</script>\n";
  html += "<script>" + std::string(kScript) + "</script>\n</body></html>\n";
  return html;
}

// ------------------------------------------------------------------ reading
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
  const auto& b = c.as_binary();
  const int64_t n = b.codes.size(0);
  if (n < 2) {
    r.notices.push_back(fmt::format("{}: {} codes, too few for bit statistics", path.string(), n));
    return;
  }
  const int B = b.nbits;
  // Bounded work and page size for long codes: at most 2^25 unpacked values,
  // and the correlation (a Bc x Bc matrix) of the first 256 bits.
  constexpr int kMaxCorrBits = 256;
  const int Bc = std::min(B, kMaxCorrBits);
  int64_t max_rows = std::max<int64_t>(2, (int64_t{1} << 25) / B);
  if (opts.max_corr_rows > 0) max_rows = std::min(max_rows, opts.max_corr_rows);
  torch::Tensor packed = b.codes;
  int64_t sampled = n;
  if (n > max_rows) {
    const int64_t stride = (n + max_rows - 1) / max_rows;
    packed = packed.index_select(0, torch::arange(0, n, stride));
    sampled = packed.size(0);
  }
  torch::NoGradGuard ng;
  torch::Tensor x = codes::unpack_bits(packed, B).to(torch::kFloat64);  // ±1 [m, B]
  torch::Tensor mean = x.mean(0);
  torch::Tensor ones = ((mean + 1) / 2).contiguous();
  torch::Tensor var = (1 - mean * mean).contiguous();  // of a ±1 variable
  torch::Tensor xc = x.narrow(1, 0, Bc) - mean.narrow(0, 0, Bc);
  torch::Tensor cov = xc.t().mm(xc) / double(sampled);
  torch::Tensor vc = var.narrow(0, 0, Bc);
  torch::Tensor inv = torch::where(vc > 1e-12, vc.rsqrt(), torch::zeros_like(vc));
  torch::Tensor corr = (cov * inv.unsqueeze(0) * inv.unsqueeze(1)).clamp(-1, 1).contiguous();
  json ones_j = json::array(), corr_j = json::array();
  const double* po = ones.data_ptr<double>();
  const double* pc = corr.data_ptr<double>();
  const double* pv = var.data_ptr<double>();
  int constant = 0;
  double max_abs = 0, sum_abs = 0;
  int mi = 0, mj = 0;
  for (int i = 0; i < B; ++i) {
    ones_j.push_back(std::round(po[i] * 1e5) / 1e5);
    if (pv[i] <= 1e-12) ++constant;
    if (i >= Bc) continue;
    json row = json::array();
    for (int j = 0; j < Bc; ++j) {
      double v = (i == j) ? (pv[i] > 1e-12 ? 1.0 : 0.0) : pc[i * Bc + j];
      row.push_back(std::round(v * 1e4) / 1e4);
      if (i < j) {
        sum_abs += std::fabs(v);
        if (std::fabs(v) > max_abs) max_abs = std::fabs(v), mi = i, mj = j;
      }
    }
    corr_j.push_back(std::move(row));
  }
  const double pairs = Bc > 1 ? double(Bc) * (Bc - 1) / 2 : 1;
  r.bit_stats = {{"nbits", B},         {"count", n},         {"corr_bits", Bc},
                 {"sampled", sampled}, {"ones", ones_j},
                 {"corr", corr_j},     {"constant_bits", constant},
                 {"mean_abs_corr", sum_abs / pairs}, {"max_abs_corr", max_abs},
                 {"max_pair", {mi, mj}}};
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

std::string chartjs_source() {
  const char* env = std::getenv("HASHLAB_CHARTJS");
  const std::string path = env && *env ? env : kChartJsPath;
  if (!fs::exists(path)) return "";
  std::string s = read_file(path);
  if (s.find("</script") != std::string::npos || s.find("</SCRIPT") != std::string::npos)
    fail("{}: holds \"</script\", so it cannot be inlined into a report", path);
  return s;
}

namespace {

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

void retrieval_charts(Page& page, const std::vector<const RunData*>& runs, bool overlay) {
  auto label_of = [&](const RunData* r) {
    return overlay ? fmt::format("{} {}b", r->label, r->bits) : std::string("precision");
  };
  json pr = json::array(), pn = json::array(), rn = json::array(), ri = json::array();
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
    if (f.contains("p_at_n")) pn.push_back(series(overlay ? label_of(r) : "P@N", keyed_curve(f["p_at_n"])));
    if (f.contains("r_at_n")) rn.push_back(series(overlay ? label_of(r) : "R@N", keyed_curve(f["r_at_n"])));
    auto rec = family_curve(f, "recall_at_<i>");
    if (!rec.empty()) ri.push_back(series(overlay ? label_of(r) : "Recall@i", rec));
  }
  if (has_points(pr))
    page.chart(line_chart("Precision-recall over Hamming radii 0..B", pr, axis("recall"),
                          axis("precision")));
  if (has_points(pn))
    page.chart(line_chart("Precision@N", pn, axis("N (items retrieved)", true), axis("precision")));
  if (has_points(rn))
    page.chart(line_chart("Recall@N", rn, axis("N (items retrieved)", true), axis("recall")));
  if (has_points(ri)) {
    std::string k = runs.empty() ? "" : num(number_at(runs[0]->final_eval, "recall_k").value_or(0));
    page.chart(line_chart(fmt::format("Recall@i of the true {} Euclidean neighbours (eq. 6)", k), ri,
                          axis("i (items retrieved)", true), axis("recall")));
  }
}

void sigah_chart(Page& page, const RunData& r) {
  json s = json::array();
  for (auto it = r.final_eval.begin(); r.final_eval.is_object() && it != r.final_eval.end(); ++it) {
    const eval::MetricInfo* m = eval::find_metric(it.key());
    if (!m || m->key != "sigah_r<n>" || !it.value().is_object()) continue;
    s.push_back(series(fmt::format("R-{}", eval::family_numbers(*m, it.key()).at(0)),
                       keyed_curve(it.value())));
  }
  if (has_points(s))
    page.chart(line_chart("SiGAH recall curves: true top-n found among the first T", s,
                          axis("T (items retrieved)", true), axis("recall")));
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
  // Periodic evaluations, and the final one at its step.
  bool evals = false;
  for (const auto& c : r.curves) {
    if (c.event != "eval" || c.field == "bits" || c.field == "num_queries" ||
        c.field == "num_database" || c.field.find("seconds") != std::string::npos)
      continue;
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
    sigah_chart(page, r);
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
