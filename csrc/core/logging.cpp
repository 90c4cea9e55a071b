#include "csrc/core/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include "csrc/core/error.h"
#include "csrc/core/json_text.h"

namespace hashlab {

spdlog::logger& log() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    console->set_pattern("[%H:%M:%S] %^%l%$ %v");
    auto l = std::make_shared<spdlog::logger>("hashlab", console);
    l->set_level(spdlog::level::info);
    l->flush_on(spdlog::level::info);
    return l;
  }();
  return *logger;
}

namespace {
std::shared_ptr<spdlog::sinks::basic_file_sink_mt>& file_sink() {
  static std::shared_ptr<spdlog::sinks::basic_file_sink_mt> sink;
  return sink;
}
}  // namespace

void add_log_file(const std::string& path) {
  auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, /*truncate=*/false);
  file->set_pattern("[%Y-%m-%d %H:%M:%S.%e] %l %v");
  log().sinks().push_back(file);
  file_sink() = file;
}

void log_to_file_only(const std::string& message) {
  auto& sink = file_sink();
  if (!sink) return;
  try {
    spdlog::details::log_msg msg(log().name(), spdlog::level::err, message);
    sink->log(msg);
    sink->flush();
  } catch (const std::exception&) {
    // The console already has the error; a log file that cannot be written
    // (disk full) must not replace it with another.
  }
}

void set_log_level(const std::string& level) {
  auto lv = spdlog::level::from_str(level);
  if (lv == spdlog::level::off && level != "off")
    fail("log level '{}' is not one of trace, debug, info, warn, error, off", level);
  log().set_level(lv);
}

MetricsWriter::MetricsWriter(const std::string& path, bool append) : path_(path) {
  out_.open(path, append ? std::ios::app : std::ios::trunc);
  if (!out_) fail("{}: cannot open for writing", path);
}

void MetricsWriter::write(const std::string& event, nlohmann::json record) {
  if (!out_.is_open()) return;
  record["event"] = event;
  std::lock_guard<std::mutex> lock(mu_);
  out_ << json_text(record) << '\n';
  out_.flush();
  if (!out_) fail("{}: write failed (disk full?)", path_);
}

}  // namespace hashlab
