// hashlab bench pq: exact PQ ADC top-k, ours against FAISS IndexPQ on the same
// data, the same codebooks and the same codes (ours are copied into the FAISS
// index), with a top-k agreement check.
// hashlab bench eval: the time of evaluate_hamming (mAP@all and the rest) on
// random codes of the label-protocol size.
#include <chrono>
#include <iostream>
#include <memory>

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#ifdef HASHLAB_WITH_FAISS
#include <faiss/IndexPQ.h>
#include <omp.h>
#endif

#include "csrc/core/error.h"
#include "csrc/core/json_text.h"
#include "csrc/eval/metrics.h"
#include "csrc/search/pq.h"
#include "tools/cli/commands.h"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct PQOpts {
  int64_t nb = 1000000, nq = 1000, d = 128, k = 100, nt = 65536;
  int m = 16, ksub = 256, iters = 20, threads = 2, repeats = 1, clusters = 256;
  uint64_t seed = 1234;
  bool json = false, no_faiss = false;
};

// A Gaussian mixture: `clusters` centres N(0, I), points = centre + 0.5·N(0, I).
// Clustered data, like real descriptors, rather than one isotropic blob.
torch::Tensor mixture(int64_t n, int64_t d, const torch::Tensor& centres, torch::Generator& gen) {
  auto which = torch::randint(centres.size(0), {n}, gen, torch::kLong);
  return centres.index_select(0, which) + 0.5 * torch::randn({n, d}, gen, torch::kFloat);
}

void run_pq(const PQOpts& o) {
  HL_CHECK(o.nb >= 1 && o.nq >= 1 && o.k >= 1 && o.k <= o.nb, "bench pq: need 1 <= k <= nb");
  HL_CHECK(o.d % o.m == 0, "bench pq: --d {} is not divisible by --m {}", o.d, o.m);
  HL_CHECK(o.ksub >= 1 && o.ksub <= 256, "bench pq: --ksub {} must lie in [1, 256]", o.ksub);
  HL_CHECK(o.threads >= 1 && o.repeats >= 1, "bench pq: --threads and --repeats must be >= 1");
  at::set_num_threads(o.threads);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  auto centres = torch::randn({o.clusters, o.d}, gen, torch::kFloat);
  auto xb = mixture(o.nb, o.d, centres, gen);
  auto xq = mixture(o.nq, o.d, centres, gen);

  auto t0 = Clock::now();
  auto pq = hashlab::search::pq_train(xb.slice(0, 0, std::min(o.nt, o.nb)), o.m, o.ksub, o.iters,
                                      o.seed);
  const double train_s = seconds_since(t0);
  t0 = Clock::now();
  auto ids = hashlab::search::pq_encode(pq, xb);
  const double encode_s = seconds_since(t0);
  hashlab::search::PQScanDatabase scan(ids, o.ksub);

  // Ours: distance tables + scan, best of `repeats`.
  hashlab::search::PQTopK ours;
  double ours_s = 1e300;
  for (int r = 0; r < o.repeats; ++r) {
    t0 = Clock::now();
    auto tables = hashlab::search::pq_adc_tables(pq, xq);
    ours = hashlab::search::pq_search_tables(tables, scan, o.k, o.threads);
    ours_s = std::min(ours_s, seconds_since(t0));
  }
  nlohmann::json j = {{"nb", o.nb},         {"nq", o.nq},
                      {"d", o.d},           {"m", o.m},
                      {"ksub", o.ksub},     {"k", o.k},
                      {"threads", o.threads},
                      {"kernel", hashlab::search::pq_cpu_kernel_name()},
                      {"train_s", train_s}, {"encode_s", encode_s},
                      {"ours_s", ours_s},   {"ours_qps", double(o.nq) / ours_s}};

#ifdef HASHLAB_WITH_FAISS
  if (!o.no_faiss) {
    HL_CHECK(o.ksub == 256, "bench pq: FAISS IndexPQ here needs --ksub 256 (8-bit codes)");
    omp_set_num_threads(o.threads);
    faiss::IndexPQ index(int(o.d), size_t(o.m), 8);
    // Our codebooks, FAISS layout [M][ksub][dsub]: identical memory order.
    auto cb = pq.codebooks.contiguous();
    std::copy(cb.data_ptr<float>(), cb.data_ptr<float>() + cb.numel(), index.pq.centroids.begin());
    index.pq.compute_sdc_table();
    index.is_trained = true;
    // FAISS's own encoder against ours, on a sample (differences = float ties).
    const int64_t ns = std::min<int64_t>(o.nb, 100000);
    std::vector<uint8_t> faiss_codes(size_t(ns * o.m));
    index.pq.compute_codes(xb.data_ptr<float>(), faiss_codes.data(), ns);
    int64_t same_codes = 0;
    for (int64_t t = 0; t < ns * o.m; ++t) same_codes += faiss_codes[t] == ids.data_ptr<uint8_t>()[t];
    // The index holds exactly our codes.
    index.codes.assign(ids.data_ptr<uint8_t>(), ids.data_ptr<uint8_t>() + ids.numel());
    index.ntotal = o.nb;

    std::vector<float> fd(size_t(o.nq * o.k));
    std::vector<faiss::Index::idx_t> fi(size_t(o.nq * o.k));
    double faiss_s = 1e300;
    for (int r = 0; r < o.repeats; ++r) {
      t0 = Clock::now();
      index.search(o.nq, xq.data_ptr<float>(), o.k, fd.data(), fi.data());
      faiss_s = std::min(faiss_s, seconds_since(t0));
    }
    // Agreement: identical lists, overlap, and the k-th distance.
    int64_t identical = 0;
    double overlap = 0, kth_rel_diff = 0;
    for (int64_t i = 0; i < o.nq; ++i) {
      const int64_t* oi = ours.indices.data_ptr<int64_t>() + i * o.k;
      const faiss::Index::idx_t* f = fi.data() + i * o.k;
      identical += std::equal(oi, oi + o.k, f);
      std::vector<int64_t> a(oi, oi + o.k), b(f, f + o.k), both;
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(both));
      overlap += double(both.size()) / double(o.k);
      const double ok = ours.distances.data_ptr<float>()[i * o.k + o.k - 1];
      const double fk = fd[size_t(i * o.k + o.k - 1)];
      kth_rel_diff = std::max(kth_rel_diff, std::abs(ok - fk) / std::max(1e-30, std::abs(fk)));
    }
    j["faiss_s"] = faiss_s;
    j["faiss_qps"] = double(o.nq) / faiss_s;
    j["ratio"] = faiss_s / ours_s;
    j["code_agreement"] = double(same_codes) / double(ns * o.m);
    j["topk_identical"] = double(identical) / double(o.nq);
    j["topk_overlap"] = overlap / double(o.nq);
    j["kth_distance_max_rel_diff"] = kth_rel_diff;
  }
#else
  HL_CHECK(o.no_faiss, "bench pq: this build has no FAISS; pass --no-faiss");
#endif

  if (o.json) {
    std::cout << hashlab::json_text(j) << "\n";
    return;
  }
  std::cout << fmt::format("PQ ADC top-{}: nb={} nq={} d={} M={} ksub={} threads={} kernel={}\n",
                           o.k, o.nb, o.nq, o.d, o.m, o.ksub, o.threads,
                           j["kernel"].get<std::string>());
  std::cout << fmt::format("  train {:.2f} s, encode {:.2f} s\n", train_s, encode_s);
  std::cout << fmt::format("  ours : {:.3f} s  {:.1f} queries/s\n", ours_s, double(o.nq) / ours_s);
  if (j.contains("faiss_qps")) {
    std::cout << fmt::format("  faiss: {:.3f} s  {:.1f} queries/s\n", j["faiss_s"].get<double>(),
                             j["faiss_qps"].get<double>());
    std::cout << fmt::format("  ratio (ours / faiss speed): {:.2f}x\n", j["ratio"].get<double>());
    std::cout << fmt::format(
        "  agreement: codes {:.5f}, identical top-k lists {:.4f}, overlap {:.5f}, "
        "max k-th distance rel. diff {:.2e}\n",
        j["code_agreement"].get<double>(), j["topk_identical"].get<double>(),
        j["topk_overlap"].get<double>(), j["kth_distance_max_rel_diff"].get<double>());
  }
}

struct EvalBenchOpts {
  int64_t nb = 69000, nq = 1000;
  int bits = 64, classes = 10, threads = 2;
  uint64_t seed = 1;
  bool json = false;
};

void run_eval(const EvalBenchOpts& o) {
  HL_CHECK(o.bits >= 1 && o.nb >= 1 && o.nq >= 1 && o.classes >= 1, "bench eval: bad sizes");
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const int64_t bytes = (o.bits + 7) / 8;
  auto random_codes = [&](int64_t n) {
    auto c = torch::randint(256, {n, bytes}, gen, torch::kInt).to(torch::kUInt8);
    if (o.bits % 8) c.select(1, bytes - 1).bitwise_and_(int((1 << (o.bits % 8)) - 1));
    return c;
  };
  auto q = random_codes(o.nq), db = random_codes(o.nb);
  auto ql = torch::randint(o.classes, {o.nq}, gen, torch::kLong);
  auto dl = torch::randint(o.classes, {o.nb}, gen, torch::kLong);
  hashlab::eval::EvalOptions opts;
  opts.threads = o.threads;
  auto t0 = Clock::now();
  auto j = hashlab::eval::evaluate_hamming(q, db, o.bits, ql, dl, opts);
  j["seconds"] = seconds_since(t0);
  j["threads"] = o.threads;
  if (o.json) {
    std::cout << hashlab::json_text(j) << "\n";
  } else {
    std::cout << fmt::format(
        "evaluate_hamming: {} queries x {} database, {} bits, {} threads: {:.3f} s "
        "(mAP@all {:.4f}, tie-aware {:.4f})\n",
        o.nq, o.nb, o.bits, o.threads, j["seconds"].get<double>(), j["map_all"].get<double>(),
        j["map_all_tie_aware"].get<double>());
  }
}

void add(CLI::App& app) {
  auto* g = hashlab::cli::group(app, "bench", "Benchmarks");
  {
    auto* c = g->add_subcommand("pq", "Exact PQ ADC top-k on a Gaussian mixture: ours vs FAISS "
                                      "IndexPQ with the same codebooks and codes");
    auto o = std::make_shared<PQOpts>();
    c->add_option("--nb", o->nb, "database vectors")->capture_default_str();
    c->add_option("--nq", o->nq, "queries")->capture_default_str();
    c->add_option("--d", o->d, "dimension")->capture_default_str();
    c->add_option("--m", o->m, "subquantizers M")->capture_default_str();
    c->add_option("--ksub", o->ksub, "codewords per subquantizer")->capture_default_str();
    c->add_option("--k", o->k, "neighbours per query")->capture_default_str();
    c->add_option("--nt", o->nt, "training vectors (a prefix of the database)")
        ->capture_default_str();
    c->add_option("--iters", o->iters, "k-means iterations")->capture_default_str();
    c->add_option("--clusters", o->clusters, "mixture components of the data")
        ->capture_default_str();
    c->add_option("--threads", o->threads, "CPU threads (ours and FAISS)")
        ->check(CLI::Range(1, 4096))
        ->capture_default_str();
    c->add_option("--repeats", o->repeats, "timed runs; the best is reported")
        ->capture_default_str();
    c->add_option("--seed", o->seed, "random seed")->capture_default_str();
    c->add_flag("--no-faiss", o->no_faiss, "skip FAISS");
    c->add_flag("--json", o->json, "one JSON object instead of text");
    c->callback([o] { run_pq(*o); });
  }
  {
    auto* c = g->add_subcommand("eval", "Time evaluate_hamming (mAP@all, tie-aware AP, P/R) on "
                                        "random codes and labels");
    auto o = std::make_shared<EvalBenchOpts>();
    c->add_option("--nb", o->nb, "database codes")->capture_default_str();
    c->add_option("--nq", o->nq, "queries")->capture_default_str();
    c->add_option("--bits", o->bits, "bits per code")->capture_default_str();
    c->add_option("--classes", o->classes, "label classes")->capture_default_str();
    c->add_option("--threads", o->threads, "CPU threads")->check(CLI::Range(1, 4096))->capture_default_str();
    c->add_option("--seed", o->seed, "random seed")->capture_default_str();
    c->add_flag("--json", o->json, "one JSON object instead of text");
    c->callback([o] { run_eval(*o); });
  }
}

}  // namespace

HASHLAB_CLI_COMMAND(51, add);
