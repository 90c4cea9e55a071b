// Helpers for the end-to-end tests of the hashlab executable.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <algorithm>
#include <fstream>
#include <iterator>
#include <random>
#include <string>

namespace hashlab::testing {

struct Result {
  int code;         // exit status, or 128 + signal
  std::string out;  // stdout and stderr together
};

// The binary under test: $HASHLAB_CLI when set (to run these tests against
// another build, e.g. an older one), else the one this build made.
inline std::string cli() {
  const char* env = std::getenv("HASHLAB_CLI");
  return env && *env ? env : HASHLAB_CLI_PATH;
}

// Runs a shell command line, capturing stdout and stderr.
inline Result sh(const std::string& cmd) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out};
}

// A whole file as a string ("" when it cannot be read).
inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline bool contains(const std::string& s, const std::string& what) {
  return s.find(what) != std::string::npos;
}

// A free TCP port on the loopback interface (bound, read, released).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    return 0;  // the caller's rendezvous then fails, naming port 0
  ::close(fd);
  return ntohs(a.sin_port);
}

// A shell snippet for inside `sh -c '...'`: waits (at most 60 s) until the
// run's `metrics` file holds a "train" record, i.e. training has started.
inline std::string wait_for_train_record(const std::string& metrics) {
  return "i=0; while ! grep -q \\\"train\\\" " + metrics +
         " 2>/dev/null; do sleep 0.05; i=$((i+1)); [ $i -gt 1200 ] && break; done; ";
}

// Runs `hashlab ARGS`.
inline Result run(const std::string& args) { return sh(cli() + " " + args); }

// The last line of a command's output (where eval/train print their JSON).
inline std::string last_line(const std::string& out) {
  std::string s = out;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  auto nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

inline void put_be32(std::ofstream& f, uint32_t v) {
  unsigned char b[4] = {static_cast<unsigned char>(v >> 24), static_cast<unsigned char>(v >> 16),
                        static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
  f.write(reinterpret_cast<char*>(b), 4);
}

// idx images [n, side, side] of 5 classes (pattern + noise) and their labels.
inline void write_images(const std::filesystem::path& images, const std::filesystem::path& labels,
                         int n, int side) {
  std::mt19937 rng(7);
  std::ofstream im(images, std::ios::binary), lb(labels, std::ios::binary);
  put_be32(im, 0x00000803);
  put_be32(im, n);
  put_be32(im, side);
  put_be32(im, side);
  put_be32(lb, 0x00000801);
  put_be32(lb, n);
  std::normal_distribution<double> noise(0, 30);
  for (int i = 0; i < n; ++i) {
    unsigned char label = i % 5;
    lb.write(reinterpret_cast<char*>(&label), 1);
    for (int p = 0; p < side * side; ++p) {
      double v = ((p * 7 + label * 13) % 5 == 0 ? 200 : 40) + noise(rng);
      unsigned char px = static_cast<unsigned char>(std::min(255.0, std::max(0.0, v)));
      im.write(reinterpret_cast<char*>(&px), 1);
    }
  }
}

// A fresh directory temp/<prefix><pid> holding images.idx/labels.idx (300
// 8x8 images of 5 classes, write_images) and data.yaml reading them with 5
// queries per class (and `threads: 1` unless one_thread is false). The CLI
// tests' configs start with `_base_: data.yaml`.
inline std::filesystem::path make_image_data_dir(const std::string& prefix,
                                                 bool one_thread = true) {
  const auto dir =
      std::filesystem::temp_directory_path() / (prefix + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  write_images(dir / "images.idx", dir / "labels.idx", 300, 8);
  std::ofstream(dir / "data.yaml") << "data:\n  format: idx\n  files: ["
                                   << (dir / "images.idx").string() << "]\n  labels: ["
                                   << (dir / "labels.idx").string()
                                   << "]\n  queries_per_class: 5\n"
                                   << (one_thread ? "threads: 1\n" : "");
  return dir;
}

}  // namespace hashlab::testing
