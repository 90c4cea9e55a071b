// The HTML page of a report: the body the sections write (headings, tables,
// notices, chart boxes) and one compact JSON spec per chart, rendered into
// one self-contained file around the stylesheet and script of app/report/
// (embedded at build time, report_assets.h) and the inlined Chart.js.
// Internal to the report (report_render.cpp fills it); callers include
// app/report.h.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace hashlab::report {

// `s` as HTML text or an attribute value (&, <, >, " escaped).
std::string esc(const std::string& s);

// JSON text that can sit inside a <script> element: every '<', '>' and '&'
// (which JSON text holds only inside strings) as a \u escape, so no string
// (a metric key, a run name) can close the element or open "<!--<script>",
// which would swallow the rest of the page.
std::string script_json(const nlohmann::json& j);

class Page {
 public:
  void raw(const std::string& html) { body_ += html; }
  void h2(const std::string& title) { body_ += "<h2>" + esc(title) + "</h2>\n"; }
  void h3(const std::string& title) { body_ += "<h3>" + esc(title) + "</h3>\n"; }
  void para(const std::string& text) { body_ += "<p>" + esc(text) + "</p>\n"; }
  void open_grid() { body_ += "<div class=\"grid\">\n"; }
  void close_grid() { body_ += "</div>\n"; }
  // A chart spec ({"kind": "line" | "bar" | "heatmap", "title": ..., ...},
  // drawn by app/report/report.js); `cls` sizes its box.
  void chart(nlohmann::json spec, const std::string& cls = "chart");
  // Cells that read as numbers are right-aligned.
  void table(const std::vector<std::string>& head,
             const std::vector<std::vector<std::string>>& rows, const std::string& cls = "");
  void notices(const std::vector<std::string>& list);
  size_t num_charts() const { return charts_.size(); }
  // The whole page: `chartjs` is inlined ("" draws no charts and says why).
  std::string render(const std::string& title, const std::string& chartjs) const;

 private:
  std::string body_;
  nlohmann::json charts_ = nlohmann::json::array();
};

}  // namespace hashlab::report
