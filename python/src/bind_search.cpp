// hashlab._C.BinaryIndex: csrc/search/binary_index.h as it is. The searches
// run with the GIL released, on the codes in place (a loaded index searches
// its memory-mapped file; queries from numpy are viewed, not copied).
#include <torch/extension.h>

#include "csrc/core/error.h"
#include "csrc/search/bench_search.h"
#include "csrc/search/binary_index.h"
#include "python/src/common.h"

namespace hashlab::python {

namespace hs = hashlab::search;

namespace {

void check_k(const hs::BinaryIndex& index, int64_t k) {
  HL_CHECK(index.size() > 0, "search: the index is empty (add codes first)");
  HL_CHECK(k >= 1 && k <= index.size(), "search: k must be in [1, {}] (the index size), got {}",
           index.size(), k);
}

}  // namespace

void bind_search(py::module_& m) {
  // `hashlab bench search --no-faiss` in this process (tools/bench_python_search.py
  // compares the Python search with it).
  m.def(
      "bench_search",
      [](int bits, int64_t nb, int64_t nq, int64_t k, int threads, int repeats, uint64_t seed) {
        hs::BenchSearchOptions o;
        o.bits = bits, o.nb = nb, o.nq = nq, o.k = k, o.threads = threads, o.repeats = repeats;
        o.seed = seed;
        o.faiss = false;
        nlohmann::json j;
        {
          py::gil_scoped_release release;
          j = hs::to_json(hs::run_bench_search(o));
        }
        return to_python(j);
      },
      py::arg("bits"), py::arg("nb"), py::arg("nq"), py::arg("k"), py::arg("threads"),
      py::arg("repeats"), py::arg("seed") = 1);

  py::class_<hs::BinaryIndex>(m, "BinaryIndex")
      .def(py::init([](int nbits) {
             HL_CHECK(nbits >= 1 && nbits <= hs::kMaxBits,
                      "BinaryIndex: nbits must be in [1, {}], got {}", hs::kMaxBits, nbits);
             return hs::BinaryIndex(nbits);
           }),
           py::arg("nbits"))
      .def_static(
          "load",
          [](const std::string& path, bool mmap, bool verify, bool release_pages) {
            hs::BinaryIndex::LoadOptions o;
            o.mmap = mmap;
            o.verify_checksum = verify;
            o.release_pages = release_pages;
            return hs::BinaryIndex::load(path, o);
          },
          py::arg("path"), py::arg("mmap") = true, py::arg("verify") = true,
          py::arg("release_pages") = false, py::call_guard<py::gil_scoped_release>())
      .def("save", &hs::BinaryIndex::save, py::arg("path"),
           py::call_guard<py::gil_scoped_release>())
      .def(
          "add",
          [](hs::BinaryIndex& self, const torch::Tensor& codes) {
            const auto c = check_codes(codes, self.nbits(), "codes");
            py::gil_scoped_release release;
            self.add(c);
          },
          py::arg("codes"))
      .def(
          "search",
          [](const hs::BinaryIndex& self, const torch::Tensor& queries, int64_t k, int threads) {
            const auto q = check_codes(queries, self.nbits(), "queries");
            check_k(self, k);
            HL_CHECK(threads >= 0, "search: threads must be >= 0 (0: all), got {}", threads);
            hs::TopK r;
            {
              py::gil_scoped_release release;
              r = self.search(q, k, threads);
            }
            return py::make_tuple(r.distances, r.indices);
          },
          py::arg("queries"), py::arg("k"), py::arg("threads") = 0)
      .def(
          "range_search",
          [](const hs::BinaryIndex& self, const torch::Tensor& queries, int radius, int threads,
             int64_t max_results) {
            const auto q = check_codes(queries, self.nbits(), "queries");
            HL_CHECK(radius >= 0, "range_search: radius must be >= 0 (a Hamming distance), got {}",
                     radius);
            HL_CHECK(threads >= 0, "range_search: threads must be >= 0 (0: all), got {}", threads);
            HL_CHECK(max_results >= 1, "range_search: max_results must be >= 1, got {}",
                     max_results);
            hs::RadiusResult r;
            {
              py::gil_scoped_release release;
              try {
                r = self.range_search(q, radius, threads, max_results);
              } catch (const hs::RadiusLimitExceeded& e) {
                throw hs::RadiusLimitExceeded(
                    fmt::format("range_search: radius {} finds more than max_results={} results "
                                "({} queries over {} codes); lower the radius, search fewer "
                                "queries at a time, or raise max_results",
                                radius, max_results, q.size(0), self.size()),
                    e.max_results);
              }
            }
            return py::make_tuple(r.offsets, r.distances, r.indices);
          },
          py::arg("queries"), py::arg("radius"), py::arg("threads") = 0,
          py::arg("max_results") = hs::kDefaultMaxRadiusResults)
      .def_property_readonly("nbits", &hs::BinaryIndex::nbits)
      .def_property_readonly("ntotal", &hs::BinaryIndex::size)
      .def_property_readonly("path", &hs::BinaryIndex::path)
      .def_property_readonly("mapped", &hs::BinaryIndex::mapped)
      .def_property_readonly("codes", [](const hs::BinaryIndex& self) {
        return self.codes().defined()
                   ? self.codes()
                   : torch::empty({0, codes::code_bytes(self.nbits())}, torch::kUInt8);
      });
}

}  // namespace hashlab::python
