#include "csrc/search/bench_search.h"

#include <omp.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <atomic>
#include <map>
#include <optional>
#include <chrono>
#include <limits>
#include <random>

#include <ATen/Parallel.h>
#include <fmt/format.h>

#ifdef HASHLAB_WITH_FAISS
#include <faiss/IndexBinaryFlat.h>
#endif

#include "csrc/core/error.h"
#include "csrc/codes/code_file.h"
#include "csrc/search/binary_index.h"
#include "csrc/search/hamming.h"
#include "csrc/search/hamming_kernels.h"

#ifdef HASHLAB_WITH_CUDA
#include <torch/cuda.h>

#include "csrc/codes/codes.h"
#endif

namespace hashlab::search {
namespace {

torch::Tensor random_codes(int64_t n, int nbits, std::mt19937_64& rng) {
  const int64_t nbytes = (nbits + 7) / 8;
  auto t = torch::empty({n, nbytes}, torch::kUInt8);
  uint8_t* p = t.data_ptr<uint8_t>();
  int64_t i = 0;
  for (; i + 8 <= t.numel(); i += 8) {
    const uint64_t r = rng();
    std::memcpy(p + i, &r, 8);
  }
  for (; i < t.numel(); ++i) p[i] = static_cast<uint8_t>(rng());
  if (nbits % 8)
    for (int64_t r = 0; r < n; ++r) p[r * nbytes + nbytes - 1] &= (1u << (nbits % 8)) - 1;
  return t;
}

template <typename Fn>
double best_seconds(int repeats, const Fn& fn) {
  double best = std::numeric_limits<double>::infinity();
  for (int r = 0; r < std::max(1, repeats); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
    best = std::min(best, dt.count());
  }
  return best;
}

int code_distance(const uint8_t* a, const uint8_t* b, int64_t nbytes) {
  int d = 0;
  for (int64_t i = 0; i < nbytes; ++i) d += __builtin_popcount(static_cast<unsigned>(a[i] ^ b[i]));
  return d;
}

// Compares another engine's top-k with ours: distances exactly; indices as
// sets, except that at the k-th distance any items of that distance will do
// (engines order ties differently). Each reported index must also truly be at
// its reported distance. Returns "" when they agree.
std::string compare_topk(const TopK& ours, const int32_t* dist, const int64_t* idx,
                         const torch::Tensor& q, const torch::Tensor& db, const char* who) {
  const int64_t nq = ours.distances.size(0), k = ours.distances.size(1), nbytes = db.size(1);
  auto od = ours.distances.accessor<int32_t, 2>();
  auto oi = ours.indices.accessor<int64_t, 2>();
  const uint8_t* qp = q.data_ptr<uint8_t>();
  const uint8_t* dp = db.data_ptr<uint8_t>();
  for (int64_t i = 0; i < nq; ++i) {
    const int kth = od[i][k - 1];
    std::vector<int64_t> a, b;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t x = idx[i * k + j];
      if (dist[i * k + j] != od[i][j])
        return fmt::format("{}: query {} rank {}: distance {} vs ours {}", who, i, j,
                           dist[i * k + j], od[i][j]);
      if (x < 0 || x >= db.size(0) || code_distance(qp + i * nbytes, dp + x * nbytes, nbytes) != dist[i * k + j])
        return fmt::format("{}: query {} rank {}: index {} is not at distance {}", who, i, j, x,
                           dist[i * k + j]);
      if (od[i][j] < kth) a.push_back(oi[i][j]), b.push_back(x);
    }
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    if (a != b) return fmt::format("{}: query {}: different items strictly inside the top {}", who, i, k);
  }
  return "";
}

}  // namespace

namespace {

// The roofline's loop: every thread scans its own L1-resident chunk against
// kQueries queries whose thresholds (0) let nothing through. Calibrated once
// to about `seconds` per timed round, so that rounds can be interleaved with
// the search's (this machine's cores are shared with other guests, and a
// roofline taken minutes apart from the search measures another machine).
class Roofline {
 public:
  Roofline(int bits, int threads, double seconds) : bits_(bits), threads_(threads) {
    const double per_rep = best_seconds(3, [&] { run(8); }) / 8;  // calibrate (and warm up)
    reps_ = std::max<int64_t>(1, static_cast<int64_t>(seconds / per_rep));
  }
  // One timed round, in Gdist/s.
  double round() {
    int64_t total = 0;
    const double t = best_seconds(1, [&] { total = run(reps_); });
    return double(total) * kQueries * double(blocks() * detail::kBlock) / t / 1e9;
  }

 private:
  static constexpr int kQueries = 64;
  int words() const { return (bits_ + 63) / 64; }
  int64_t blocks() const {
    return std::max<int64_t>(1, detail::kChunkBytes / (int64_t(words()) * detail::kBlock * 8));
  }
  int64_t run(int64_t reps) const {
    const detail::Kernels kern = detail::current_kernels();
    const int W = words();
    const int64_t nblocks = blocks();
    std::atomic<int64_t> done{0};
    at::parallel_for(0, threads_, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        std::mt19937_64 rng(1000 + t);
        std::vector<uint64_t> chunk(nblocks * W * detail::kBlock), q(kQueries * W);
        for (auto& x : chunk) x = rng();
        for (auto& x : q) x = rng();
        std::vector<detail::Selector> sel(kQueries);
        for (auto& s : sel) s.reset(1, 0, bits_, nblocks * detail::kBlock);
        for (int64_t r = 0; r < reps; ++r) kern.scan(q.data(), kQueries, chunk.data(), W, 0, nblocks, sel.data());
        done += reps;
      }
    });
    return done.load();
  }
  int bits_, threads_;
  int64_t reps_ = 1;
};

}  // namespace

BenchSearchResult run_bench_search(const BenchSearchOptions& o) {
  HL_CHECK(o.bits >= 1 && o.bits <= 4096, "bench search: --bits must be in [1, 4096], got {}", o.bits);
  HL_CHECK(o.nb >= 1 && o.nq >= 1, "bench search: --nb and --nq must be >= 1");
  HL_CHECK(o.k >= 1 && o.k <= o.nb, "bench search: --k must be in [1, nb = {}], got {}", o.nb, o.k);
  HL_CHECK(o.threads >= 1, "bench search: --threads must be >= 1, got {}", o.threads);
  HL_CHECK(o.device == "cpu" || o.device == "cuda",
           "bench search: --device must be cpu or cuda, got '{}'", o.device);

  BenchSearchResult r;
  r.options = o;
  r.kernel = cpu_kernel_name();
  std::mt19937_64 rng(o.seed);
  const torch::Tensor db = random_codes(o.nb, o.bits, rng);
  const torch::Tensor q = random_codes(o.nq, o.bits, rng);
  const double pairs = static_cast<double>(o.nq) * static_cast<double>(o.nb);

  // FAISS and LibTorch both parallelise with OpenMP here: same thread count.
  omp_set_num_threads(o.threads);
  at::set_num_threads(o.threads);

  // Rounds alternate the search and the roofline (and, with threads > 1, both
  // again on 1 thread), so that each fraction compares two timings taken
  // seconds apart; the best of each over the rounds is reported.
  TopK ours;
  Roofline roof(o.bits, o.threads, 0.15);
  std::optional<Roofline> roof_1t;
  if (o.threads > 1) roof_1t.emplace(o.bits, 1, 0.15);
  r.ours_s = r.ours_1t_s = std::numeric_limits<double>::infinity();
  for (int round = 0; round < std::max(1, o.repeats); ++round) {
    const double s = best_seconds(1, [&] { ours = hamming_topk(q, db, o.bits, o.k, o.threads); });
    const double roof_now = roof.round();
    r.ours_s = std::min(r.ours_s, s);
    r.roofline_gdist_s = std::max(r.roofline_gdist_s, roof_now);
    r.round_fractions.push_back(pairs / s / 1e9 / roof_now);
    if (roof_1t) {
      r.ours_1t_s = std::min(r.ours_1t_s, best_seconds(1, [&] { hamming_topk(q, db, o.bits, o.k, 1); }));
      r.roofline_1t_gdist_s = std::max(r.roofline_1t_gdist_s, roof_1t->round());
    }
  }
  r.ours_gdist_s = pairs / r.ours_s / 1e9;
  if (roof_1t) {
    r.ours_1t_gdist_s = pairs / r.ours_1t_s / 1e9;
  } else {
    r.roofline_1t_gdist_s = r.roofline_gdist_s;
  }

  if (o.faiss) {
#ifdef HASHLAB_WITH_FAISS
    HL_CHECK(o.bits % 8 == 0, "bench search: FAISS needs a multiple of 8 bits (or --no-faiss), got {}",
             o.bits);
    faiss::IndexBinaryFlat index(o.bits);
    index.add(o.nb, db.data_ptr<uint8_t>());
    std::vector<int32_t> fd(o.nq * o.k);
    std::vector<int64_t> fi(o.nq * o.k);
    r.faiss_s = best_seconds(o.repeats, [&] {
      index.search(o.nq, q.data_ptr<uint8_t>(), o.k, fd.data(), fi.data());
    });
    r.faiss_gdist_s = pairs / r.faiss_s / 1e9;
    r.ratio = r.ours_gdist_s / r.faiss_gdist_s;
    const std::string diff = compare_topk(ours, fd.data(), fi.data(), q, db, "faiss");
    if (!diff.empty()) r.agree = false, r.disagreement = diff;
#else
    fail("bench search: hashlab was built without FAISS (use --no-faiss)");
#endif
  }

  if (o.device == "cuda") {
#ifdef HASHLAB_WITH_CUDA
    HL_CHECK(torch::cuda::is_available(), "bench search: --device cuda but no CUDA device is visible");
    r.cuda_ran = true;
    r.cuda_device = "cuda:0";
    const auto dev = torch::Device(torch::kCUDA, 0);
    const torch::Tensor qc = q.to(dev), dbc = db.to(dev);
    TopK got;
    hamming_topk(qc, dbc, o.bits, o.k);  // warm-up (module load, allocator)
    torch::cuda::synchronize();
    r.cuda_s = best_seconds(o.repeats, [&] {
      got = hamming_topk(qc, dbc, o.bits, o.k);
      torch::cuda::synchronize();
    });
    r.cuda_gdist_s = pairs / r.cuda_s / 1e9;
    const torch::Tensor gd = got.distances.cpu().contiguous(), gi = got.indices.cpu().contiguous();
    if (!torch::equal(gd, ours.distances) || !torch::equal(gi, ours.indices)) {
      r.agree = false;
      if (r.disagreement.empty()) r.disagreement = "cuda: top-k differs from the CPU's (distances or indices)";
    }

    // What a PyTorch user would write: ±1 codes as fp16, dist = (B - q.db^T)/2,
    // topk of the negated distances, in query chunks to bound memory.
    const torch::Tensor qh = hashlab::codes::unpack_bits(qc, o.bits).to(torch::kHalf);
    const torch::Tensor dbh = hashlab::codes::unpack_bits(dbc, o.bits).to(torch::kHalf);
    const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 31) / (2 * o.nb));  // <= 4 GiB fp16
    torch::Tensor md, mi;
    auto matmul_topk = [&] {
      std::vector<torch::Tensor> ds, is;
      for (int64_t s = 0; s < o.nq; s += chunk) {
        auto dot = torch::matmul(qh.narrow(0, s, std::min(chunk, o.nq - s)), dbh.t());
        auto res = torch::topk(dot, o.k, /*dim=*/1, /*largest=*/true, /*sorted=*/true);
        ds.push_back(std::get<0>(res));
        is.push_back(std::get<1>(res));
      }
      md = ((o.bits - torch::cat(ds).to(torch::kFloat)) / 2).round().to(torch::kInt32);
      mi = torch::cat(is);
      torch::cuda::synchronize();
    };
    matmul_topk();
    r.matmul_s = best_seconds(o.repeats, matmul_topk);
    r.matmul_gdist_s = pairs / r.matmul_s / 1e9;
    const torch::Tensor mdc = md.cpu().contiguous(), mic = mi.cpu().contiguous();
    const std::string diff = compare_topk(ours, mdc.data_ptr<int32_t>(), mic.data_ptr<int64_t>(), q, db,
                                          "fp16 matmul+topk");
    if (!diff.empty()) {
      r.agree = false;
      if (r.disagreement.empty()) r.disagreement = diff;
    }
#else
    fail("bench search: --device cuda needs a build against a CUDA LibTorch (see tools/gpu_check.sh)");
#endif
  }
  return r;
}

namespace {
// kB values of /proc/self/status fields (VmHWM, VmRSS, RssAnon, RssFile).
std::map<std::string, int64_t> proc_status() {
  std::map<std::string, int64_t> out;
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, colon);
    if (key == "VmHWM" || key == "VmRSS" || key == "RssAnon" || key == "RssFile")
      out[key] = std::atoll(line.c_str() + colon + 1);
  }
  return out;
}
// Resets VmHWM to the current RSS (Linux >= 4.0).
void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }
}  // namespace

nlohmann::json run_bench_index(const BenchIndexOptions& o) {
  HL_CHECK(o.bits >= 1 && o.bits <= 4096, "bench index: --bits must be in [1, 4096], got {}", o.bits);
  HL_CHECK(o.nb >= 1 && o.nq >= 1 && o.k >= 1 && o.k <= o.nb,
           "bench index: need nb >= 1, nq >= 1 and 1 <= k <= nb");
  const std::string file = o.file.empty()
                               ? fmt::format("/tmp/hashlab_bench_{}x{}.hlc", o.nb, o.bits)
                               : o.file;
  std::mt19937_64 rng(o.seed);
  bool have = false;
  if (std::filesystem::exists(file)) {
    const auto info = codes::read_code_file_info(file);
    have = info.kind == codes::CodeKind::binary && info.nbits == o.bits && info.count == o.nb;
  }
  double write_s = 0;
  if (!have) {
    write_s = best_seconds(1, [&] {
      codes::write_binary_codes(file, {o.bits, random_codes(o.nb, o.bits, rng)});
    });
  }
  const torch::Tensor q = random_codes(o.nq, o.bits, rng);
  omp_set_num_threads(o.threads);
  at::set_num_threads(o.threads);
  const double pairs = double(o.nq) * double(o.nb);
  nlohmann::json j = {{"file", file}, {"bits", o.bits}, {"nb", o.nb}, {"nq", o.nq}, {"k", o.k},
                      {"threads", o.threads}, {"kernel", cpu_kernel_name()},
                      {"file_bytes", std::filesystem::file_size(file)}};
  if (!have) j["write_seconds"] = write_s;
  TopK first;
  auto timed = [&](const char* name, bool release, bool mmap) {
    BinaryIndex::LoadOptions lo;
    lo.mmap = mmap;
    lo.verify_checksum = false;
    lo.release_pages = release;
    reset_peak_rss();
    const auto before = proc_status();
    BinaryIndex index;
    const double load_s = best_seconds(1, [&] { index = BinaryIndex::load(file, lo); });
    TopK got;
    const double s = best_seconds(1, [&] { got = index.search(q, o.k, o.threads); });
    const auto after = proc_status();
    if (!first.indices.defined()) {
      first = got;
    } else if (!torch::equal(first.indices, got.indices) ||
               !torch::equal(first.distances, got.distances)) {
      fail("bench index: the {} search differs from the first one", name);
    }
    j[name] = {{"load_seconds", load_s},
               {"search_seconds", s},
               {"gdist_s", pairs / s / 1e9},
               {"rss_before_mb", before.at("VmRSS") / 1024.0},
               {"peak_rss_mb", after.at("VmHWM") / 1024.0},
               {"rss_anon_mb", after.at("RssAnon") / 1024.0},
               {"rss_file_mb", after.at("RssFile") / 1024.0}};
  };
  timed("mapped_release", true, true);
  timed("mapped", false, true);
  if (o.in_memory) timed("in_memory", false, false);
  return j;
}

nlohmann::json to_json(const BenchSearchResult& r) {
  const auto& o = r.options;
  nlohmann::json j = {{"bits", o.bits},     {"nb", o.nb},
                      {"nq", o.nq},         {"k", o.k},
                      {"threads", o.threads}, {"seed", o.seed},
                      {"repeats", o.repeats}, {"device", o.device},
                      {"kernel", r.kernel}, {"ours_s", r.ours_s},
                      {"ours_gdist_s", r.ours_gdist_s}, {"agree", r.agree},
                      {"roofline_gdist_s", r.roofline_gdist_s},
                      {"roofline_1t_gdist_s", r.roofline_1t_gdist_s},
                      {"fraction_of_roofline", r.ours_gdist_s / r.roofline_gdist_s},
                      {"round_fractions", r.round_fractions}};
  if (o.threads > 1) {
    j["ours_1t_s"] = r.ours_1t_s;
    j["ours_1t_gdist_s"] = r.ours_1t_gdist_s;
    j["thread_scaling"] = r.ours_gdist_s / r.ours_1t_gdist_s;
    j["roofline_thread_scaling"] = r.roofline_gdist_s / r.roofline_1t_gdist_s;
  }
  if (o.faiss) {
    j["faiss_s"] = r.faiss_s;
    j["faiss_gdist_s"] = r.faiss_gdist_s;
    j["ratio"] = r.ratio;
  }
  if (!r.agree) j["disagreement"] = r.disagreement;
  if (r.cuda_ran) {
    j["cuda_device"] = r.cuda_device;
    j["cuda_s"] = r.cuda_s;
    j["cuda_gdist_s"] = r.cuda_gdist_s;
    j["matmul_fp16_s"] = r.matmul_s;
    j["matmul_fp16_gdist_s"] = r.matmul_gdist_s;
  }
  return j;
}

std::string to_text(const BenchSearchResult& r) {
  const auto& o = r.options;
  std::string s = fmt::format("hamming top-{}: {} bits, nb {}, nq {}, {} threads, kernel {}\n", o.k,
                              o.bits, o.nb, o.nq, o.threads, r.kernel);
  const auto [lo, hi] = std::minmax_element(r.round_fractions.begin(), r.round_fractions.end());
  s += fmt::format("  ours (cpu)    {:9.4f} s  {:8.3f} Gdist/s   {:.0f}% of the roofline (rounds: {:.0f}-{:.0f}%)\n",
                   r.ours_s, r.ours_gdist_s, 100 * r.ours_gdist_s / r.roofline_gdist_s, 100 * *lo, 100 * *hi);
  s += fmt::format("  roofline                 {:8.3f} Gdist/s   (the kernel on L1-resident codes, no "
                   "selection, {} threads)\n",
                   r.roofline_gdist_s, o.threads);
  if (o.threads > 1)
    s += fmt::format("  ours, 1 thread {:8.4f} s  {:8.3f} Gdist/s   {} threads = {:.2f}x 1 thread "
                     "(roofline: {:.2f}x)\n",
                     r.ours_1t_s, r.ours_1t_gdist_s, o.threads, r.ours_gdist_s / r.ours_1t_gdist_s,
                     r.roofline_gdist_s / r.roofline_1t_gdist_s);
  if (o.faiss)
    s += fmt::format("  faiss (cpu)   {:9.4f} s  {:8.3f} Gdist/s   ours/faiss = {:.2f}x\n", r.faiss_s,
                     r.faiss_gdist_s, r.ratio);
  if (r.cuda_ran) {
    s += fmt::format("  ours (cuda)   {:9.5f} s  {:8.1f} Gdist/s\n", r.cuda_s, r.cuda_gdist_s);
    s += fmt::format("  fp16 mm+topk  {:9.5f} s  {:8.1f} Gdist/s\n", r.matmul_s, r.matmul_gdist_s);
  }
  s += r.agree ? "  results agree\n" : fmt::format("  RESULTS DISAGREE: {}\n", r.disagreement);
  return s;
}

}  // namespace hashlab::search
