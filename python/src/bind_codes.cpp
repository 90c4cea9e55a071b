// hashlab._C.Codes and the code-file functions: csrc/codes (code_file.h,
// codes.h). A code set read from a file views the memory-mapped payload.
#include <torch/extension.h>

#include "csrc/codes/code_file.h"
#include "csrc/codes/code_file_info.h"
#include "csrc/codes/codes.h"
#include "csrc/core/error.h"
#include "csrc/search/hamming.h"
#include "datasets/gist.h"
#include "python/src/common.h"

namespace hashlab::python {

namespace hc = hashlab::codes;

namespace {

hc::Codes make_binary(const torch::Tensor& packed, int nbits) {
  HL_CHECK(nbits >= 1 && nbits <= 65536, "Codes.binary: nbits must be in [1, 65536], got {}", nbits);
  hc::BinaryCodes b;
  b.nbits = nbits;
  b.codes = check_codes(packed, nbits, "codes");
  return hc::Codes::binary(std::move(b));
}

hc::Codes make_pq(const torch::Tensor& codebooks, const torch::Tensor& ids) {
  HL_CHECK(codebooks.defined() && codebooks.device().is_cpu() && codebooks.dim() == 3 &&
               c10::isFloatingType(codebooks.scalar_type()),
           "Codes.pq: codebooks: expected float32 [M, K, dsub] on the CPU, got {}",
           describe(codebooks));
  const int64_t M = codebooks.size(0), K = codebooks.size(1), dsub = codebooks.size(2);
  HL_CHECK(M >= 1 && K >= 1 && K <= 256 && dsub >= 1,
           "Codes.pq: codebooks: M >= 1, 1 <= K <= 256 and dsub >= 1, got [{}, {}, {}]", M, K, dsub);
  HL_CHECK(ids.defined() && ids.device().is_cpu() && ids.scalar_type() == torch::kUInt8 &&
               ids.dim() == 2 && ids.size(1) == M,
           "Codes.pq: ids: expected uint8 [n, {}] (one codeword id per subspace) on the CPU, got {}",
           M, describe(ids));
  if (ids.numel() > 0)
    HL_CHECK(ids.max().item<int64_t>() < K, "Codes.pq: ids: codeword id {} >= K = {}",
             ids.max().item<int64_t>(), K);
  hc::PQCodes p;
  p.M = static_cast<int>(M);
  p.K = static_cast<int>(K);
  p.dsub = static_cast<int>(dsub);
  p.codebooks = codebooks.to(torch::kFloat32).contiguous();
  p.ids = ids.contiguous();
  return hc::Codes::pq(std::move(p));
}

torch::Tensor pack_bits(const torch::Tensor& bits) {
  HL_CHECK(bits.defined() && bits.device().is_cpu() && bits.dim() == 2,
           "pack_bits: bits: expected [n, nbits] of ±1 or {{0, 1}} on the CPU, got {}",
           describe(bits));
  HL_CHECK(bits.size(1) >= 1, "pack_bits: bits: no bits per code (shape {})", describe(bits));
  const auto t = bits.to(torch::kFloat64);
  const auto pm = t.eq(1) | t.eq(-1), zo = t.eq(0) | t.eq(1);
  if (!pm.all().item<bool>() && !zo.all().item<bool>()) {
    const auto odd = (pm | zo).logical_not().nonzero();
    if (odd.size(0) > 0)
      fail("pack_bits: bits must be ±1 or {{0, 1}}, got {} at [{}, {}]",
           t[odd[0][0]][odd[0][1]].item<double>(), odd[0][0].item<int64_t>(),
           odd[0][1].item<int64_t>());
    fail("pack_bits: bits mix -1 and 0; give ±1 or {{0, 1}}, not both");
  }
  return hc::pack_signs(torch::where(t.gt(0), 1.0f, -1.0f).to(torch::kFloat32));
}

}  // namespace

void bind_codes(py::module_& m) {
  py::class_<hc::Codes>(m, "Codes")
      .def_static("binary", &make_binary, py::arg("codes"), py::arg("nbits"))
      .def_static("pq", &make_pq, py::arg("codebooks"), py::arg("ids"))
      .def_property_readonly("kind", [](const hc::Codes& c) {
        return c.kind() == hc::CodeKind::pq ? "pq" : "binary";
      })
      .def_property_readonly("nbits", &hc::Codes::nbits)
      .def("__len__", &hc::Codes::size)
      .def_property_readonly("data", &hc::Codes::data)
      .def_property_readonly("codebooks", [](const hc::Codes& c) {
        return c.kind() == hc::CodeKind::pq ? c.as_pq().codebooks : torch::Tensor();
      })
      .def_property_readonly("M", [](const hc::Codes& c) {
        return c.kind() == hc::CodeKind::pq ? c.as_pq().M : 0;
      })
      .def_property_readonly("K", [](const hc::Codes& c) {
        return c.kind() == hc::CodeKind::pq ? c.as_pq().K : 0;
      })
      .def_property_readonly("dsub", [](const hc::Codes& c) {
        return c.kind() == hc::CodeKind::pq ? c.as_pq().dsub : 0;
      })
      .def("describe", &hc::Codes::describe);

  m.def("read_codes", &hc::read_codes, py::arg("path"), py::call_guard<py::gil_scoped_release>());
  m.def("write_codes", &hc::write_codes, py::arg("path"), py::arg("codes"),
        py::call_guard<py::gil_scoped_release>());
  m.def("code_file_info", [](const std::string& path) {
    return to_python(hc::to_json(hc::read_code_file_info(path)));
  }, py::arg("path"));
  m.def("pack_bits", &pack_bits, py::arg("bits"));
  m.def(
      "gist",
      [](const torch::Tensor& images, int64_t image_size, std::vector<int64_t> orientations,
         int64_t blocks, double prefilter_fc, int64_t boundary, const std::string& colour) {
        HL_CHECK(images.device().is_cpu() && (images.scalar_type() == torch::kUInt8 ||
                                              c10::isFloatingType(images.scalar_type())),
                 "gist: images: expected uint8 or floating images [N, C, H, W] on the CPU, got {}",
                 describe(images));
        data::GistOptions o;  // compute_gist checks the options
        o.image_size = image_size, o.orientations = std::move(orientations), o.blocks = blocks;
        o.prefilter_fc = prefilter_fc, o.boundary = boundary, o.colour = colour;
        py::gil_scoped_release release;
        return data::compute_gist(images, o);
      },
      py::arg("images"), py::arg("image_size"), py::arg("orientations"), py::arg("blocks"),
      py::arg("prefilter_fc"), py::arg("boundary"), py::arg("colour"));
  m.def(
      "pack_signs",
      [](const torch::Tensor& x) {
        HL_CHECK(x.defined() && x.device().is_cpu() && x.dim() == 2 &&
                     c10::isFloatingType(x.scalar_type()),
                 "pack_signs: x: expected real values [n, nbits] on the CPU, got {}", describe(x));
        return hc::pack_signs(x);
      },
      py::arg("x"));
  m.def(
      "unpack_bits",
      [](const torch::Tensor& packed, int nbits, bool signed_) {
        HL_CHECK(nbits >= 1 && nbits <= 65536, "unpack_bits: nbits must be in [1, 65536], got {}",
                 nbits);
        const auto c = check_codes(packed, nbits, "codes");
        const auto pm = hc::unpack_bits(c, nbits);
        return signed_ ? pm : pm.gt(0).to(torch::kUInt8);
      },
      py::arg("codes"), py::arg("nbits"), py::arg("signed") = true);
}

}  // namespace hashlab::python
