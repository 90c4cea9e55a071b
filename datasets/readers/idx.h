// idx files (MNIST, Fashion-MNIST), plain or gzip-compressed.
//
// Layout: magic = 00 00 <type> <ndims> (big-endian), then ndims big-endian
// uint32 dimensions, then the payload in C order, big-endian elements.
//   0x00000803: uint8 images [N, H, W]      0x00000801: uint8 labels [N]
// Element types read: 0x08 uint8 -> u8, 0x0C int32 -> i32, 0x0D float32 -> f32
// (converted to native order). 0x09 (int8), 0x0B (int16), 0x0E (float64) are
// rejected with an error naming the type. The payload size must match the
// header exactly: a shorter file is "truncated", a longer one has "trailing
// garbage".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "datasets/readers/array.h"
#include "datasets/readers/bytes.h"

namespace hashlab::data {

// `name` is used in error messages only (usually the file name).
Array parse_idx(const uint8_t* data, size_t size, const std::string& name,
                uint64_t max_bytes = kDefaultMaxBytes);
Array read_idx(const std::string& path, uint64_t max_bytes = kDefaultMaxBytes);

}  // namespace hashlab::data
