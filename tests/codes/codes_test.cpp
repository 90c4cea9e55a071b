// Bit packing against a bit-by-bit reference of the FAISS layout.
#include <gtest/gtest.h>

#include "csrc/codes/codes.h"

namespace hc = hashlab::codes;

namespace {

// Reference: bit j of row i set iff v >= 0, byte j/8, position j%8.
torch::Tensor reference_pack(const torch::Tensor& real) {
  const int64_t n = real.size(0), nbits = real.size(1);
  auto out = torch::zeros({n, (nbits + 7) / 8}, torch::kUInt8);
  auto r = real.accessor<float, 2>();
  auto o = out.accessor<uint8_t, 2>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < nbits; ++j)
      if (r[i][j] >= 0) o[i][j / 8] = static_cast<uint8_t>(o[i][j / 8] | (1u << (j % 8)));
  return out;
}

TEST(Codes, PackSignsMatchesBitByBitReference) {
  torch::manual_seed(0);
  for (int nbits : {1, 7, 8, 12, 64, 100, 257}) {
    auto real = torch::randn({33, nbits});
    // Exact zeros must give bit 1 (sign(0) = +1).
    real.index_put_({torch::indexing::Slice(0, 33, 3), torch::indexing::Slice(0, nbits, 2)}, 0.0);
    auto want = reference_pack(real);
    auto got = hc::pack_signs(real);
    EXPECT_TRUE(torch::equal(got, want)) << "nbits " << nbits;
    // Raw-pointer version.
    auto raw = torch::empty_like(want);
    hc::pack_signs(real.contiguous().data_ptr<float>(), 33, nbits, raw.data_ptr<uint8_t>());
    EXPECT_TRUE(torch::equal(raw, want)) << "nbits " << nbits;
  }
}

TEST(Codes, KnownBytes) {
  // Bits 0, 3 and 9 positive of 12: byte 0 = 0b1001 = 9, byte 1 = 0b10 = 2.
  auto real = -torch::ones({1, 12});
  real[0][0] = 0.5;
  real[0][3] = 0.0;
  real[0][9] = 2.0;
  auto packed = hc::pack_signs(real);
  ASSERT_EQ(packed.size(1), 2);
  EXPECT_EQ(packed[0][0].item<int>(), 9);
  EXPECT_EQ(packed[0][1].item<int>(), 2);
}

TEST(Codes, UnpackRoundTrip) {
  torch::manual_seed(1);
  for (int nbits : {5, 16, 96, 130}) {
    auto real = torch::randn({17, nbits});
    auto signs = torch::where(real >= 0, torch::ones_like(real), -torch::ones_like(real));
    auto packed = hc::pack_signs(real);
    EXPECT_TRUE(torch::equal(hc::unpack_bits(packed, nbits), signs)) << nbits;
    auto raw = torch::empty({17, nbits});
    hc::unpack_bits(packed.data_ptr<uint8_t>(), 17, nbits, raw.data_ptr<float>());
    EXPECT_TRUE(torch::equal(raw, signs)) << nbits;
    // Packing ±1 codes again gives the same bytes.
    EXPECT_TRUE(torch::equal(hc::pack_signs(signs), packed));
  }
}

TEST(Codes, HalfAndDoubleInputs) {
  torch::manual_seed(2);
  auto real = torch::randn({9, 24});
  auto want = reference_pack(real);
  EXPECT_TRUE(torch::equal(hc::pack_signs(real.to(torch::kDouble)), want));
  EXPECT_TRUE(torch::equal(hc::pack_signs(real.to(torch::kHalf)), want));
}

TEST(Codes, RejectsBadShapes) {
  EXPECT_THROW(hc::pack_signs(torch::randn({4})), c10::Error);
  EXPECT_THROW(hc::pack_signs(torch::ones({4, 8}, torch::kInt32)), c10::Error);
  EXPECT_THROW(hc::unpack_bits(torch::zeros({2, 2}, torch::kUInt8), 17), c10::Error);
}

}  // namespace
