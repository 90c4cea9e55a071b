// hashlab search: exact Hamming top-k or radius search between two binary
// code files (.hlc, csrc/codes/code_file.h); hashlab index build / info /
// search (a BinaryIndex, csrc/search/binary_index.h, saved as a .hlc file);
// and hashlab codes export-faiss / import-faiss / info.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "app/run_dir.h"
#include "csrc/codes/code_file.h"
#include "csrc/codes/code_file_info.h"
#include "csrc/core/error.h"
#include "csrc/core/fs_util.h"
#include "csrc/core/strings.h"
#include "csrc/core/distributed.h"
#include "csrc/core/json_text.h"
#include "csrc/core/logging.h"
#include "csrc/search/binary_index.h"
#include "csrc/search/sharded_search.h"
#include "csrc/search/hamming.h"
#include "datasets/array_files.h"
#include "tools/cli/commands.h"

namespace {

namespace hc = hashlab::codes;
namespace hs = hashlab::search;

struct SearchOpts {
  std::string db, queries, out;
  int64_t k = 10;
  int radius = -1;
  int64_t max_results = hs::kDefaultMaxRadiusResults;
  bool k_given = false, radius_given = false;
  int threads = 0;
  std::string device = "cpu";
  bool no_mmap = false, no_verify = false, release_pages = false;
  int shards = 1;  // > 1: start that many local ranks (index search)
};


// `info` (when given) gets the file's header.
hc::BinaryCodes load_binary(const std::string& path, const char* what,
                            hc::CodeFileInfo* info = nullptr) {
  const auto header = hc::read_code_file_info(path);
  if (header.kind != hc::CodeKind::binary)
    hashlab::fail("{} {}: holds PQ codes; hashlab search ranks binary codes", what, path);
  if (info) *info = header;
  return hc::read_binary_codes(path);
}

// A code file's contents, for the ranks' fingerprint: its header's payload crc32.
std::string contents(const hc::CodeFileInfo& info) {
  return fmt::format("crc32 {:08x} of {} bytes", info.crc32, info.payload_bytes);
}

void run_search(const SearchOpts& o) {
  HL_CHECK(!(o.k_given && o.radius_given),
           "hashlab search: give --k (top-k) or --radius (everything within it), not both");
  HL_CHECK(!o.radius_given || o.radius >= 0, "--radius must be >= 0 (a Hamming distance), got {}",
           o.radius);
  HL_CHECK(o.device == "cpu" || o.device == "cuda", "--device must be cpu or cuda, got '{}'", o.device);
  const auto db_info = hc::read_code_file_info(o.db);
  if (db_info.kind != hc::CodeKind::binary)
    hashlab::fail("{}: holds PQ codes; a binary index ranks binary codes", o.db);
  hs::BinaryIndex::LoadOptions lo;
  lo.mmap = !o.no_mmap;
  lo.verify_checksum = !o.no_verify;
  lo.release_pages = o.release_pages;
  const auto env = hashlab::dist::DistEnv::from_env();
  if (o.shards > 1 && !env.distributed()) {
    // The launcher: the ranks run this same command without --shards.
    const int rc = hashlab::dist::launch_local(o.shards, hashlab::cli::raw_args_without("--shards"));
    if (rc != 0) throw hashlab::ExitStatus(rc);
    return;
  }
  hs::BinaryIndex index = hs::BinaryIndex::load(o.db, lo);
  HL_CHECK(index.size() > 0, "{}: the index is empty (0 codes): nothing to search", o.db);
  hc::CodeFileInfo q_info{};
  const auto q = load_binary(o.queries, "--queries", &q_info);
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  if (env.distributed()) {
    // One rank of a sharded search. The ranks first agree on what they
    // search (the index and queries each opened, k), or all refuse: merged
    // results of ranks that searched different files would be wrong, and
    // candidates of another size abort Gloo's transport.
    group = hashlab::dist::make_gloo_group(env);
    hashlab::dist::agree_on_fingerprint(
        *group,
        {{"--db (codes)", std::to_string(index.size())},
         {"--db (bits)", std::to_string(index.nbits())},
         {"--db (contents)", contents(db_info)},
         {"--queries (codes)", std::to_string(q.codes.size(0))},
         {"--queries (bits)", std::to_string(q.nbits)},
         {"--queries (contents)", contents(q_info)},
         {"--k", std::to_string(o.k)},
         {"--radius", o.radius_given ? std::to_string(o.radius) : "(not set)"},
         {"--device", o.device}},
        "sharded search");
  }
  HL_CHECK(index.nbits() == q.nbits, "{} has {}-bit codes but --queries {} has {}-bit codes", o.db,
           index.nbits(), o.queries, q.nbits);
  const torch::Device dev = o.device == "cuda" ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  if (dev.is_cuda()) index = index.to(dev);
  const torch::Tensor qt = q.codes.to(dev);
  const bool radius = o.radius_given;
  nlohmann::json j = {{"db", o.db}, {"queries", o.queries}, {"nbits", index.nbits()}};
  torch::Tensor offsets, indices, distances;
  const auto t0 = std::chrono::steady_clock::now();
  if (env.distributed()) {
    // One rank of a sharded search: this rank's contiguous shard, the
    // candidates all-gathered and merged (exact); rank 0 writes the results.
    HL_CHECK(!radius, "{}--radius is not sharded (its results are ragged); search with one process",
             hashlab::dist::rank_prefix(env));
    HL_CHECK(!dev.is_cuda(), "{}a sharded search runs on the CPU (Gloo)", hashlab::dist::rank_prefix(env));
    HL_CHECK(o.k >= 1 && o.k <= index.size(), "--k must be in [1, {}] (the database size), got {}",
             index.size(), o.k);
    const auto [lo_row, hi_row] = hs::shard_range(index.size(), env.rank, env.world_size);
    const auto shard = index.shard(lo_row, hi_row);
    hashlab::dist::wait(group->barrier(), *group, "sharded search", "the barrier before the search");
    const auto s0 = std::chrono::steady_clock::now();
    auto r = hs::sharded_search(*group, shard, lo_row, index.size(), qt, o.k, o.threads);
    hashlab::dist::wait(group->barrier(), *group, "sharded search", "the barrier after the search");
    j["search_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
    j["ranks"] = env.world_size;
    j["k"] = o.k;
    hashlab::log().info("{}searched codes [{}, {}) in {:.3f} s", hashlab::dist::rank_prefix(env),
                        lo_row, hi_row, j["search_seconds"].get<double>());
    if (env.rank != 0) return;
    indices = r.indices, distances = r.distances;
  } else if (radius) {
    HL_CHECK(!hashlab::ends_with(o.out, ".npy"), "--out {}: radius results are ragged; write .json", o.out);
    HL_CHECK(o.max_results >= 1, "--max-results must be >= 1, got {}", o.max_results);
    hs::RadiusResult r;
    try {
      r = index.range_search(qt, o.radius, o.threads, o.max_results);
    } catch (const hs::RadiusLimitExceeded&) {
      hashlab::fail("--radius {} finds more than --max-results {} results ({} queries over the {} "
                    "codes of {}); lower --radius, search fewer queries at a time, or raise "
                    "--max-results",
                    o.radius, o.max_results, qt.size(0), index.size(), o.db);
    }
    offsets = r.offsets.cpu(), indices = r.indices.cpu(), distances = r.distances.cpu();
    j["radius"] = o.radius;
  } else {
    HL_CHECK(o.k >= 1 && o.k <= index.size(), "--k must be in [1, {}] (the database size), got {}",
             index.size(), o.k);
    auto r = index.search(qt, o.k, o.threads);
    indices = r.indices.cpu(), distances = r.distances.cpu();
    j["k"] = o.k;
  }
  // The queries are mapped too: results from a query file that changed
  // under the search are refused (the index checks its own file).
  q.check_unchanged("during the search");
  if (!j.contains("search_seconds"))
    j["search_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  hashlab::log().info("searched {} queries x {} codes in {:.4f} s ({:.2f} Gdist/s{})", qt.size(0),
                      index.size(), j["search_seconds"].get<double>(),
                      double(qt.size(0)) * double(index.size()) / j["search_seconds"].get<double>() / 1e9,
                      env.distributed() ? fmt::format(", {} ranks", env.world_size) : "");
  if (hashlab::ends_with(o.out, ".npy")) {
    hashlab::data::write_npy(o.out, indices);
    const std::string dist_path = o.out.substr(0, o.out.size() - 4) + ".distances.npy";
    hashlab::data::write_npy(dist_path, distances);
    std::cerr << fmt::format("wrote {} (indices) and {} (distances)\n", o.out, dist_path);
    return;
  }
  auto& results = j["results"] = nlohmann::json::array();
  for (int64_t i = 0; i < qt.size(0); ++i) {
    const int64_t b = radius ? offsets[i].item<int64_t>() : i * o.k;
    const int64_t e = radius ? offsets[i + 1].item<int64_t>() : (i + 1) * o.k;
    const auto idx = indices.reshape({-1}).slice(0, b, e);
    const auto dist = distances.reshape({-1}).slice(0, b, e);
    results.push_back({{"indices", std::vector<int64_t>(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.numel())},
                       {"distances", std::vector<int32_t>(dist.data_ptr<int32_t>(), dist.data_ptr<int32_t>() + dist.numel())}});
  }
  if (o.out.empty()) {
    std::cout << hashlab::json_text(j) << "\n";
    return;
  }
  HL_CHECK(hashlab::ends_with(o.out, ".json"), "--out {}: write .json or .npy", o.out);
  hashlab::atomic_write(o.out, hashlab::json_text(j) + "\n");
}

struct IndexBuildOpts {
  std::vector<std::string> inputs;
  std::string out;
};

void run_index_build(const IndexBuildOpts& o) {
  namespace fs = std::filesystem;
  hs::BinaryIndex index;
  for (const auto& in : o.inputs) {
    const std::string path =
        fs::is_directory(in) ? hashlab::RunDir(in).database_codes() : in;
    const auto c = load_binary(path, "input");
    HL_CHECK(c.nbits <= hs::BinaryIndex::kMaxBits,
             "{}: {}-bit codes; a binary index holds codes of 1 to {} bits", path, c.nbits,
             hs::BinaryIndex::kMaxBits);
    if (index.nbits() == 0) index = hs::BinaryIndex(c.nbits);
    HL_CHECK(c.nbits == index.nbits(), "{} has {}-bit codes but {} has {}-bit codes", path, c.nbits,
             o.inputs.front(), index.nbits());
    index.add(c.codes);
    c.check_unchanged("while the index was built");
  }
  index.save(o.out);
  std::cout << hashlab::json_text({{"index", o.out}, {"nbits", index.nbits()},
                                    {"count", index.size()}, {"inputs", o.inputs}})
            << "\n";
}

void run_index_info(const std::string& path) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto index = hs::BinaryIndex::load(path);  // mapped, checksum checked
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << hashlab::json_text({{"index", path}, {"nbits", index.nbits()},
                                    {"count", index.size()},
                                    {"bytes_per_code", index.codes().size(1)},
                                    {"bytes", index.codes().numel()}, {"checksum", "ok"},
                                    {"load_seconds", s}})
            << "\n";
}

struct ConvertOpts {
  std::string in, out;
};

void add(CLI::App& app) {
  auto* s = app.add_subcommand("search", "Exact Hamming top-k (or radius) search between code files");
  auto o = std::make_shared<SearchOpts>();
  s->add_option("--db", o->db, "database codes (.hlc)")->required();
  s->add_option("--queries", o->queries, "query codes (.hlc)")->required();
  auto* k_opt = s->add_option("--k", o->k, "neighbours per query")->capture_default_str();
  auto* r_opt =
      s->add_option("--radius", o->radius, "instead of top-k: everything within this distance");
  s->add_option("--max-results", o->max_results,
                "--radius: fail past this many results, all queries together (memory)")
      ->capture_default_str();
  s->add_option("--out", o->out, "results.json, or results.npy (+ results.distances.npy); default: JSON on stdout");
  s->add_option("--threads", o->threads, "CPU threads (0 = all)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  s->add_option("--device", o->device, "cpu or cuda")->capture_default_str();
  s->callback([o, k_opt, r_opt] {
    o->k_given = k_opt->count() > 0;
    o->radius_given = r_opt->count() > 0;
    run_search(*o);
  });

  auto* ix = hashlab::cli::group(app, "index", "A binary index: build once, search many times");
  auto bo = std::make_shared<IndexBuildOpts>();
  auto* b = ix->add_subcommand("build", "Build an index from code files (concatenated in order)");
  b->add_option("inputs", bo->inputs, "binary code files (.hlc), or run directories (their "
                                      "codes/database.hlc)")->required();
  b->add_option("--out", bo->out, "index file (.hlc)")->required();
  b->callback([bo] { run_index_build(*bo); });
  auto ipath = std::make_shared<std::string>();
  auto* ii = ix->add_subcommand("info", "Load an index (checking its checksum) and describe it as JSON");
  ii->add_option("index", *ipath, "index file (.hlc)")->required();
  ii->callback([ipath] { run_index_info(*ipath); });
  auto so = std::make_shared<SearchOpts>();
  auto* is = ix->add_subcommand("search", "Exact top-k (or radius) search of query codes in an index");
  is->add_option("index", so->db, "index file (.hlc)")->required();
  is->add_option("--queries", so->queries, "query codes (.hlc)")->required();
  auto* ik = is->add_option("--k", so->k, "neighbours per query")->capture_default_str();
  auto* ir = is->add_option("--radius", so->radius, "instead of top-k: everything within this distance");
  is->add_option("--max-results", so->max_results,
                 "--radius: fail past this many results, all queries together (memory)")
      ->capture_default_str();
  is->add_option("--out", so->out, "results.json, or results.npy (+ results.distances.npy); default: JSON on stdout");
  is->add_option("--threads", so->threads, "CPU threads (0 = all)")->check(CLI::Range(0, 4096));
  is->add_option("--device", so->device, "cpu or cuda")->capture_default_str();
  is->add_flag("--no-mmap", so->no_mmap, "read the index into memory instead of mapping it");
  is->add_flag("--no-verify", so->no_verify, "skip the payload checksum (a large mapped index)");
  is->add_option("--shards", so->shards,
                 "start this many local processes, each searching a contiguous shard (c10d "
                 "Gloo; exact). Under torchrun-style RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT "
                 "this process is one of them")
      ->check(CLI::Range(1, 1024));
  is->add_flag("--release-pages", so->release_pages,
               "drop scanned pages from memory as the search goes (an index larger than memory)");
  is->callback([so, ik, ir] {
    so->k_given = ik->count() > 0;
    so->radius_given = ir->count() > 0;
    run_search(*so);
  });

  auto* g = hashlab::cli::group(app, "codes", "Code files: inspect, convert");
  auto conv = std::make_shared<ConvertOpts>();
  auto* ex = g->add_subcommand("export-faiss", "Write binary codes as a FAISS IndexBinaryFlat file");
  ex->add_option("--in", conv->in, "codes (.hlc)")->required();
  ex->add_option("--out", conv->out, "FAISS index file")->required();
  ex->callback([conv] { hc::export_faiss_binary(conv->out, load_binary(conv->in, "--in")); });
  auto* im = g->add_subcommand("import-faiss", "Read a FAISS IndexBinaryFlat file into a code file");
  im->add_option("--in", conv->in, "FAISS index file")->required();
  im->add_option("--out", conv->out, "codes (.hlc)")->required();
  im->callback([conv] { hc::write_binary_codes(conv->out, hc::import_faiss_binary(conv->in)); });
  auto info_path = std::make_shared<std::string>();
  auto* info = g->add_subcommand("info", "Print a code file's header as JSON");
  info->add_option("file", *info_path, "code file (.hlc)")->required();
  info->callback([info_path] {
    nlohmann::json j = {{"file", *info_path}};
    j.update(hc::to_json(hc::read_code_file_info(*info_path)));
    std::cout << hashlab::json_text(j) << "\n";
  });
}

}  // namespace

HASHLAB_CLI_COMMAND(40, add);
