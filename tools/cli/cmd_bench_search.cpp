// hashlab bench search: our exact Hamming top-k against FAISS (and on CUDA
// against fp16 matmul + topk). See csrc/search/bench_search.h.
#include <iostream>
#include <memory>

#include "csrc/core/error.h"
#include "csrc/core/json_text.h"
#include "csrc/search/bench_search.h"
#include "csrc/search/hamming.h"
#include "tools/cli/commands.h"

namespace {

struct Opts {
  hashlab::search::BenchSearchOptions bench;
  bool json = false;
  bool no_faiss = false;
  std::string kernel = "auto";
};

void run(const Opts& opts) {
  hashlab::search::set_cpu_kernel(opts.kernel);
  auto o = opts.bench;
  o.faiss = !opts.no_faiss;
  const auto r = hashlab::search::run_bench_search(o);
  if (opts.json)
    std::cout << hashlab::json_text(hashlab::search::to_json(r)) << "\n";
  else
    std::cout << hashlab::search::to_text(r);
  if (!r.agree) throw hashlab::ExitStatus(2);
}

void add(CLI::App& app) {
  auto* g = hashlab::cli::group(app, "bench", "Benchmarks");
  auto* c = g->add_subcommand("search", "Exact Hamming top-k on random codes: ours vs FAISS "
                                        "(and CUDA vs fp16 matmul+topk)");
  auto opts = std::make_shared<Opts>();
  auto& b = opts->bench;
  c->add_option("--bits", b.bits, "bits per code")->capture_default_str();
  c->add_option("--nb", b.nb, "database codes")->capture_default_str();
  c->add_option("--nq", b.nq, "queries")->capture_default_str();
  c->add_option("--k", b.k, "neighbours per query")->capture_default_str();
  c->add_option("--threads", b.threads, "CPU threads (ours and FAISS)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  c->add_option("--seed", b.seed, "random seed")->capture_default_str();
  c->add_option("--repeats", b.repeats, "timed rounds, each the search then its roofline; the best of each is reported")
      ->capture_default_str();
  c->add_option("--device", b.device, "cpu, or cuda to also time the CUDA paths")
      ->capture_default_str();
  c->add_option("--kernel", opts->kernel, "CPU kernel: auto, avx512-vpopcntdq, avx2, scalar")
      ->capture_default_str();
  c->add_flag("--no-faiss", opts->no_faiss, "skip FAISS");
  c->add_flag("--json", opts->json, "one JSON object instead of text");
  c->callback([opts] { run(*opts); });

  auto io = std::make_shared<hashlab::search::BenchIndexOptions>();
  auto* x = g->add_subcommand("index", "Out-of-core search of a memory-mapped index file: "
                                       "Gdist/s and peak RSS (mapped with and without releasing "
                                       "scanned pages, and in memory)");
  x->add_option("--bits", io->bits, "bits per code")->capture_default_str();
  x->add_option("--nb", io->nb, "codes in the index file")->capture_default_str();
  x->add_option("--nq", io->nq, "queries")->capture_default_str();
  x->add_option("--k", io->k, "neighbours per query")->capture_default_str();
  x->add_option("--threads", io->threads, "CPU threads")->check(CLI::Range(1, 4096))->capture_default_str();
  x->add_option("--seed", io->seed, "random seed")->capture_default_str();
  x->add_option("--file", io->file, "index file (written with random codes unless it holds nb "
                                    "codes of --bits bits; default /tmp/hashlab_bench_<nb>x<bits>.hlc)");
  x->add_flag("!--no-memory", io->in_memory, "skip the in-memory search");
  x->callback([io] { std::cout << hashlab::json_text(hashlab::search::run_bench_index(*io), 2) << "\n"; });
}

}  // namespace

HASHLAB_CLI_COMMAND(50, add);
