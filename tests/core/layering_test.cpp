// tools/check_layering.cmake (run by the build before anything compiles)
// refuses includes that reach up the layers, naming file and line.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace fs = std::filesystem;

namespace {

struct Result {
  int status;
  std::string output;
};

Result check(const fs::path& root) {
  std::string cmd = std::string(HASHLAB_CMAKE_COMMAND) + " -DROOT=" + root.string() + " -P " +
                    HASHLAB_SOURCE_DIR + "/tools/check_layering.cmake 2>&1";
  Result r{-1, ""};
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

void write(const fs::path& root, const std::string& file, const std::string& text) {
  fs::create_directories((root / file).parent_path());
  std::ofstream(root / file) << text;
}

}  // namespace

TEST(Layering, TheSourceTreeFollowsIt) {
  Result r = check(HASHLAB_SOURCE_DIR);
  EXPECT_EQ(r.status, 0) << r.output;
}

TEST(Layering, AnIncludeUpTheLayersOrAcrossMethodsFails) {
  fs::path root = fs::temp_directory_path() / ("hl_layering_" + std::to_string(::getpid()));
  fs::remove_all(root);
  write(root, "csrc/core/ok.h", "#include \"csrc/core/error.h\"\n#include <vector>\n");
  write(root, "models/alpha/method.cpp",
        "#include \"models/alpha/net.h\"\n#include \"models/backbones/backbone.h\"\n"
        "#include \"trainers/trainer.h\"\n");
  write(root, "app/job.cpp", "#include \"models/alpha/method.h\"\n");
  Result good = check(root);
  EXPECT_EQ(good.status, 0) << good.output;

  write(root, "csrc/core/bad.h", "#pragma once\n\n#include \"trainers/method.h\"\n");
  write(root, "models/beta/method.cpp", "#include \"models/alpha/net.h\"\n");
  write(root, "trainers/trainer.cpp", "#include <app/job.h>\n");
  write(root, "models/beta/util.cpp", "#include \"../alpha/net.h\"\n");
  Result bad = check(root);
  EXPECT_NE(bad.status, 0) << bad.output;
  EXPECT_NE(bad.output.find("csrc/core/bad.h:3: includes \"trainers/method.h\""),
            std::string::npos)
      << bad.output;
  EXPECT_NE(bad.output.find("models/beta/method.cpp:1: includes \"models/alpha/net.h\""),
            std::string::npos)
      << bad.output;
  EXPECT_NE(bad.output.find("trainers/trainer.cpp:1: includes \"app/job.h\""), std::string::npos)
      << bad.output;
  EXPECT_NE(bad.output.find("models/beta/util.cpp:1: includes \"../alpha/net.h\""),
            std::string::npos)
      << bad.output;
  EXPECT_NE(bad.output.find("4 include(s) break the layering"), std::string::npos) << bad.output;
  fs::remove_all(root);
}
