// Bit packing of binary codes, FAISS IndexBinaryFlat layout.
//
// A B-bit code is ceil(B/8) bytes. Bit j lives in byte j/8 at position j%8,
// least significant bit first; bit j is 1 iff the real-valued output
// v_j >= 0 (sign(0) = +1, HashNet eq. 5). Bits past B in the last byte are
// zero. This is the layout csrc/search and FAISS read, and the one written to
// code files.
#pragma once

#include <cstdint>

#include <torch/torch.h>

namespace hashlab::codes {

// Bytes per B-bit code: ceil(B / 8).
constexpr int64_t code_bytes(int64_t nbits) { return (nbits + 7) / 8; }

// real: float/half/double [N, B] on any device -> uint8 [N, ceil(B/8)] on the
// same device; bit j = (real[:, j] >= 0). NaN counts as negative (bit 0).
torch::Tensor pack_signs(const torch::Tensor& real);

// packed: uint8 [N, ceil(nbits/8)] on any device -> float [N, nbits] of ±1
// (+1 where the bit is set) on the same device. Bits past nbits are ignored.
torch::Tensor unpack_bits(const torch::Tensor& packed, int nbits);

// Raw-pointer versions (host memory, row-major, rows contiguous):
// real[n * nbits] -> packed[n * ceil(nbits/8)], and back to ±1 floats.
void pack_signs(const float* real, int64_t n, int nbits, uint8_t* packed);
void unpack_bits(const uint8_t* packed, int64_t n, int nbits, float* out);

}  // namespace hashlab::codes
