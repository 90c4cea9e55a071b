// `hashlab bench search`: exact Hamming top-k on random codes, our search
// against FAISS IndexBinaryFlat::search on the same data in the same process
// with the same thread count, plus (with --device cuda in a CUDA build) our
// CUDA path and the fp16 matmul + torch::topk path Python users run.
//
// Throughput is Gdist/s = nq * nb / seconds / 1e9 (best of `repeats` runs).
// Our time includes building the interleaved database layout on every call.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace hashlab::search {

struct BenchSearchOptions {
  int bits = 64;
  int64_t nb = 1000000;
  int64_t nq = 1000;
  int64_t k = 100;
  int threads = 2;
  uint64_t seed = 1;
  int repeats = 3;
  std::string device = "cpu";  // "cpu" or "cuda"
  bool faiss = true;           // also time FAISS (CPU)
};

struct BenchSearchResult {
  BenchSearchOptions options;
  std::string kernel;  // CPU kernel used
  double ours_s = 0, ours_gdist_s = 0;
  double faiss_s = 0, faiss_gdist_s = 0;  // 0 when FAISS was not run
  double ratio = 0;                       // ours_gdist_s / faiss_gdist_s
  bool agree = true;                      // all compared results agree
  std::string disagreement;               // first difference found, if any
  // --device cuda only:
  bool cuda_ran = false;
  std::string cuda_device;
  double cuda_s = 0, cuda_gdist_s = 0;
  double matmul_s = 0, matmul_gdist_s = 0;  // fp16 (B - q.db^T)/2 + topk
};

BenchSearchResult run_bench_search(const BenchSearchOptions& options);
nlohmann::json to_json(const BenchSearchResult& r);
std::string to_text(const BenchSearchResult& r);

}  // namespace hashlab::search
