// CPU twin of hamming.h. Queries are converted to 64-bit words; the top-k
// and radius searches read the database rows in place (see DbView below) and
// a per-ISA kernel chosen at run time scans each L1 chunk against every query
// with a threshold filter, a bucketed Selector keeping the top k. The full
// ranking and the distance matrix convert the database to the 8-code
// word-interleaved layout (see hamming_kernels.h) once per call.
//
// Work split (top-k, radius): the queries between the threads when there are
// enough, else contiguous database parts; within a task, L2 super-chunks x
// query groups x L1 chunks, so the database is read from memory once per
// task whatever the number of queries (select_all).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include <sys/mman.h>
#include <unistd.h>

#include <ATen/Parallel.h>

#include "csrc/core/error.h"
#include "csrc/search/hamming_impl.h"
#include "csrc/search/hamming_kernels.h"

namespace hashlab::search {
namespace {

using detail::Candidate;
using detail::kBlock;
using detail::Kernels;
using detail::Selector;

using detail::kChunkBytes;

std::vector<Kernels> supported_kernels() {
  std::vector<Kernels> ks;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vpopcntdq"))
    ks.push_back(detail::avx512_kernels());
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt"))
    ks.push_back(detail::avx2_kernels());
  ks.push_back(detail::scalar_kernels());
  return ks;
}

Kernels& active_kernels() {
  static Kernels k = supported_kernels().front();
  return k;
}

int resolve_threads(int threads) { return threads > 0 ? threads : at::get_num_threads(); }

// Runs fn(task) for task in [0, ntasks) on at most `threads` threads.
template <typename Fn>
void run_tasks(int64_t ntasks, int threads, const Fn& fn) {
  if (ntasks <= 0) return;
  const int64_t nchunks = std::max<int64_t>(1, std::min<int64_t>(threads, ntasks));
  const int64_t grain = (ntasks + nchunks - 1) / nchunks;
  at::parallel_for(0, ntasks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) fn(t);
  });
}

// Codes as zero-padded 64-bit words; bits past nbits are cleared so that
// garbage in the last byte's padding cannot change distances.
struct Packed {
  int words = 0;
  int64_t n = 0;
  int64_t blocks = 0;          // interleaved only
  std::vector<uint64_t> data;  // [n][words] or [blocks][words][8]
};

// Little-endian: byte j of the code is byte j of its words.
inline void code_to_words(const uint8_t* code, int nbits, int words, uint64_t* out) {
  const int nbytes = (nbits + 7) / 8;
  for (int w = 0; w + 1 < words; ++w) std::memcpy(&out[w], code + 8 * w, 8);
  uint64_t last = 0;
  std::memcpy(&last, code + 8 * (words - 1), nbytes - 8 * (words - 1));
  if (nbits % 64) last &= (uint64_t{1} << (nbits % 64)) - 1;
  out[words - 1] = last;
}

Packed pack_rows(const torch::Tensor& codes, int nbits) {
  Packed p;
  p.words = (nbits + 63) / 64;
  p.n = codes.size(0);
  p.data.resize(p.n * p.words);
  const uint8_t* src = codes.data_ptr<uint8_t>();
  const int64_t nbytes = codes.size(1);
  for (int64_t i = 0; i < p.n; ++i) code_to_words(src + i * nbytes, nbits, p.words, &p.data[i * p.words]);
  return p;
}

// A database as the top-k and radius searches read it: row-major codes in
// the code-file (FAISS) layout, used in place. Nothing is prepared per call:
// each task interleaves the chunk it is about to scan into an L1-sized
// scratch buffer (or, for whole 64-bit codes, scans the rows directly, which
// already are the interleaved layout), and every query scans that chunk
// before the task moves on, so the database is read once per search and the
// interleaving costs one pass over it however many queries there are.
struct DbView {
  const uint8_t* data = nullptr;
  int64_t n = 0, nbytes = 0, blocks = 0;
  int nbits = 0, words = 0;
  bool release_pages = false;  // madvise(MADV_DONTNEED) what was scanned (mapped files)
  // Rows are whole 64-bit words with nothing to mask: 8 rows are one block.
  bool direct() const { return words == 1 && nbytes == 8; }
};

DbView view_of(const torch::Tensor& codes, int nbits, bool release_pages) {
  DbView v;
  v.data = codes.data_ptr<uint8_t>();
  v.n = codes.size(0);
  v.nbytes = codes.size(1);
  v.nbits = nbits;
  v.words = (nbits + 63) / 64;
  v.blocks = (v.n + kBlock - 1) / kBlock;
  v.release_pages = release_pages;
  return v;
}

// Blocks [b0, b1) of `db` in the interleaved layout, zero-padded past n.
void interleave(const DbView& db, int64_t b0, int64_t b1, uint64_t* out) {
  const int W = db.words;
  uint64_t tmp[(kMaxBits + 63) / 64];
  for (int64_t b = b0; b < b1; ++b)
    for (int c = 0; c < kBlock; ++c) {
      const int64_t i = b * kBlock + c;
      uint64_t* dst = out + (b - b0) * W * kBlock + c;
      if (i >= db.n) {
        for (int w = 0; w < W; ++w) dst[w * kBlock] = 0;
        continue;
      }
      if (db.nbits % 64 == 0) {
        for (int w = 0; w < W; ++w) std::memcpy(&dst[w * kBlock], db.data + i * db.nbytes + 8 * w, 8);
      } else {
        code_to_words(db.data + i * db.nbytes, db.nbits, W, tmp);
        for (int w = 0; w < W; ++w) dst[w * kBlock] = tmp[w];
      }
    }
}

Packed pack_interleaved(const torch::Tensor& codes, int nbits, int threads) {
  const DbView v = view_of(codes, nbits, false);
  Packed p;
  p.words = v.words;
  p.n = v.n;
  p.blocks = v.blocks;
  p.data.resize(p.blocks * p.words * kBlock);
  constexpr int64_t kTaskBlocks = 4096;
  run_tasks((p.blocks + kTaskBlocks - 1) / kTaskBlocks, threads, [&](int64_t t) {
    const int64_t b0 = t * kTaskBlocks, b1 = std::min(p.blocks, b0 + kTaskBlocks);
    interleave(v, b0, b1, &p.data[b0 * p.words * kBlock]);
  });
  return p;
}

// Drops the pages of rows [r0, r1) from this process's resident set (a
// memory-mapped file reads them back from the page cache if touched again).
void release_rows(const DbView& db, int64_t r0, int64_t r1) {
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  uintptr_t a = reinterpret_cast<uintptr_t>(db.data + r0 * db.nbytes);
  uintptr_t e = reinterpret_cast<uintptr_t>(db.data + r1 * db.nbytes);
  a = (a + page - 1) / page * page;
  e = e / page * page;
  if (e > a) ::madvise(reinterpret_cast<void*>(a), e - a, MADV_DONTNEED);
}

// Starting thresholds for a top-k scan of the full blocks of [b0, b1), from
// a sample of every kSampleStride-th block: a query's threshold is one past
// the m-th smallest distance in the sample, m = kSafety * k * (sample
// fraction), so about kSafety * k codes of the part are expected below it
// instead of the k ln(n / k) a scan starting from "everything passes" pushes
// (the early codes, met while the threshold is still high). Fewer pushes
// mean fewer taken branches out of the scan's hot loop. The result stays
// exact: a query whose part holds fewer than k codes below its start is
// scanned again from the full threshold (see select_all). Returns empty
// when the sample would not pay: too few pushes to save (small n / k), or
// too small a sample to estimate the threshold. The sample is scanned in
// chunks of chunk_blocks, as the part is.
std::vector<int> sampled_thresholds(const Packed& q, int64_t qa, int64_t qb, const DbView& db,
                                    int64_t b0, int64_t b1, int64_t k, int64_t chunk_blocks,
                                    const Kernels& kern) {
  constexpr int64_t kSampleStride = 64;
  constexpr int64_t kSafety = 4;
  const int64_t full_end = std::min(b1, db.n / kBlock);  // blocks without padding codes
  const int64_t nsample = full_end > b0 ? (full_end - b0) / kSampleStride : 0;
  const int64_t n_part = (b1 - b0) * kBlock;
  const int64_t m = (kSafety * k * nsample * kBlock + n_part - 1) / n_part;
  // Pays when the scan would push at least twice the kSafety * k codes:
  // k (1 + ln(n / k)) >= 2 kSafety k.
  if (m < 4 || m > nsample * kBlock || std::log(double(n_part) / double(k)) + 1 < 2 * kSafety) return {};
  const int W = db.words;
  std::vector<uint64_t> sample(nsample * W * kBlock);
  for (int64_t j = 0; j < nsample; ++j) {
    const int64_t b = b0 + j * kSampleStride;
    interleave(db, b, b + 1, &sample[j * W * kBlock]);
  }
  std::vector<Selector> sel(qb - qa);
  for (auto& s : sel) s.reset(m, db.nbits + 1, db.nbits, nsample * kBlock);
  for (int64_t c0 = 0; c0 < nsample; c0 += chunk_blocks)
    kern.scan(&q.data[qa * W], qb - qa, &sample[c0 * W * kBlock], W, c0,
              std::min(nsample, c0 + chunk_blocks), sel.data());
  std::vector<int> start(qb - qa);
  for (int64_t i = 0; i < qb - qa; ++i) {
    const std::vector<Candidate> best = sel[i].finish();
    start[i] = static_cast<int>(best.size()) == m ? best.back().distance + 1 : db.nbits + 1;
  }
  return start;
}

// Runs a Selector per (query, database part) over the whole database and
// returns, per query, each part's finished candidates in part order. Tasks
// are query ranges or contiguous database parts (see below). Cache
// blocking within a task: the part is walked in L2-sized super-chunks
// (interleaved once into a scratch buffer when the rows are not already the
// layout); each group of kQueryGroup queries scans the super-chunk in
// L1-sized chunks, so the group's selectors stay in L2 beside the codes and
// the database is read from memory once per search.
// A top-k search starts each query's threshold from a sample of its part
// (sampled_thresholds); the few queries whose part then yields fewer than
// k codes are scanned again from the full threshold.
// budget (radius searches; null: none): how many more candidates all tasks
// together may hold. Each task takes what its L1 chunks add; when it goes
// below zero every task stops (the caller then reports the limit), so memory
// stays bounded by the budget plus one chunk's candidates per thread.
std::vector<std::vector<Candidate>> select_all(const Packed& q, const DbView& db, int nbits,
                                               int64_t k, int threshold, int threads,
                                               int64_t* parts_out,
                                               std::atomic<int64_t>* budget = nullptr) {
  constexpr int64_t kSuperBytes = 512 * 1024;
  constexpr int64_t kQueryGroup = 64;
  constexpr int64_t kReleaseRows = int64_t{1} << 20;  // rows per madvise
  const Kernels kern = active_kernels();
  const int64_t nq = q.n;
  const int W = db.words;
  // Split the queries between the threads when there are enough of them
  // (each thread then reads the whole database once, and keeps one selector
  // per query: the same number of candidates as one thread); else split the
  // database (a few queries), each part finding its own top k.
  const int64_t qparts =
      std::max<int64_t>(1, std::min<int64_t>(threads, nq / kQueryGroup));
  const int64_t parts = qparts > 1 ? 1 : std::max<int64_t>(1, std::min<int64_t>(threads, db.blocks));
  const int64_t queries_per_task = (nq + qparts - 1) / qparts;
  const int64_t blocks_per_part = (db.blocks + parts - 1) / parts;
  const int64_t block_bytes = int64_t(W) * kBlock * int64_t(sizeof(uint64_t));
  const int64_t chunk_blocks = std::max<int64_t>(1, kChunkBytes / block_bytes);
  const int64_t super_blocks = std::max<int64_t>(chunk_blocks, kSuperBytes / block_bytes / chunk_blocks * chunk_blocks);
  std::vector<std::vector<Candidate>> found(nq * parts);
  run_tasks(qparts * parts, threads, [&](int64_t task) {
    const int64_t part = task % parts;
    const int64_t qa = std::min(nq, (task / parts) * queries_per_task);
    const int64_t qb = std::min(nq, qa + queries_per_task);
    const int64_t b0 = std::min(db.blocks, part * blocks_per_part);
    const int64_t b1 = std::min(db.blocks, b0 + blocks_per_part);
    std::vector<uint64_t> scratch;
    // Scans blocks [b0, b1) for nsel queries (words `qwords`, selectors `sel`).
    // Returns false when the budget ran out.
    auto scan_part = [&](const uint64_t* qwords, int64_t nsel, Selector* sel) {
      int64_t released = b0 * kBlock;
      for (int64_t s0 = b0; s0 < b1; s0 += super_blocks) {
        const int64_t s1 = std::min(b1, s0 + super_blocks);
        const uint64_t* blocks;  // blocks [s0, s1), interleaved
        if (db.direct() && s1 * kBlock <= db.n) {
          blocks = reinterpret_cast<const uint64_t*>(db.data + s0 * kBlock * 8);
        } else {
          scratch.resize((s1 - s0) * W * kBlock);
          interleave(db, s0, s1, scratch.data());
          blocks = scratch.data();
        }
        for (int64_t g0 = 0; g0 < nsel; g0 += kQueryGroup) {
          const int64_t gn = std::min(kQueryGroup, nsel - g0);
          auto held = [&] {
            int64_t h = 0;
            for (int64_t i = 0; i < gn; ++i) h += sel[g0 + i].held();
            return h;
          };
          int64_t before = budget ? held() : 0;
          for (int64_t c0 = s0; c0 < s1; c0 += chunk_blocks) {
            const int64_t c1 = std::min(s1, c0 + chunk_blocks);
            kern.scan(qwords + g0 * W, gn, blocks + (c0 - s0) * W * kBlock, W, c0, c1, sel + g0);
            if (budget) {
              const int64_t now = held();
              if (budget->fetch_sub(now - before) - (now - before) < 0) return false;
              before = now;
            }
          }
        }
        if (budget && budget->load() < 0) return false;
        // With the queries split, the threads scan the same rows at about the
        // same time; each drops what it scanned (a page another still needs is
        // read back from the page cache).
        if (db.release_pages && (s1 * kBlock - released >= kReleaseRows || s1 == b1)) {
          release_rows(db, released, std::min(db.n, s1 * kBlock));
          released = s1 * kBlock;
        }
      }
      return true;
    };
    // Not for radius searches, nor when scanned pages are released (a
    // mapped index read out of core): the sample touches a page in every
    // few of the part before the scan.
    const std::vector<int> start = budget || db.release_pages
                                       ? std::vector<int>{}
                                       : sampled_thresholds(q, qa, qb, db, b0, b1, k, chunk_blocks, kern);
    std::vector<Selector> sel(qb - qa);
    for (int64_t i = 0; i < qb - qa; ++i)
      sel[i].reset(k, start.empty() ? threshold : start[i], nbits, db.n);
    if (!scan_part(&q.data[qa * W], qb - qa, sel.data())) return;
    // The part's codes: at least min(k, these) come back from a full scan.
    const int64_t want = std::min<int64_t>(k, std::min(db.n, b1 * kBlock) - b0 * kBlock);
    std::vector<int64_t> again;  // started too low: fewer than k codes below the start
    for (int64_t i = qa; i < qb; ++i) {
      found[i * parts + part] = sel[i - qa].finish();
      if (!start.empty() && static_cast<int64_t>(found[i * parts + part].size()) < want) again.push_back(i);
    }
    if (!again.empty()) {
      std::vector<uint64_t> words(again.size() * W);
      std::vector<Selector> full(again.size());
      for (size_t j = 0; j < again.size(); ++j) {
        std::copy_n(&q.data[again[j] * W], W, &words[j * W]);
        full[j].reset(k, threshold, nbits, db.n);
      }
      scan_part(words.data(), static_cast<int64_t>(again.size()), full.data());
      for (size_t j = 0; j < again.size(); ++j) found[again[j] * parts + part] = full[j].finish();
    }
  });
  *parts_out = parts;
  return found;
}

// Concatenates the parts of query i (indices increase from part to part) and
// orders them by (distance, index).
std::vector<Candidate> merge_parts(std::vector<std::vector<Candidate>>& found, int64_t i,
                                   int64_t parts, int dist_end) {
  if (parts == 1) return std::move(found[i]);
  std::vector<Candidate> all;
  for (int64_t p = 0; p < parts; ++p)
    all.insert(all.end(), found[i * parts + p].begin(), found[i * parts + p].end());
  std::vector<Candidate> out;
  Selector::sorted_by_distance(all, dist_end, &out);
  return out;
}

}  // namespace

namespace detail {
Kernels current_kernels() { return active_kernels(); }
}  // namespace detail

const char* cpu_kernel_name() { return active_kernels().name; }

std::vector<std::string> available_cpu_kernels() {
  std::vector<std::string> names;
  for (const Kernels& k : supported_kernels()) names.emplace_back(k.name);
  return names;
}

void set_cpu_kernel(const std::string& name) {
  const std::vector<Kernels> ks = supported_kernels();
  if (name == "auto") {
    active_kernels() = ks.front();
    return;
  }
  for (const Kernels& k : ks)
    if (name == k.name) {
      active_kernels() = k;
      return;
    }
  fail("CPU Hamming kernel '{}' is not available on this CPU (choose auto, {})", name,
       fmt::join(available_cpu_kernels(), ", "));
}

namespace cpu {

TopK topk(const torch::Tensor& queries, const torch::Tensor& database, int nbits, int64_t k,
          int threads, bool release_pages) {
  threads = resolve_threads(threads);
  const Packed q = pack_rows(queries, nbits);
  const DbView db = view_of(database, nbits, release_pages);
  int64_t parts = 1;
  auto found = select_all(q, db, nbits, k, nbits + 1, threads, &parts);
  TopK out{torch::empty({q.n, k}, torch::kInt32), torch::empty({q.n, k}, torch::kInt64)};
  int32_t* dist = out.distances.data_ptr<int32_t>();
  int64_t* idx = out.indices.data_ptr<int64_t>();
  run_tasks(q.n, threads, [&](int64_t i) {
    const std::vector<Candidate> best = merge_parts(found, i, parts, nbits + 1);
    // Every part kept min(k, its size) and the parts cover >= k codes.
    TORCH_CHECK(static_cast<int64_t>(best.size()) >= k, "hamming_topk: internal: ", best.size(),
                " candidates for k = ", k);
    for (int64_t j = 0; j < k; ++j) {
      dist[i * k + j] = best[j].distance;
      idx[i * k + j] = best[j].index;
    }
    found[i * parts].clear();
  });
  return out;
}

RadiusResult radius(const torch::Tensor& queries, const torch::Tensor& database, int nbits,
                    int radius, int threads, bool release_pages, int64_t max_results) {
  threads = resolve_threads(threads);
  const Packed q = pack_rows(queries, nbits);
  const DbView db = view_of(database, nbits, release_pages);
  int64_t parts = 1;
  std::atomic<int64_t> budget{max_results};
  auto found =
      select_all(q, db, nbits, Selector::kUnbounded, radius + 1, threads, &parts, &budget);
  if (budget.load() < 0) return {};  // past max_results: the caller says so
  std::vector<std::vector<Candidate>> hits(q.n);
  run_tasks(q.n, threads, [&](int64_t i) { hits[i] = merge_parts(found, i, parts, radius + 1); });
  RadiusResult out;
  out.offsets = torch::empty({q.n + 1}, torch::kInt64);
  int64_t* off = out.offsets.data_ptr<int64_t>();
  off[0] = 0;
  for (int64_t i = 0; i < q.n; ++i) off[i + 1] = off[i] + static_cast<int64_t>(hits[i].size());
  out.indices = torch::empty({off[q.n]}, torch::kInt64);
  out.distances = torch::empty({off[q.n]}, torch::kInt32);
  int64_t* idx = out.indices.data_ptr<int64_t>();
  int32_t* dist = out.distances.data_ptr<int32_t>();
  run_tasks(q.n, threads, [&](int64_t i) {
    for (size_t j = 0; j < hits[i].size(); ++j) {
      idx[off[i] + j] = hits[i][j].index;
      dist[off[i] + j] = hits[i][j].distance;
    }
  });
  return out;
}

RankAll rank_all(const torch::Tensor& queries, const torch::Tensor& database, int nbits,
                 int threads) {
  threads = resolve_threads(threads);
  const Kernels kern = active_kernels();
  const Packed q = pack_rows(queries, nbits);
  const Packed db = pack_interleaved(database, nbits, threads);
  const int64_t n = db.n;
  RankAll out{torch::empty({q.n, n}, torch::kInt32), torch::zeros({q.n, nbits + 1}, torch::kInt64)};
  int32_t* order = out.indices.data_ptr<int32_t>();
  int64_t* counts = out.counts.data_ptr<int64_t>();
  // Counting sort per query: distances, histogram, prefix sums, scatter.
  const int64_t nchunks = std::max<int64_t>(1, std::min<int64_t>(threads, q.n));
  const int64_t per_chunk = (q.n + nchunks - 1) / nchunks;
  run_tasks(nchunks, threads, [&](int64_t c) {
    std::vector<uint16_t> d(db.blocks * kBlock);
    std::vector<int64_t> next(nbits + 1);
    for (int64_t i = c * per_chunk; i < std::min(q.n, (c + 1) * per_chunk); ++i) {
      kern.distances(&q.data[i * q.words], db.data.data(), db.words, 0, db.blocks, d.data());
      int64_t* cnt = counts + i * (nbits + 1);
      for (int64_t j = 0; j < n; ++j) ++cnt[d[j]];
      int64_t start = 0;
      for (int v = 0; v <= nbits; ++v) next[v] = start, start += cnt[v];
      int32_t* row = order + i * n;
      for (int64_t j = 0; j < n; ++j) row[next[d[j]]++] = static_cast<int32_t>(j);
    }
  });
  return out;
}

torch::Tensor distances(const torch::Tensor& queries, const torch::Tensor& database, int nbits,
                        int threads) {
  threads = resolve_threads(threads);
  const Kernels kern = active_kernels();
  const Packed q = pack_rows(queries, nbits);
  const Packed db = pack_interleaved(database, nbits, threads);
  auto out = torch::empty({q.n, db.n}, torch::kInt32);
  int32_t* dst = out.data_ptr<int32_t>();
  const int64_t nchunks = std::max<int64_t>(1, std::min<int64_t>(threads, q.n));
  const int64_t per_chunk = (q.n + nchunks - 1) / nchunks;
  run_tasks(nchunks, threads, [&](int64_t c) {
    std::vector<uint16_t> d(db.blocks * kBlock);
    for (int64_t i = c * per_chunk; i < std::min(q.n, (c + 1) * per_chunk); ++i) {
      kern.distances(&q.data[i * q.words], db.data.data(), db.words, 0, db.blocks, d.data());
      std::copy(d.begin(), d.begin() + db.n, dst + i * db.n);
    }
  });
  return out;
}

}  // namespace cpu
}  // namespace hashlab::search
