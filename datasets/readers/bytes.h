// Byte-level helpers shared by the readers: whole-file reading with
// transparent gzip, capped decompression, overflow-checked sizes and
// big/little-endian loads. Torch-free (see array.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "datasets/readers/array.h"

namespace hashlab::data {

// Upper bound on the bytes one reader may produce (decompressed file or
// array). 8 GiB holds GIST1M's 3.8 GB fvecs; a gzip bomb or a header that
// claims 10^12 items fails with an error instead of allocating.
inline constexpr uint64_t kDefaultMaxBytes = uint64_t{8} << 30;

// Owned or borrowed bytes of one (possibly gunzipped) input.
struct Bytes {
  const uint8_t* data = nullptr;
  size_t size = 0;
  bool gunzipped = false;
  std::vector<uint8_t> owned;  // non-empty when data points into it
};

// True when the buffer starts with the gzip magic 1f 8b.
bool is_gzip(const uint8_t* data, size_t size);

// Returns the buffer itself, or its gunzipped contents when it starts with
// the gzip magic (detected by content, never by file name). Decompression
// stops with an Error naming `name` once the output would exceed max_bytes.
// Concatenated gzip members are decoded in order; other bytes after the
// last member are an error.
Bytes maybe_gunzip(const uint8_t* data, size_t size, const std::string& name,
                   uint64_t max_bytes = kDefaultMaxBytes);

// Reads a whole file (raw bytes, no decompression); Error on I/O failure or
// when the file is larger than max_bytes.
std::vector<uint8_t> read_file_bytes(const std::string& path,
                                     uint64_t max_bytes = kDefaultMaxBytes);

// " (after gunzip)" or "": appended to size figures in error messages.
inline const char* gz_note(const Bytes& b) { return b.gunzipped ? " (after gunzip)" : ""; }

// a*b and a+b with overflow -> Error("{name}: {what}: size overflows").
uint64_t checked_mul(uint64_t a, uint64_t b, const std::string& name, const char* what);
uint64_t checked_add(uint64_t a, uint64_t b, const std::string& name, const char* what);

inline uint32_t load_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}
inline uint32_t load_le32(const uint8_t* p) {
  return (uint32_t{p[3]} << 24) | (uint32_t{p[2]} << 16) | (uint32_t{p[1]} << 8) | uint32_t{p[0]};
}
inline uint16_t load_le16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

}  // namespace hashlab::data
