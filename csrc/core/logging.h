// Logging for runs: one spdlog logger that writes to the console and, once a
// run directory exists, to <run>/log.txt; plus the metrics.jsonl writer.
#pragma once

#include <fstream>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace hashlab {

// The process-wide logger ("hashlab"). Console only until add_log_file().
spdlog::logger& log();
void add_log_file(const std::string& path);
// Writes an error line to the log file only (none open: nothing), for errors
// that the caller reports on the console itself.
void log_to_file_only(const std::string& message);
void set_log_level(const std::string& level);  // "debug", "info", "warn", ...

// Appends one JSON object per line and flushes, so a crash loses nothing
// already logged. Each record carries an "event" field ("train", "eval", ...).
// A failed write (disk full) throws, naming the file.
class MetricsWriter {
 public:
  MetricsWriter() = default;
  explicit MetricsWriter(const std::string& path, bool append = true);
  void write(const std::string& event, nlohmann::json record);
  bool is_open() const { return out_.is_open(); }
  const std::string& path() const { return path_; }

 private:
  std::ofstream out_;
  std::string path_;
  std::mutex mu_;
};

}  // namespace hashlab
