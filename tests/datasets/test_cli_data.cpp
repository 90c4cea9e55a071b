// `hashlab data inspect` end to end, when the CLI has been built (test_datasets
// does not depend on the executable, so the test skips when it is missing).
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <sys/wait.h>

#include "tests/datasets/test_util.h"

namespace hashlab::data {
namespace {

using namespace hashlab::data::testing;

struct CliRun {
  int code;
  std::string output;  // stdout and stderr
};

CliRun run_cli(const std::string& args) {
  std::string cmd = std::string(HASHLAB_CLI_PATH) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

class DataInspect : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(HASHLAB_CLI_PATH))
      GTEST_SKIP() << "hashlab executable not built: " << HASHLAB_CLI_PATH;
  }
};

TEST_F(DataInspect, PrintsShapeRangeAndHistogram) {
  TempDir dir;
  write_file(dir.file("imgs"), gzip(idx_images(4, 2, 3)));
  write_file(dir.file("labs"), idx_labels({2, 0, 2, 2}));
  CliRun r = run_cli("data inspect " + dir.file("imgs") + " --labels " + dir.file("labs"));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("format: idx (guessed)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("count: 4"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("uint8 [4,2,3]"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("values in [0, 26]"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("     2: 3"), std::string::npos) << r.output;
}

TEST_F(DataInspect, ReportsReaderErrorsWithExitCode1) {
  TempDir dir;
  Buf img = idx_images(4, 2, 3);
  img.resize(20);
  write_file(dir.file("short.gz"), gzip(img));
  CliRun r = run_cli("data inspect " + dir.file("short.gz"));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("hashlab: error: " + dir.file("short.gz") +
                          ": truncated: header says 4 images of 2x3 (40 bytes), file has 20 bytes"),
            std::string::npos)
      << r.output;
  write_file(dir.file("v.fvecs"), Buf{3, 0, 0, 0, 1, 2});
  r = run_cli("data inspect " + dir.file("v.fvecs"));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.output.find("not a multiple of the record size 16"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace hashlab::data
