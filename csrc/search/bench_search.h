// `hashlab bench search`: exact Hamming top-k on random codes, our search
// against FAISS IndexBinaryFlat::search on the same data in the same process
// with the same thread count, plus (with --device cuda in a CUDA build) our
// CUDA path and the fp16 matmul + torch::topk path Python users run.
//
// Throughput is Gdist/s = nq * nb / seconds / 1e9 (best of `repeats` rounds).
// Our search reads the codes in place (nothing is prepared per call).
//
// The roofline, measured in the same run: the kernel in use (the same scan
// function) over one L1-resident 16 KB chunk against 64 queries whose
// thresholds let no code through, on every thread at once: XOR + popcount +
// compare with no memory traffic beyond L1 and no selection. The search is
// reported as a fraction of it, and (threads > 1) against itself on 1 thread.
// Each round times the search, then the roofline (then both on 1 thread), so
// the two are measured on the same machine state; the fraction is best over
// best, and each round's own fraction is kept beside it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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
  double roofline_gdist_s = 0, roofline_1t_gdist_s = 0;  // all threads, one thread
  double ours_1t_s = 0, ours_1t_gdist_s = 0;             // threads > 1 only
  std::vector<double> round_fractions;  // ours / roofline within each round
  bool agree = true;                      // all compared results agree
  std::string disagreement;               // first difference found, if any
  // --device cuda only:
  bool cuda_ran = false;
  std::string cuda_device;
  double cuda_s = 0, cuda_gdist_s = 0;
  double matmul_s = 0, matmul_gdist_s = 0;  // fp16 (B - q.db^T)/2 + topk
};

BenchSearchResult run_bench_search(const BenchSearchOptions& options);

// `hashlab bench index`: out-of-core search of a memory-mapped index file
// (written with random codes first when `file` does not hold nb codes of
// `bits` bits). Times nq queries top-k against the mapped file with scanned
// pages released as the search goes, then without, then from memory, and
// reports Gdist/s with the peak resident set of each search (VmHWM, reset
// before each through /proc/self/clear_refs) and its anonymous and file parts.
struct BenchIndexOptions {
  int bits = 64;
  int64_t nb = 100000000;
  int64_t nq = 1000;
  int64_t k = 100;
  int threads = 2;
  uint64_t seed = 1;
  std::string file;  // default: /tmp/hashlab_bench_<nb>x<bits>.hlc
  bool in_memory = true;  // also search the index read into memory
};
nlohmann::json run_bench_index(const BenchIndexOptions& options);
nlohmann::json to_json(const BenchSearchResult& r);
std::string to_text(const BenchSearchResult& r);

}  // namespace hashlab::search
