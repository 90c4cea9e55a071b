// The report page's stylesheet and script, app/report/report.css and
// app/report/report.js byte for byte: CMake copies them into a generated
// source in the build tree whenever they change (tools/embed_file.cmake), so
// they are edited as real files and the binary still needs no file at run
// time. report.js builds the Chart.js configurations from the compact specs
// in #report-data and records in the DOM how each canvas drew and any script
// error (report.h).
#pragma once

#include <string_view>

namespace hashlab::report {

extern const std::string_view kStyle;   // app/report/report.css
extern const std::string_view kScript;  // app/report/report.js

}  // namespace hashlab::report
