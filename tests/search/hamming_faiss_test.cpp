// FAISS IndexBinaryFlat searching codes we exported agrees with hamming_topk:
// distances exactly, indices exactly where no tie straddles the k-th place.
#ifdef HASHLAB_WITH_FAISS
#include <unistd.h>

#include <random>

#include <faiss/IndexBinaryFlat.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "csrc/codes/code_file.h"
#include "csrc/search/hamming.h"

namespace {

torch::Tensor random_bytes(int64_t n, int nbytes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto t = torch::empty({n, nbytes}, torch::kUInt8);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_ptr<uint8_t>()[i] = static_cast<uint8_t>(rng());
  return t;
}

TEST(HammingFaiss, SearchOnExportedCodesEqualsOurs) {
  for (int nbits : {64, 128, 256}) {
    auto db = random_bytes(2000, nbits / 8, nbits);
    auto q = random_bytes(25, nbits / 8, nbits + 1);
    const std::string file = fmt::format("/tmp/hl_faiss_{}_{}.index", ::getpid(), nbits);
    hashlab::codes::export_faiss_binary(file, {nbits, db});
    auto back = hashlab::codes::import_faiss_binary(file);
    ::unlink(file.c_str());

    const int k = 20;
    faiss::IndexBinaryFlat index(nbits);
    index.add(back.codes.size(0), back.codes.data_ptr<uint8_t>());
    std::vector<int32_t> fd(25 * k);
    std::vector<int64_t> fi(25 * k);
    index.search(25, q.data_ptr<uint8_t>(), k, fd.data(), fi.data());

    auto ours = hashlab::search::hamming_topk(q, db, nbits, k);
    auto all = hashlab::search::hamming_distances(q, db, nbits);
    auto od = ours.distances.accessor<int32_t, 2>();
    auto oi = ours.indices.accessor<int64_t, 2>();
    auto ad = all.accessor<int32_t, 2>();
    for (int i = 0; i < 25; ++i) {
      const int kth = od[i][k - 1];
      for (int j = 0; j < k; ++j) {
        ASSERT_EQ(fd[i * k + j], od[i][j]) << "nbits " << nbits;
        ASSERT_EQ(ad[i][fi[i * k + j]], fd[i * k + j]);
        if (od[i][j] < kth) {  // strictly inside the top k: same item set
          bool found = false;
          for (int jj = 0; jj < k; ++jj) found |= fi[i * k + jj] == oi[i][j];
          ASSERT_TRUE(found) << "nbits " << nbits << " query " << i << " index " << oi[i][j];
        }
      }
    }
  }
}

}  // namespace
#endif
