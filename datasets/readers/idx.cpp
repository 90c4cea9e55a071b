#include "datasets/readers/idx.h"

#include <cstring>

#include "csrc/core/error.h"

namespace hashlab::data {

namespace {

// What the header describes, for error messages: "10000 images of 28x28".
std::string describe(const std::vector<int64_t>& shape, uint8_t type) {
  if (shape.empty()) return "a scalar";
  std::vector<int64_t> item(shape.begin() + 1, shape.end());
  const char* noun = shape.size() == 3 && type == 0x08 ? "images"
                     : shape.size() == 1             ? "labels"
                                                     : "items";
  if (item.empty()) return fmt::format("{} {}", shape[0], noun);
  return fmt::format("{} {} of {}", shape[0], noun, shape_string(item));
}

}  // namespace

Array parse_idx(const uint8_t* raw, size_t raw_size, const std::string& name,
                uint64_t max_bytes) {
  Bytes in = maybe_gunzip(raw, raw_size, name, max_bytes);
  const uint8_t* p = in.data;
  const size_t size = in.size;
  if (size < 4)
    fail("{}: truncated: {} bytes{}, too short for the 4-byte idx magic", name, size, gz_note(in));
  uint32_t magic = load_be32(p);
  if (p[0] != 0 || p[1] != 0)
    fail("{}: offset 0: bad magic {:#010x} (an idx file starts with 00 00 <type> <ndims>)", name,
         magic);
  const uint8_t type = p[2];
  const uint8_t ndims = p[3];
  Array a;
  size_t elem = 0;
  switch (type) {
    case 0x08: a.dtype = Array::DType::u8; elem = 1; break;
    case 0x0C: a.dtype = Array::DType::i32; elem = 4; break;
    case 0x0D: a.dtype = Array::DType::f32; elem = 4; break;
    case 0x09: fail("{}: offset 2: idx element type 0x09 (int8) is not supported", name);
    case 0x0B: fail("{}: offset 2: idx element type 0x0B (int16) is not supported", name);
    case 0x0E: fail("{}: offset 2: idx element type 0x0E (float64) is not supported", name);
    default:
      fail("{}: offset 0: bad magic {:#010x}: unknown idx element type {:#04x}", name, magic, type);
  }
  if (ndims == 0) fail("{}: offset 3: bad magic {:#010x}: idx file with 0 dimensions", name, magic);
  const uint64_t header = 4 + 4 * uint64_t{ndims};
  if (size < header)
    fail("{}: truncated: the header of {} dimensions needs {} bytes, file has {} bytes{}", name,
         ndims, header, size, gz_note(in));
  uint64_t numel = 1;
  for (int d = 0; d < ndims; ++d) {
    uint32_t dim = load_be32(p + 4 + 4 * d);
    a.shape.push_back(dim);
    numel = checked_mul(numel, dim, name, "header dimensions");
  }
  const uint64_t payload = checked_mul(numel, elem, name, "header dimensions");
  const uint64_t expected = checked_add(payload, header, name, "header dimensions");
  if (payload > max_bytes)
    fail("{}: header says {} ({} bytes), more than the limit of {} bytes", name,
         describe(a.shape, type), expected, max_bytes);
  if (size < expected)
    fail("{}: truncated: header says {} ({} bytes), file has {} bytes{}", name,
         describe(a.shape, type), expected, size, gz_note(in));
  if (size > expected)
    fail("{}: trailing garbage: header says {} ({} bytes), file has {} bytes{} ({} extra)", name,
         describe(a.shape, type), expected, size, gz_note(in), size - expected);

  a.bytes.resize(payload);
  if (payload) std::memcpy(a.bytes.data(), p + header, payload);
  if (elem == 4) {  // big-endian -> native
    uint8_t* b = a.bytes.data();
    for (uint64_t i = 0; i < numel; ++i) {
      uint32_t v = load_be32(b + 4 * i);
      std::memcpy(b + 4 * i, &v, 4);
    }
  }
  return a;
}

Array read_idx(const std::string& path, uint64_t max_bytes) {
  std::vector<uint8_t> raw = read_file_bytes(path, max_bytes);
  return parse_idx(raw.data(), raw.size(), path, max_bytes);
}

}  // namespace hashlab::data
