#include "datasets/readers/npy.h"

#include <cstring>
#include <optional>

#include "csrc/core/error.h"

namespace hashlab::data {

namespace {

// A strict reader for the header dict: only the three keys NumPy writes,
// string / bool / tuple-of-int values, each key once.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& name, size_t base)
      : s_(text), name_(name), base_(base) {}

  void parse(std::string& descr, bool& fortran, std::vector<int64_t>& shape) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    skip_ws();
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') { ++i_; break; }
      std::string key = parse_string();
      skip_ws();
      expect(':');
      skip_ws();
      if (key == "descr") {
        if (have_descr) error("duplicate key 'descr'");
        descr = parse_string();
        have_descr = true;
      } else if (key == "fortran_order") {
        if (have_fortran) error("duplicate key 'fortran_order'");
        fortran = parse_bool();
        have_fortran = true;
      } else if (key == "shape") {
        if (have_shape) error("duplicate key 'shape'");
        shape = parse_shape();
        have_shape = true;
      } else {
        error(fmt::format("unexpected key '{}'", key));
      }
      skip_ws();
      if (peek() == ',') { ++i_; continue; }
      if (peek() == '}') { ++i_; break; }
      error("expected ',' or '}'");
    }
    skip_ws();
    if (i_ != s_.size()) error("unexpected text after the header dict");
    if (!have_descr) error("missing key 'descr'");
    if (!have_fortran) error("missing key 'fortran_order'");
    if (!have_shape) error("missing key 'shape'");
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    fail("{}: offset {}: bad npy header: {}", name_, base_ + i_, what);
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r'))
      ++i_;
  }
  void expect(char c) {
    if (peek() != c) error(fmt::format("expected '{}'", c));
    ++i_;
  }
  std::string parse_string() {
    char q = peek();
    if (q != '\'' && q != '"') error("expected a quoted string");
    size_t start = ++i_;
    while (i_ < s_.size() && s_[i_] != q) ++i_;
    if (i_ >= s_.size()) error("unterminated string");
    return s_.substr(start, i_++ - start);
  }
  bool parse_bool() {
    if (s_.compare(i_, 4, "True") == 0) { i_ += 4; return true; }
    if (s_.compare(i_, 5, "False") == 0) { i_ += 5; return false; }
    error("expected True or False");
  }
  std::vector<int64_t> parse_shape() {
    std::vector<int64_t> shape;
    expect('(');
    while (true) {
      skip_ws();
      if (peek() == ')') { ++i_; break; }
      if (!(peek() >= '0' && peek() <= '9')) error("expected a dimension (non-negative integer)");
      uint64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (__builtin_mul_overflow(v, uint64_t{10}, &v) ||
            __builtin_add_overflow(v, uint64_t(peek() - '0'), &v) || v > (uint64_t{1} << 62))
          error("dimension too large");
        ++i_;
      }
      if (peek() == 'L') ++i_;  // Python 2 longs
      shape.push_back(static_cast<int64_t>(v));
      if (shape.size() > 32) error("more than 32 dimensions");
      skip_ws();
      if (peek() == ',') { ++i_; continue; }
      if (peek() == ')') { ++i_; break; }
      error("expected ',' or ')' in shape");
    }
    return shape;
  }

  const std::string& s_;
  const std::string& name_;
  size_t base_;
  size_t i_ = 0;
};

}  // namespace

Array parse_npy(const uint8_t* raw, size_t raw_size, const std::string& name,
                uint64_t max_bytes) {
  Bytes in = maybe_gunzip(raw, raw_size, name, max_bytes);
  const uint8_t* p = in.data;
  const size_t size = in.size;
  static const uint8_t kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 10)
    fail("{}: truncated: {} bytes{}, too short for an npy preamble", name, size, gz_note(in));
  if (std::memcmp(p, kMagic, 6) != 0)
    fail("{}: offset 0: bad magic (an npy file starts with \\x93NUMPY)", name);
  const uint8_t major = p[6];
  size_t header_len, prefix;
  if (major == 1) {
    header_len = load_le16(p + 8);
    prefix = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12)
      fail("{}: truncated: {} bytes{}, too short for an npy v{} preamble", name, size,
           gz_note(in), major);
    header_len = load_le32(p + 8);
    prefix = 12;
  } else {
    fail("{}: offset 6: unsupported npy format version {}.{}", name, major, p[7]);
  }
  if (header_len > size - prefix)
    fail("{}: truncated: npy header claims {} bytes, only {} bytes follow the preamble", name,
         header_len, size - prefix);
  if (header_len > (1u << 20)) fail("{}: npy header of {} bytes is too large", name, header_len);
  std::string header(reinterpret_cast<const char*>(p + prefix), header_len);
  std::string descr;
  bool fortran = false;
  std::vector<int64_t> shape;
  HeaderParser(header, name, prefix).parse(descr, fortran, shape);

  if (fortran) fail("{}: fortran_order arrays are not supported (save a C-order array)", name);
  Array a;
  a.shape = shape;
  if (descr == "<f4" || descr == "=f4") {
    a.dtype = Array::DType::f32;
  } else if (descr == "|u1" || descr == "<u1" || descr == "=u1") {
    a.dtype = Array::DType::u8;
  } else if (descr == "<i4" || descr == "=i4") {
    a.dtype = Array::DType::i32;
  } else if (descr == "<i8" || descr == "=i8") {
    a.dtype = Array::DType::i64;
  } else if (!descr.empty() && descr[0] == '>') {
    fail("{}: big-endian dtype '{}' is not supported (save with '<' byte order)", name, descr);
  } else if (descr.find('O') != std::string::npos) {
    fail("{}: object dtype '{}' is not supported", name, descr);
  } else {
    fail("{}: dtype '{}' is not supported (float32, uint8, int32, int64 only)", name, descr);
  }
  uint64_t numel = 1;
  for (int64_t d : shape) numel = checked_mul(numel, static_cast<uint64_t>(d), name, "npy shape");
  const uint64_t payload = checked_mul(numel, dtype_size(a.dtype), name, "npy shape");
  const size_t data_off = prefix + header_len;
  const uint64_t have = size - data_off;
  if (payload > max_bytes)
    fail("{}: shape ({}) needs {} bytes, more than the limit of {} bytes", name,
         shape_string(shape, ','), payload, max_bytes);
  if (have < payload)
    fail("{}: truncated: shape ({}) of {} needs {} data bytes at offset {}, file has {}{}", name,
         shape_string(shape, ','), descr, payload, data_off, have, gz_note(in));
  if (have > payload)
    fail("{}: trailing garbage: shape ({}) of {} needs {} data bytes at offset {}, file has {}{} "
         "({} extra)",
         name, shape_string(shape, ','), descr, payload, data_off, have, gz_note(in),
         have - payload);
  a.bytes.assign(p + data_off, p + data_off + payload);
  return a;
}

Array read_npy(const std::string& path, uint64_t max_bytes) {
  std::vector<uint8_t> raw = read_file_bytes(path, max_bytes);
  return parse_npy(raw.data(), raw.size(), path, max_bytes);
}

}  // namespace hashlab::data
