#include "app/report_page.h"

#include <cstdlib>
#include <filesystem>
#include <string_view>

#include <fmt/format.h>

#include "app/report.h"
#include "app/report_assets.h"
#include "csrc/core/error.h"
#include "csrc/core/fs_util.h"
#include "csrc/core/json_text.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace hashlab::report {
namespace {

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

}  // namespace

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

void Page::chart(json spec, const std::string& cls) {
  std::string id = fmt::format("chart{}", charts_.size());
  spec["id"] = id;
  body_ += fmt::format(
      "<div class=\"{}\"><canvas id=\"{}\" role=\"img\" aria-label=\"{}\"></canvas></div>\n", cls,
      id, esc(spec.value("title", "")));
  charts_.push_back(std::move(spec));
}

void Page::table(const std::vector<std::string>& head,
                 const std::vector<std::vector<std::string>>& rows, const std::string& cls) {
  body_ += "<table" + (cls.empty() ? std::string() : " class=\"" + cls + "\"") + "><thead><tr>";
  for (const auto& h : head) body_ += "<th>" + esc(h) + "</th>";
  body_ += "</tr></thead><tbody>\n";
  for (const auto& r : rows) {
    body_ += "<tr>";
    for (const auto& c : r)
      body_ += (is_number(c) ? "<td class=\"n\">" : "<td>") + esc(c) + "</td>";
    body_ += "</tr>\n";
  }
  body_ += "</tbody></table>\n";
}

void Page::notices(const std::vector<std::string>& list) {
  if (list.empty()) return;
  body_ += "<div class=\"notice\" id=\"report-notices\"><b>Notices</b><ul>";
  for (const auto& n : list) body_ += "<li>" + esc(n) + "</li>";
  body_ += "</ul></div>\n";
}

std::string Page::render(const std::string& title, const std::string& chartjs) const {
  std::string html;
  html.reserve(chartjs.size() + body_.size() + 64 * 1024);
  html += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n";
  // The stylesheet and the script (app/report/, whole files that end in a
  // newline) each start on a line of their own.
  html += "<meta name=\"generator\" content=\"hashlab report\">\n<title>" + esc(title) +
          "</title>\n<style>\n" + std::string(kStyle) + "</style>\n";
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
  html += "<script>\n" + std::string(kScript) + "</script>\n</body></html>\n";
  return html;
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

}  // namespace hashlab::report
