// Run reports (app/report.h, `hashlab report`): every chart of a generated
// page draws in headless Chromium (checked through the DOM dump: each canvas
// has a non-zero size and painted pixels, the page finished its script and
// recorded no error), the numbers behind the bit charts are right, and a run
// killed mid-write still gets a report that says what is missing.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "app/report.h"
#include "csrc/codes/code_file.h"
#include "csrc/codes/codes.h"
#include "tests/tools/cli_util.h"

namespace fs = std::filesystem;
using nlohmann::json;
using hashlab::testing::contains;
using hashlab::testing::slurp;
using hashlab::testing::run;
using hashlab::testing::sh;
namespace report = hashlab::report;

namespace {

// The headless browser tools/install_deps.sh installs.
std::string browser() {
  for (const char* b : {"chromium-headless-shell", "chromium"})
    if (sh(std::string("command -v ") + b + " >/dev/null").code == 0) return b;
  return "";
}

struct Canvas {
  std::string id, label, drawn;
  long painted = -1;
  std::string y;  // the y axis drawn, "min:max"
};

struct Dom {
  std::string html;
  std::vector<Canvas> canvases;
  std::string status, errors;
  int charts = -1;
};

std::string attr(const std::string& tag, const std::string& name) {
  std::smatch m;
  std::regex re(" " + name + "=\"([^\"]*)\"");
  return std::regex_search(tag, m, re) ? m[1].str() : std::string();
}

// Opens `page` in headless Chromium, lets its scripts run, returns the DOM.
Dom open_in_browser(const fs::path& page) {
  Dom d;
  const std::string b = browser();
  if (b.empty()) {
    ADD_FAILURE() << "no headless Chromium (chromium-headless-shell or chromium): "
                     "tools/install_deps.sh installs it";
    return d;
  }
  auto r = sh("(timeout 120 " + b +
              " --headless --no-sandbox --disable-gpu --window-size=1300,2000 "
              "--virtual-time-budget=10000 --dump-dom file://" +
              fs::absolute(page).string() + ") 2>/dev/null");
  EXPECT_EQ(r.code, 0) << r.out.substr(0, 2000);
  d.html = r.out;
  std::smatch m;
  if (std::regex_search(d.html, m, std::regex("<body[^>]*>"))) {
    d.status = attr(m[0].str(), "data-report-status");
    std::string c = attr(m[0].str(), "data-charts");
    d.charts = c.empty() ? -1 : std::stoi(c);
  }
  static const std::regex canvas_re("<canvas[^>]*>");
  for (auto it = std::sregex_iterator(d.html.begin(), d.html.end(), canvas_re);
       it != std::sregex_iterator(); ++it) {
    const std::string tag = it->str();
    Canvas c{attr(tag, "id"), attr(tag, "aria-label"), attr(tag, "data-drawn")};
    c.y = attr(tag, "data-y");
    std::string p = attr(tag, "data-painted");
    if (!p.empty()) c.painted = std::stol(p);
    d.canvases.push_back(c);
  }
  if (std::regex_search(d.html, m, std::regex("<pre id=\"report-errors\"[^>]*>([^<]*)</pre>")))
    d.errors = m[1].str();
  return d;
}

// Every chart drew: the script finished, made as many charts as there are
// canvases, each has a non-zero size and painted pixels, and no script error
// was recorded. Returns the charts' titles.
std::vector<std::string> expect_all_charts_drew(const fs::path& page, size_t at_least,
                                                Dom* dom = nullptr) {
  Dom d = open_in_browser(page);
  if (dom) *dom = d;
  EXPECT_EQ(d.status, "done") << page;
  EXPECT_EQ(d.errors, "") << page;
  EXPECT_GE(d.canvases.size(), at_least) << page;
  EXPECT_EQ(d.charts, static_cast<int>(d.canvases.size())) << page;
  std::vector<std::string> labels;
  for (const auto& c : d.canvases) {
    std::smatch m;
    const bool sized = std::regex_match(c.drawn, m, std::regex("([0-9]+)x([0-9]+)")) &&
                       std::stoi(m[1]) > 0 && std::stoi(m[2]) > 0;
    EXPECT_TRUE(sized) << c.id << " (" << c.label << ") drawn=\"" << c.drawn << "\"";
    EXPECT_GT(c.painted, 0) << c.id << " (" << c.label << ") painted nothing";
    labels.push_back(c.label);
  }
  return labels;
}

bool has_label(const std::vector<std::string>& labels, const std::string& prefix) {
  for (const auto& l : labels)
    if (l.rfind(prefix, 0) == 0) return true;
  return false;
}

void write_lines(const fs::path& p, const std::vector<json>& recs, const std::string& tail = "") {
  std::ofstream f(p);
  for (const auto& r : recs) f << r.dump() << "\n";
  f << tail;
}

const char* kConfig = "data:\n  name: synthetic\n  protocol: label\nname: synth_b16\nmethod: hashnet\n"
                      "model:\n  bits: 16\n";

// A label-protocol final evaluation with every curve.
json label_final(int bits, double map_all) {
  json pr = {{"precision", json::array()}, {"recall", json::array()}, {"radius", json::array()}};
  for (int r = 0; r <= bits; ++r) {
    pr["radius"].push_back(r);
    pr["recall"].push_back(double(r) / bits);
    pr["precision"].push_back(0.9 - 0.8 * r / bits);
  }
  return {{"event", "eval"}, {"final", true}, {"bits", bits}, {"map_all", map_all},
          {"map_1000", map_all + 0.1}, {"p_h2", 0.6}, {"r_h2", 0.1}, {"pr_curve", pr},
          {"p_at_n", {{"1", 0.9}, {"10", 0.8}, {"100", 0.7}, {"1000", 0.5}}},
          {"r_at_n", {{"1", 0.001}, {"10", 0.01}, {"100", 0.1}, {"1000", 0.5}}},
          {"train_seconds", 12.5}, {"step", 20}};
}

// The notices on a page.
std::string page_notices(const std::string& html) {
  const size_t at = html.find("id=\"report-notices\"");
  return at == std::string::npos ? "" : html.substr(at, html.find("</div>", at) - at);
}

void write_text_lines(const fs::path& p, const std::vector<std::string>& lines) {
  std::ofstream f(p, std::ios::binary);
  for (const auto& l : lines) f << l << "\n";
}

class ReportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = hashlab::testing::make_image_data_dir("hl_report_");
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static fs::path dir_;
};
fs::path ReportTest::dir_;

// ---- a run report with every kind of chart, and the numbers behind the bit charts

TEST_F(ReportTest, LabelRunReportDrawsEveryChartAndItsBitStatisticsAreRight) {
  const fs::path d = dir_ / "label_run";
  fs::create_directories(d / "codes");
  std::ofstream(d / "config.yaml") << kConfig;
  std::vector<json> recs = {{{"event", "start"}, {"method", "hashnet"}, {"bits", 16}}};
  for (int s = 1; s <= 20; ++s) {
    recs.push_back({{"event", "train"}, {"step", s}, {"epoch", 0}, {"loss", 1.0 / s},
                    {"lr", 0.01}, {"beta", 1 + 0.1 * s}, {"sec_per_step", 0.2}});
    if (s % 10 == 0) {
      recs.push_back({{"event", "code_histogram"}, {"step", s}, {"bins", 100},
                      {"fraction_above_0.99", 0.05 * s}});
      if (s < 20) recs.push_back({{"event", "eval"}, {"step", s}, {"map_all", 0.3}, {"p_h2", 0.4}});
    }
  }
  recs.push_back(label_final(16, 0.5));
  write_lines(d / "metrics.jsonl", recs);
  // 500 random 16-bit codes; bit 5 always 1, bit 7 = bit 3.
  torch::manual_seed(3);
  torch::Tensor bits = torch::randint(0, 2, {500, 16}, torch::kInt64);
  bits.select(1, 5).fill_(1);
  bits.select(1, 7).copy_(bits.select(1, 3));
  torch::Tensor packed = hashlab::codes::pack_signs((bits * 2 - 1).to(torch::kFloat32));
  hashlab::codes::write_codes((d / "codes/database.hlc").string(),
                              hashlab::codes::Codes::binary({16, packed}));

  report::RunData r = report::read_run(d.string());
  EXPECT_EQ(r.label, "synth");  // the config name without _b16
  EXPECT_EQ(r.method, "hashnet");
  EXPECT_EQ(r.bits, 16);
  EXPECT_EQ(r.status, "finished");
  EXPECT_TRUE(r.notices.empty()) << r.notices[0];
  ASSERT_FALSE(r.bit_stats.is_null());
  EXPECT_EQ(r.bit_stats["constant_bits"], 1);
  torch::Tensor x = bits.to(torch::kFloat64);
  for (int j = 0; j < 16; ++j)
    EXPECT_NEAR(r.bit_stats["ones"][j].get<double>(), x.select(1, j).mean().item<double>(), 1e-5);
  // Pearson correlation of two bits, computed directly.
  auto pearson = [&](int a, int b) {
    auto xa = x.select(1, a) - x.select(1, a).mean(), xb = x.select(1, b) - x.select(1, b).mean();
    return ((xa * xb).sum() / (xa.pow(2).sum() * xb.pow(2).sum()).sqrt()).item<double>();
  };
  EXPECT_NEAR(r.bit_stats["corr"][0][1].get<double>(), pearson(0, 1), 1e-4);
  EXPECT_NEAR(r.bit_stats["corr"][3][7].get<double>(), 1.0, 1e-9);
  EXPECT_NEAR(r.bit_stats["corr"][2][9].get<double>(), pearson(2, 9), 1e-4);
  EXPECT_EQ(r.bit_stats["corr"][5][5].get<double>(), 0.0);  // constant bit: no correlation
  EXPECT_EQ(r.bit_stats["max_pair"], json({3, 7}));

  const std::string page = report::write_run_report(d.string());
  EXPECT_EQ(fs::path(page), d / "report.html");
  const std::string html = slurp(page);
  EXPECT_FALSE(contains(html, "src=\"http")) << "the page must not fetch anything";
  EXPECT_TRUE(contains(html, "Chart.js v3")) << "Chart.js is inlined";
  auto labels = expect_all_charts_drew(page, 10);
  for (const char* want :
       {"Precision-recall", "Precision@N", "Recall@N", "loss", "lr", "beta", "sec_per_step",
        "code_histogram: fraction_above_0.99", "map_all", "p_h2", "Bit balance", "Bit correlation"})
    EXPECT_TRUE(has_label(labels, want)) << want;
  // A constant series of a method's own record (the histogram's bin count) is no chart.
  EXPECT_FALSE(has_label(labels, "code_histogram: bins"));
}

// Long codes: the balance of every bit, the correlation of the first 256
// (a 1,000 x 1,000 matrix would be a 10 MB page), work bounded by sampling.
TEST_F(ReportTest, LongCodesKeepTheReportBounded) {
  const fs::path d = dir_ / "long_run";
  fs::create_directories(d / "codes");
  std::ofstream(d / "config.yaml") << "name: long\nmethod: lsh\nmodel:\n  bits: 1000\n";
  write_lines(d / "metrics.jsonl", {{{"event", "start"}, {"method", "lsh"}, {"bits", 1000}},
                                    label_final(1000, 0.3)});
  torch::manual_seed(5);
  torch::Tensor bits = torch::randint(0, 2, {3000, 1000}, torch::kInt64);
  hashlab::codes::write_codes(
      (d / "codes/database.hlc").string(),
      hashlab::codes::Codes::binary({1000, hashlab::codes::pack_signs((bits * 2 - 1).to(torch::kFloat32))}));
  report::RunData r = report::read_run(d.string());
  ASSERT_FALSE(r.bit_stats.is_null());
  EXPECT_EQ(r.bit_stats["ones"].size(), 1000u);
  EXPECT_EQ(r.bit_stats["corr"].size(), 256u);
  EXPECT_EQ(r.bit_stats["corr"][0].size(), 256u);
  EXPECT_NEAR(r.bit_stats["ones"][999].get<double>(), bits.select(1, 999).to(torch::kFloat64).mean().item<double>(), 1e-5);
  const std::string page = report::write_run_report(d.string());
  EXPECT_LT(fs::file_size(page), 3u << 20);
  EXPECT_TRUE(contains(slurp(page), "of the first 256"));
  auto labels = expect_all_charts_drew(page, 5);
  EXPECT_TRUE(has_label(labels, "Bit correlation of bits 0..255"));
}

TEST_F(ReportTest, EuclideanRunReportDrawsRecallAndSigahCurvesAndTheGrid) {
  const fs::path d = dir_ / "euclid_run";
  fs::create_directories(d);
  std::ofstream(d / "config.yaml") << "name: aj\nmethod: auto_jacobin\nmodel:\n  bits: 32\n";
  json f = {{"event", "eval"}, {"final", true}, {"bits", 32}, {"m_recall", 0.9}, {"recall_k", 100},
            {"recall_at_1", 0.004}, {"recall_at_10", 0.03}, {"recall_at_100", 0.2},
            {"recall_at_1000", 0.7}, {"recall_at_10000", 0.99}, {"sigah_map", 0.4},
            {"sigah_pre100", 0.6}, {"m_recall_k1_K1000", 0.8}, {"m_recall_k100_K1000", 0.5},
            {"m_recall_k1_K10000", 0.95},
            {"sigah_r1", {{"1", 0.03}, {"10", 0.2}, {"100", 0.5}}},
            {"sigah_r10", {{"1", 0.01}, {"10", 0.1}, {"100", 0.4}}}};
  write_lines(d / "metrics.jsonl",
              {{{"event", "start"}, {"method", "auto_jacobin"}, {"bits", 32}},
               {{"event", "auto_jacobin"}, {"scale", 0.03}, {"tangent_seconds", 300.5}},
               {{"event", "train"}, {"step", 1}, {"loss", 3.0}, {"jacobian", 2.0}},
               {{"event", "train"}, {"step", 2}, {"loss", 2.0}, {"jacobian", 1.5}}, f});
  report::RunData r = report::read_run(d.string());
  EXPECT_EQ(r.protocol, "euclidean");
  ASSERT_EQ(r.other_records.size(), 1u);
  const std::string page = report::write_run_report(d.string());
  const std::string html = slurp(page);
  EXPECT_TRUE(contains(html, "m-Recall grid"));
  EXPECT_TRUE(contains(html, "<td>K=10000</td>") || contains(html, "<th>K=10000</th>"));
  EXPECT_TRUE(contains(html, "tangent_seconds"));
  auto labels = expect_all_charts_drew(page, 4);
  for (const char* want : {"Recall@i of the true 100", "SiGAH recall curves", "loss", "jacobian"})
    EXPECT_TRUE(has_label(labels, want)) << want;
}

// ---- a killed run: malformed and cut lines, no final evaluation, no codes

TEST_F(ReportTest, KilledRunStillGetsAReportThatSaysWhatIsMissing) {
  const fs::path d = dir_ / "killed_run";
  fs::create_directories(d);
  std::ofstream(d / "config.yaml") << kConfig;
  std::vector<json> recs = {{{"event", "start"}, {"method", "hashnet"}, {"bits", 16}}};
  for (int s = 1; s <= 6; ++s) recs.push_back({{"event", "train"}, {"step", s}, {"loss", 2.0 / s}});
  // A resumed session repeats steps 5 and 6 after its checkpoint at 4.
  recs.push_back({{"event", "start"}, {"method", "hashnet"}, {"bits", 16}, {"resume", true}});
  recs.push_back({{"event", "train"}, {"step", 5}, {"loss", 0.25}});
  recs.push_back({{"event", "train"}, {"step", 6}, {"loss", 0.125}});
  {
    std::ofstream f(d / "metrics.jsonl");
    for (size_t i = 0; i < recs.size(); ++i) {
      f << recs[i].dump() << "\n";
      if (i == 2) f << "not json at all\n";
    }
    f << R"({"event":"train","step":7,"lo)";  // killed while writing
  }
  auto r = run("report " + d.string());
  ASSERT_EQ(r.code, 0) << r.out;
  const fs::path page = d / "report.html";
  ASSERT_TRUE(fs::exists(page));
  const std::string html = slurp(page);
  const std::string notices = page_notices(html);
  ASSERT_FALSE(notices.empty()) << "no notices on the page";
  EXPECT_TRUE(contains(notices, "line 4: not a JSON object")) << notices;
  EXPECT_TRUE(contains(notices, "line 12: cut short")) << notices;
  EXPECT_TRUE(contains(notices, "no final evaluation")) << notices;
  EXPECT_FALSE(contains(html, "Bit balance"));  // an unfinished run has no codes
  EXPECT_TRUE(contains(html, "resumed 1 times"));
  // A resumed run's repeated steps are replaced, not thinned.
  EXPECT_FALSE(contains(html, "Thinned")) << "a run of 8 records was said to be thinned";
  EXPECT_TRUE(contains(r.out, "cut short")) << r.out;  // and on the console

  report::RunData rd = report::read_run(d.string());
  EXPECT_EQ(rd.status, "stopped");
  ASSERT_EQ(rd.curves.size(), 1u);
  const auto& loss = rd.curves[0].points;
  ASSERT_EQ(loss.size(), 6u);  // steps 1..6 once each
  EXPECT_EQ(loss[4], std::make_pair(5.0, 0.25));  // the resumed session's value
  EXPECT_EQ(loss[5], std::make_pair(6.0, 0.125));

  auto labels = expect_all_charts_drew(page, 1);
  EXPECT_TRUE(has_label(labels, "loss"));

  // An interrupt record names how to continue.
  std::ofstream(d / "metrics.jsonl", std::ios::app) << "\n" << json{{"event", "interrupt"}, {"step", 6}}.dump() << "\n";
  rd = report::read_run(d.string());
  EXPECT_EQ(rd.status, "interrupted at step 6");
}

TEST_F(ReportTest, BadArgumentsAreNamed) {
  auto r = run("report " + (dir_ / "nope").string());
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.out, "nope: no such run directory")) << r.out;
  fs::create_directories(dir_ / "empty");
  r = run("report " + (dir_ / "empty").string());
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.out, "not a run directory")) << r.out;
}

// ---- real runs: the train job writes report.html; comparison page, CSV, markdown

TEST_F(ReportTest, TrainWritesTheReportAndRunsCompare) {
  const std::string data = (dir_ / "data.yaml").string();
  std::ofstream(dir_ / "lsh.yaml") << "_base_: data.yaml\nname: lsh\nmethod: lsh\nmodel:\n  bits: 8\n";
  std::ofstream(dir_ / "itq.yaml") << "_base_: data.yaml\nname: itq\nmethod: itq\nmodel:\n  bits: 8\n";
  // A step-trained method with periodic evaluation: training curves, eval curves.
  std::ofstream(dir_ / "hn.yaml")
      << "_base_: data.yaml\nname: hn\nmethod: hashnet\nmodel:\n  bits: 16\n"
         "  backbone: {name: mlp, widths: [32]}\ntrain:\n  iterations: 20\n  batch_size: 32\n"
         "  log_every: 2\n  eval_every: 10\n";
  struct Job {
    std::string cfg, bits, dir;
  };
  std::vector<Job> jobs = {{"lsh.yaml", "8", "lsh8"}, {"lsh.yaml", "16", "lsh16"},
                           {"itq.yaml", "8", "itq8"}, {"itq.yaml", "16", "itq16"},
                           {"hn.yaml", "16", "hn16"}};
  std::map<std::string, json> finals;
  for (const auto& j : jobs) {
    auto r = run("train -c " + (dir_ / j.cfg).string() + " model.bits=" + j.bits + " --run-dir " +
                 (dir_ / j.dir).string());
    ASSERT_EQ(r.code, 0) << r.out;
    ASSERT_TRUE(fs::exists(dir_ / j.dir / "report.html")) << j.dir;
    EXPECT_TRUE(contains(r.out, "report: " + (dir_ / j.dir / "report.html").string())) << r.out;
    finals[j.dir] = json::parse(hashlab::testing::last_line(r.out));
  }
  auto labels = expect_all_charts_drew(dir_ / "hn16" / "report.html", 8);
  for (const char* want : {"Precision-recall", "loss", "beta", "map_all", "Bit balance",
                           "Bit correlation"})
    EXPECT_TRUE(has_label(labels, want)) << want;

  std::string runs;
  for (const auto& j : jobs) runs += " " + (dir_ / j.dir).string();
  const fs::path cmp = dir_ / "compare.html";
  auto r = run("report" + runs + " --out " + cmp.string() + " --csv");
  ASSERT_EQ(r.code, 0) << r.out;
  // The CSV on stdout: a header and one row per run with its final metrics.
  std::istringstream csv(r.out);
  std::string line;
  std::vector<std::vector<std::string>> rows;
  while (std::getline(csv, line)) {
    if (line.rfind("run,", 0) != 0 && rows.empty()) continue;  // log lines before
    std::vector<std::string> cells;
    std::stringstream ls(line);
    std::string c;
    while (std::getline(ls, c, ',')) cells.push_back(c);
    if (rows.empty() || cells.size() == rows[0].size()) rows.push_back(cells);
  }
  ASSERT_EQ(rows.size(), jobs.size() + 1) << r.out;
  EXPECT_EQ(rows[0], (std::vector<std::string>{"run", "method", "bits", "protocol", "map_all",
                                               "map_1000", "p_h2", "train_seconds", "status",
                                               "run_dir"}));
  for (size_t i = 0; i < jobs.size(); ++i) {
    const json& f = finals[jobs[i].dir];
    EXPECT_EQ(rows[i + 1][2], jobs[i].bits);
    EXPECT_EQ(rows[i + 1][8], "finished");
    EXPECT_NEAR(std::stod(rows[i + 1][4]), f["map_all"].get<double>(), 1e-12) << jobs[i].dir;
    EXPECT_NEAR(std::stod(rows[i + 1][6]), f["p_h2"].get<double>(), 1e-12) << jobs[i].dir;
  }
  labels = expect_all_charts_drew(cmp, 4);
  for (const char* want : {"Precision-recall", "Precision@N", "mAP@all against code length",
                           "mAP@1000 against code length"})
    EXPECT_TRUE(has_label(labels, want)) << want;
  const std::string html = slurp(cmp);
  EXPECT_TRUE(contains(html, "mAP@all by code length"));

  r = run("report" + runs + " --markdown");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "| run | 8 bits | 16 bits |")) << r.out;
  EXPECT_TRUE(contains(r.out, fmt::format("| lsh | {:.4f} | {:.4f} |",
                                          finals["lsh8"]["map_all"].get<double>(),
                                          finals["lsh16"]["map_all"].get<double>())))
      << r.out;
  EXPECT_TRUE(contains(r.out, "| hn | – |")) << r.out;

  // runs/<name> stands for its latest run.
  fs::create_directories(dir_ / "runs" / "lsh");
  fs::copy(dir_ / "lsh8", dir_ / "runs" / "lsh" / "20260101-000000", fs::copy_options::recursive);
  fs::copy(dir_ / "lsh16", dir_ / "runs" / "lsh" / "20260102-000000", fs::copy_options::recursive);
  r = run("report " + (dir_ / "runs" / "lsh").string() + " --csv");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "20260102-000000")) << r.out;
  EXPECT_FALSE(contains(r.out, "20260101-000000")) << r.out;
}

// ---- hostile metrics.jsonl: nothing in it fails the report

// nlohmann's parser, copies and dump() recurse: a record nested 100,000 deep
// crashed `report` (and `train` at its end) with SIGSEGV. Records nested,
// sized or keyed beyond the reader's bounds are notices naming the line.
TEST_F(ReportTest, RecordsBeyondTheReadersBoundsAreNamedAndTheReportIsDrawn) {
  const fs::path d = dir_ / "deep_run";
  fs::create_directories(d);
  std::ofstream(d / "config.yaml") << kConfig;
  std::vector<std::string> lines = {json{{"event", "start"}, {"method", "hashnet"}, {"bits", 16}}.dump()};
  for (int s = 1; s <= 5; ++s)
    lines.push_back(json{{"event", "train"}, {"step", s}, {"loss", 1.0 / s}}.dump());
  const size_t n = 100000;
  lines.push_back(R"({"event":"fit","nest":)" + std::string(n, '[') + std::string(n, ']') + "}");
  lines.push_back(R"({"event":"fit","s":")" + std::string(size_t{2} << 20, 'x') + "\"}");
  std::string many = R"({"event":"fit")";
  for (int k = 0; k < 20000; ++k) many += fmt::format(",\"k{}\":0", k);
  lines.push_back(many + "}");
  lines.push_back(R"({"event":"fit","nest":)" + std::string(30, '[') + std::string(30, ']') + "}");
  lines.push_back(label_final(16, 0.5).dump());
  write_text_lines(d / "metrics.jsonl", lines);

  auto r = run("report " + d.string());
  ASSERT_EQ(r.code, 0) << r.out.substr(0, 3000);
  const std::string notices = page_notices(slurp(d / "report.html"));
  EXPECT_TRUE(contains(notices, "metrics.jsonl line 7: nested deeper than")) << notices;
  EXPECT_TRUE(contains(notices, "metrics.jsonl line 8: a record of 2097174 bytes")) << notices;
  EXPECT_TRUE(contains(notices, "metrics.jsonl line 9: more than")) << notices;
  EXPECT_FALSE(contains(notices, "line 10")) << notices;  // 30 deep is within the bounds
  report::RunData rd = report::read_run(d.string());
  EXPECT_EQ(rd.status, "finished");
  EXPECT_EQ(rd.other_records.size(), 1u);
  auto labels = expect_all_charts_drew(d / "report.html", 4);
  EXPECT_TRUE(has_label(labels, "loss"));
  EXPECT_TRUE(has_label(labels, "Precision-recall"));
}

// A record whose fields have the wrong type failed the whole report with
// nlohmann's type_error 302 (no file, no line), a 200-digit metric key with
// "stod". Each is a notice naming the line; the rest of the report is drawn.
TEST_F(ReportTest, RecordsOfTheWrongTypeAreNamedAndTheRestIsDrawn) {
  const fs::path d = dir_ / "typed_run";
  fs::create_directories(d);
  std::ofstream(d / "config.yaml") << kConfig;
  std::vector<std::string> lines = {json{{"event", "start"}, {"method", "hashnet"}, {"bits", 16}}.dump()};
  for (int s = 1; s <= 5; ++s)
    lines.push_back(json{{"event", "train"}, {"step", s}, {"loss", 1.0 / s}}.dump());
  lines.push_back(R"({"event":5})");                                 // line 7
  lines.push_back(R"({"event":"eval","final":"yes","map_all":0.9})");  // line 8
  lines.push_back(R"({"event":"eval","step":"x","map_all":0.3})");    // line 9
  lines.push_back(R"({"event":"error","message":5})");               // line 10
  lines.push_back(R"({"event":"train","step":6,")" + std::string(400, '7') + R"(":1})");  // line 11
  json f = label_final(16, 0.5);
  f["recall_at_" + std::string(200, '9')] = 0.5;     // a number beyond double
  f["m_recall_k" + std::string(200, '9') + "_K1000"] = 0.5;  // beyond int64
  f["p_at_n"][std::string(200, '9')] = 0.5;
  lines.push_back(f.dump());
  write_text_lines(d / "metrics.jsonl", lines);

  auto r = run("report " + d.string());
  ASSERT_EQ(r.code, 0) << r.out.substr(0, 3000);
  EXPECT_TRUE(contains(page_notices(slurp(d / "report.html")), "line 11: a field name"));
  report::RunData rd = report::read_run(d.string());
  std::string notices;
  for (const auto& n : rd.notices) notices += n + "\n";
  for (const char* want :
       {"metrics.jsonl line 7: \"event\" is a number, not a string",
        "metrics.jsonl line 8: \"final\" is a string, not true or false",
        "metrics.jsonl line 9: \"step\" is a string, not an integer",
        "metrics.jsonl line 10: \"message\" is a number, not a string",
        "metrics.jsonl line 11: a field name of 400 bytes"})
    EXPECT_TRUE(contains(notices, want)) << want << "\n" << notices;
  EXPECT_EQ(rd.status, "finished");  // line 10 is no error record
  EXPECT_EQ(rd.final_eval.value("map_all", 0.0), 0.5);
  auto labels = expect_all_charts_drew(d / "report.html", 4);
  for (const char* want : {"loss", "Precision-recall", "Precision@N", "Recall@N"})
    EXPECT_TRUE(has_label(labels, want)) << want;
}

// The embedded chart data escaped only "</": "<!--<script>" in a metric key,
// a config name or a run label made the browser swallow the rest of the page
// and no chart drew.
TEST_F(ReportTest, HostileStringsInKeysNamesAndLabelsDrawEveryChart) {
  const std::string hostile = "<!--<script> & </script> >";
  const fs::path d = dir_ / "hostile_run";
  fs::create_directories(d);
  std::ofstream(d / "config.yaml") << "name: \"" << hostile << "_b16\"\nmethod: hashnet\nmodel:\n  bits: 16\n";
  std::vector<json> recs = {{{"event", "start"}, {"method", "hashnet"}, {"bits", 16}}};
  for (int s = 1; s <= 5; ++s)
    recs.push_back({{"event", "train"}, {"step", s}, {"loss", 1.0 / s}, {hostile, 2.0 * s}});
  recs.push_back(label_final(16, 0.5));
  write_lines(d / "metrics.jsonl", recs);
  auto r = run("report " + d.string());
  ASSERT_EQ(r.code, 0) << r.out;
  auto labels = expect_all_charts_drew(d / "report.html", 5);
  EXPECT_TRUE(has_label(labels, "loss"));

  const fs::path plain = dir_ / "plain_run";
  fs::create_directories(plain);
  std::ofstream(plain / "config.yaml") << kConfig;
  write_lines(plain / "metrics.jsonl", {{{"event", "start"}, {"method", "hashnet"}, {"bits", 16}},
                                        label_final(16, 0.6)});
  const fs::path cmp = dir_ / "hostile_compare.html";
  r = run("report " + d.string() + " " + plain.string() + " --out " + cmp.string());
  ASSERT_EQ(r.code, 0) << r.out;
  labels = expect_all_charts_drew(cmp, 3);
  EXPECT_TRUE(has_label(labels, "Precision-recall"));
}

// Values near 1e308 made Chart.js's tick formatter throw ("minimumFractionDigits
// value is out of range"), and a constant series (a learning rate of 0.01) was
// drawn on -1..1, where it reads as 0.
TEST_F(ReportTest, HugeTinyAndConstantValuesDrawOnReadableAxes) {
  const fs::path d = dir_ / "extreme_run";
  fs::create_directories(d);
  std::ofstream(d / "config.yaml") << kConfig;
  std::vector<json> recs = {{{"event", "start"}, {"method", "hashnet"}, {"bits", 16}}};
  for (int s = 1; s <= 10; ++s)
    recs.push_back({{"event", "train"}, {"step", s}, {"loss", 1.0 / s},
                    {"huge", s % 2 ? 1e308 : -1e308}, {"big", 1e308 / s}, {"tiny", 1e-308 * s},
                    {"lr", 0.01}});
  recs.push_back(label_final(16, 0.5));
  write_lines(d / "metrics.jsonl", recs);
  const std::string page = report::write_run_report(d.string());
  Dom dom;
  auto labels = expect_all_charts_drew(page, 8, &dom);
  for (const char* want : {"huge", "big", "tiny", "lr"}) EXPECT_TRUE(has_label(labels, want)) << want;
  bool found = false;
  for (const auto& c : dom.canvases) {
    if (c.label != "lr") continue;
    found = true;
    const size_t colon = c.y.find(':');
    ASSERT_NE(colon, std::string::npos) << "y=\"" << c.y << "\"";
    const double lo = std::stod(c.y.substr(0, colon)), hi = std::stod(c.y.substr(colon + 1));
    EXPECT_TRUE(lo > 0 && lo < 0.01 && hi > 0.01 && hi < 0.05) << "lr drawn on " << c.y;
  }
  EXPECT_TRUE(found);
}

// A run directory whose name is not UTF-8: `train` wrote every file, then
// exited 1 with nlohmann's type_error 316 printing its result; a comparison
// page including the run failed the same way.
TEST_F(ReportTest, ARunDirectoryThatIsNotUtf8TrainsAndGetsAReport) {
  std::ofstream(dir_ / "lsh_utf8.yaml")
      << "_base_: data.yaml\nname: lsh\nmethod: lsh\nmodel:\n  bits: 8\n";
  const fs::path bad = dir_ / "run_\xff\xfe";
  const fs::path good = dir_ / "run_utf8";
  for (const fs::path& d : {bad, good}) {
    auto r = run("train -c " + (dir_ / "lsh_utf8.yaml").string() + " --run-dir '" + d.string() + "'");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_TRUE(fs::exists(d / "report.html")) << r.out;
    json result = json::parse(hashlab::testing::last_line(r.out), nullptr, false);
    ASSERT_TRUE(result.is_object()) << r.out;
    EXPECT_TRUE(result.contains("map_all"));
  }
  const fs::path cmp = dir_ / "utf8_compare.html";
  auto r = run("report '" + bad.string() + "' '" + good.string() + "' --out " + cmp.string() + " --csv");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "run_utf8")) << r.out;
  expect_all_charts_drew(cmp, 3);
}

// The reader held the whole file and every record as JSON (about 8x the file
// in memory); `train` runs it at its end. It streams the file and keeps at
// most max_points points per curve, however many values were logged.
TEST_F(ReportTest, LongMetricsAreThinnedToABoundedNumberOfPoints) {
  const fs::path d = dir_ / "long_metrics";
  fs::create_directories(d);
  std::ofstream(d / "config.yaml") << kConfig;
  {
    std::ofstream f(d / "metrics.jsonl");
    f << json{{"event", "start"}, {"method", "hashnet"}, {"bits", 16}}.dump() << "\n";
    for (int s = 1; s <= 20000; ++s) {
      f << json{{"event", "train"}, {"step", s}, {"loss", 1.0 / s}, {"lr", 0.01}}.dump() << "\n";
      if (s % 5 == 0) f << json{{"event", "eval"}, {"step", s}, {"map_all", s * 1e-5}}.dump() << "\n";
    }
    // A resumed session repeats steps 19001..20000 after its checkpoint.
    f << json{{"event", "start"}, {"resume", true}}.dump() << "\n";
    for (int s = 19001; s <= 20000; ++s)
      f << json{{"event", "train"}, {"step", s}, {"loss", -1.0 / s}, {"lr", 0.01}}.dump() << "\n";
    f << label_final(16, 0.5).dump() << "\n";
  }
  report::ReportOptions opts;
  opts.max_points = 100;
  report::RunData r = report::read_run(d.string(), opts);
  ASSERT_EQ(r.curves.size(), 3u);  // train: loss, lr; eval: map_all
  for (const auto& c : r.curves) {
    EXPECT_LE(c.points.size(), 100u) << c.field;
    EXPECT_GE(c.points.size(), 50u) << c.field;
    for (size_t i = 1; i < c.points.size(); ++i)
      ASSERT_LT(c.points[i - 1].first, c.points[i].first) << c.field;  // one point a step, in order
  }
  const auto& loss = r.curves[0];
  EXPECT_EQ(loss.field, "loss");
  EXPECT_EQ(loss.logged, 21000);
  EXPECT_EQ(loss.points.front(), std::make_pair(1.0, 1.0));
  EXPECT_EQ(loss.points.back(), std::make_pair(20000.0, -1.0 / 20000));  // the resumed session's
  for (const auto& [x, y] : loss.points) EXPECT_EQ(y, x > 19000 ? -1.0 / x : 1.0 / x) << x;
  EXPECT_EQ(r.curves[2].event, "eval");
  EXPECT_EQ(r.curves[2].points.back(), std::make_pair(20000.0, 0.2));
  // The page draws what was kept and says it was thinned.
  const std::string page = report::write_run_report(d.string());
  EXPECT_TRUE(contains(slurp(page), "Thinned evenly for drawing")) << page;
}

}  // namespace
