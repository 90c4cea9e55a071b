// NumPy .npy files (format versions 1.0, 2.0 and 3.0), plain or gzip.
//
// Layout: "\x93NUMPY", major, minor, header length (uint16 LE for v1, uint32
// LE for v2/v3), then a Python dict literal
//   {'descr': '<f4', 'fortran_order': False, 'shape': (N, D), }
// padded with spaces and a newline, then the raw C-order data.
// Accepted descr: '<f4' / '=f4' (f32), '|u1' / '<u1' (u8), '<i4' (i32),
// '<i8' (i64). Rejected with an error: fortran_order True, big-endian ('>'),
// object and every other dtype. The data size must equal
// prod(shape) * itemsize exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "datasets/readers/array.h"
#include "datasets/readers/bytes.h"

namespace hashlab::data {

Array parse_npy(const uint8_t* data, size_t size, const std::string& name,
                uint64_t max_bytes = kDefaultMaxBytes);
Array read_npy(const std::string& path, uint64_t max_bytes = kDefaultMaxBytes);

}  // namespace hashlab::data
