#include "csrc/codes/codes.h"

#include <cstring>

namespace hashlab::codes {

torch::Tensor pack_signs(const torch::Tensor& real) {
  TORCH_CHECK(real.dim() == 2, "pack_signs: expected a 2-D [N, B] tensor, got shape ",
              real.sizes());
  TORCH_CHECK(real.is_floating_point(), "pack_signs: expected a floating tensor, got ",
              real.scalar_type());
  const int64_t n = real.size(0), nbits = real.size(1);
  TORCH_CHECK(nbits >= 1, "pack_signs: need at least one bit per code, got ", nbits);
  const int64_t nbytes = code_bytes(nbits);
  // Torch ops only, so the same code runs on CPU and CUDA tensors: pad the
  // bit columns to whole bytes with zeros, then weight each bit of a byte by
  // 2^(j%8) and sum.
  auto bits = real.ge(0).to(torch::kUInt8);
  if (nbytes * 8 != nbits) bits = torch::constant_pad_nd(bits, {0, nbytes * 8 - nbits}, 0);
  auto weights = torch::tensor({1, 2, 4, 8, 16, 32, 64, 128},
                               torch::TensorOptions().dtype(torch::kInt32).device(real.device()));
  auto packed = (bits.view({n, nbytes, 8}).to(torch::kInt32) * weights).sum(-1);
  return packed.to(torch::kUInt8).contiguous();
}

torch::Tensor unpack_bits(const torch::Tensor& packed, int nbits) {
  TORCH_CHECK(packed.dim() == 2 && packed.scalar_type() == torch::kUInt8,
              "unpack_bits: expected uint8 [N, bytes], got ", packed.scalar_type(), " ",
              packed.sizes());
  TORCH_CHECK(nbits >= 1 && code_bytes(nbits) == packed.size(1), "unpack_bits: nbits ", nbits,
              " needs ", code_bytes(nbits), " bytes per code, tensor has ", packed.size(1));
  const int64_t n = packed.size(0);
  auto shifts = torch::arange(8, torch::TensorOptions().dtype(torch::kInt32).device(packed.device()));
  auto bits = packed.to(torch::kInt32).unsqueeze(-1).bitwise_right_shift(shifts).bitwise_and(1);
  bits = bits.reshape({n, packed.size(1) * 8}).narrow(1, 0, nbits);
  return (bits.to(torch::kFloat) * 2 - 1).contiguous();
}

void pack_signs(const float* real, int64_t n, int nbits, uint8_t* packed) {
  const int64_t nbytes = code_bytes(nbits);
  for (int64_t i = 0; i < n; ++i) {
    const float* v = real + i * nbits;
    uint8_t* out = packed + i * nbytes;
    std::memset(out, 0, nbytes);
    for (int j = 0; j < nbits; ++j)
      if (v[j] >= 0) out[j >> 3] |= uint8_t(1u << (j & 7));
  }
}

void unpack_bits(const uint8_t* packed, int64_t n, int nbits, float* out) {
  const int64_t nbytes = code_bytes(nbits);
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* c = packed + i * nbytes;
    float* o = out + i * nbits;
    for (int j = 0; j < nbits; ++j) o[j] = ((c[j >> 3] >> (j & 7)) & 1) ? 1.f : -1.f;
  }
}

}  // namespace hashlab::codes
