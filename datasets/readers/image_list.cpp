#include "datasets/readers/image_list.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <system_error>

#include "csrc/core/error.h"

namespace hashlab::data {

namespace fs = std::filesystem;

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_space(line[i])) ++i;
    size_t start = i;
    while (i < line.size() && !is_space(line[i])) ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

// True when `p` is `root` or lies below it (both already canonical).
bool inside(const fs::path& root, const fs::path& p) {
  auto r = root.begin(), q = p.begin();
  for (; r != root.end(); ++r, ++q) {
    if (r->empty()) continue;  // trailing separator of root
    if (q == p.end() || *r != *q) return false;
  }
  return true;
}

}  // namespace

ImageList parse_image_list(const uint8_t* raw, size_t raw_size, const std::string& name,
                           const std::string& root, int64_t max_label, uint64_t max_bytes) {
  Bytes in = maybe_gunzip(raw, raw_size, name, max_bytes);
  std::error_code ec;
  if (root.empty()) fail("{}: image list needs a root directory", name);
  const fs::path canon_root = fs::weakly_canonical(fs::absolute(root, ec), ec);
  if (ec) fail("{}: cannot resolve root '{}': {}", name, root, ec.message());

  ImageList out;
  std::vector<int64_t> single;
  std::vector<uint8_t> hot;
  size_t fields_per_line = 0;
  const std::string_view text(reinterpret_cast<const char*>(in.data), in.size);
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (line.find('\0') != std::string_view::npos)
      fail("{}: line {}: NUL byte in line", name, line_no);
    auto fields = split_fields(line);
    if (fields.empty()) continue;
    if (fields.size() < 2)
      fail("{}: line {}: expected '<path> <label>' or '<path> <0/1 ...>', got one field", name,
           line_no);
    if (fields_per_line == 0) {
      fields_per_line = fields.size();
      out.multi_label = fields.size() > 2;
      if (out.multi_label) out.num_classes = static_cast<int64_t>(fields.size() - 1);
    } else if (fields.size() != fields_per_line) {
      fail("{}: line {}: {} label fields, but earlier lines have {}", name, line_no,
           fields.size() - 1, fields_per_line - 1);
    }

    const fs::path rel{std::string(fields[0])};
    const fs::path joined = rel.is_absolute() ? rel : fs::path(canon_root) / rel;
    fs::path resolved = fs::weakly_canonical(joined, ec);
    if (ec) fail("{}: line {}: cannot resolve '{}': {}", name, line_no, fields[0], ec.message());
    if (!inside(canon_root, resolved))
      fail("{}: line {}: path '{}' escapes the root '{}' (resolves to '{}')", name, line_no,
           fields[0], canon_root.string(), resolved.string());
    out.paths.push_back(resolved.string());

    if (!out.multi_label) {
      std::string_view f = fields[1];
      int64_t v = 0;
      for (char c : f) {
        if (c < '0' || c > '9')
          fail("{}: line {}: label '{}' is not a non-negative integer", name, line_no, f);
        v = v * 10 + (c - '0');
        if (v >= max_label)
          fail("{}: line {}: label {} out of range 0..{}", name, line_no, f, max_label - 1);
      }
      single.push_back(v);
      out.num_classes = std::max(out.num_classes, v + 1);
    } else {
      for (size_t j = 1; j < fields.size(); ++j) {
        std::string_view f = fields[j];
        if (f != "0" && f != "1")
          fail("{}: line {}: multi-hot field {} is '{}', expected 0 or 1", name, line_no, j, f);
        hot.push_back(f == "1");
      }
    }
  }
  const int64_t n = static_cast<int64_t>(out.paths.size());
  if (n == 0) fail("{}: image list has no entries", name);
  if (out.multi_label) {
    out.labels.dtype = Array::DType::u8;
    out.labels.shape = {n, out.num_classes};
    out.labels.bytes = std::move(hot);
  } else {
    out.labels.dtype = Array::DType::i64;
    out.labels.shape = {n};
    out.labels.bytes.resize(single.size() * 8);
    std::memcpy(out.labels.bytes.data(), single.data(), single.size() * 8);
  }
  return out;
}

ImageList read_image_list(const std::string& path, const std::string& root, int64_t max_label,
                          uint64_t max_bytes) {
  std::vector<uint8_t> raw = read_file_bytes(path, max_bytes);
  return parse_image_list(raw.data(), raw.size(), path, root, max_label, max_bytes);
}

}  // namespace hashlab::data
