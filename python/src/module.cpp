// The `hashlab._C` extension: pybind11 bindings over the C++ libraries
// (hashlab_app and below). The public, documented API is the Python package
// python/hashlab, which wraps these; nothing here reimplements a feature.
//
// Errors: hashlab::Error (and the c10::Error of an op-boundary check) become
// hashlab.Error, a ValueError, with the same one-line message the CLI prints;
// search::RadiusLimitExceeded becomes hashlab.RadiusLimitExceeded, a
// subclass of it.
#include <torch/extension.h>

#include <filesystem>

#include "csrc/core/error.h"
#include "csrc/search/hamming.h"
#include "python/src/common.h"

namespace hashlab::python {

namespace {
std::string lower_dtype(const torch::Tensor& t) {
  std::string s = c10::toString(t.scalar_type());
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (s == "byte") return "uint8";
  if (s == "char") return "int8";
  if (s == "short") return "int16";
  if (s == "int") return "int32";
  if (s == "long") return "int64";
  if (s == "float") return "float32";
  if (s == "double") return "float64";
  if (s == "half") return "float16";
  return s;
}
}  // namespace

std::string describe(const torch::Tensor& t) {
  if (!t.defined()) return "None";
  return fmt::format("{} [{}]", lower_dtype(t), fmt::join(t.sizes(), ", "));
}

torch::Tensor check_codes(const torch::Tensor& t, int nbits, const char* arg) {
  const int64_t bytes = codes::code_bytes(nbits);
  HL_CHECK(t.defined(), "{}: expected uint8 codes [n, {}], got None", arg, bytes);
  HL_CHECK(t.device().is_cpu(), "{}: codes must be on the CPU, got a tensor on {}", arg,
           t.device().str());
  HL_CHECK(t.scalar_type() == torch::kUInt8 && t.dim() == 2 && t.size(1) == bytes,
           "{}: expected uint8 codes [n, {}] ({}-bit codes packed 8 per byte, pack_bits makes "
           "them), got {}",
           arg, bytes, nbits, describe(t));
  if (nbits % 8 != 0 && t.size(0) > 0) {
    // Bits past nbits in the last byte must be zero (codes.h): the search
    // would count them.
    const uint8_t mask = static_cast<uint8_t>(0xff << (nbits % 8));
    const auto bad = t.select(1, bytes - 1).bitwise_and(mask).nonzero();
    HL_CHECK(bad.size(0) == 0,
             "{}: code {} has bits set past bit {} in its last byte ({}-bit codes keep them zero)",
             arg, bad.size(0) ? bad[0][0].item<int64_t>() : 0, nbits - 1, nbits);
  }
  return t.contiguous();
}

torch::Tensor check_labels(const torch::Tensor& t, int64_t n, const char* arg) {
  HL_CHECK(t.defined(), "{}: expected labels for {} items, got None", arg, n);
  HL_CHECK(t.device().is_cpu(), "{}: labels must be on the CPU, got a tensor on {}", arg,
           t.device().str());
  HL_CHECK(t.dim() == 1 || t.dim() == 2,
           "{}: expected class ids [n] or multi-hot labels [n, C], got {}", arg, describe(t));
  HL_CHECK(t.size(0) == n, "{}: {} labels for {} codes", arg, t.size(0), n);
  const bool integral = t.scalar_type() == torch::kBool || c10::isIntegralType(t.scalar_type(), false);
  HL_CHECK(integral, "{}: labels must be integers (class ids or 0/1 multi-hot), got {}", arg,
           describe(t));
  if (t.dim() == 1) {
    const auto l = t.to(torch::kLong);
    if (n > 0) {
      const int64_t lo = l.min().item<int64_t>(), hi = l.max().item<int64_t>();
      HL_CHECK(lo >= 0 && hi < (int64_t{1} << 24),
               "{}: class ids must be in [0, 2^24), got {} at index {}", arg, lo < 0 ? lo : hi,
               (lo < 0 ? l.argmin() : l.argmax()).item<int64_t>());
    }
    return l.contiguous();
  }
  const auto l = t.to(torch::kLong);
  const auto bad = (l.ne(0) & l.ne(1)).nonzero();
  HL_CHECK(bad.size(0) == 0, "{}: multi-hot labels must be 0 or 1, got {} at [{}, {}]", arg,
           bad.size(0) ? l[bad[0][0]][bad[0][1]].item<int64_t>() : 0,
           bad.size(0) ? bad[0][0].item<int64_t>() : 0, bad.size(0) ? bad[0][1].item<int64_t>() : 0);
  return l.to(torch::kUInt8).contiguous();
}

torch::Tensor check_features(const torch::Tensor& t, int64_t n, const char* arg) {
  HL_CHECK(t.defined(), "{}: expected features [n, d] for {} items, got None", arg, n);
  HL_CHECK(t.device().is_cpu(), "{}: features must be on the CPU, got a tensor on {}", arg,
           t.device().str());
  HL_CHECK(t.dim() == 2 && c10::isFloatingType(t.scalar_type()),
           "{}: expected floating-point features [n, d], got {}", arg, describe(t));
  HL_CHECK(t.size(0) == n, "{}: features of {} items for {} codes", arg, t.size(0), n);
  const auto f = t.to(torch::kFloat32).contiguous();
  HL_CHECK(f.numel() == 0 || f.isfinite().all().item<bool>(),
           "{}: features hold a NaN or infinity (item {})", arg,
           f.isfinite().all(1).logical_not().nonzero()[0][0].item<int64_t>());
  return f;
}

py::object to_python(const nlohmann::json& j) {
  static py::handle loads = py::object(py::module_::import("json").attr("loads")).release();
  return loads(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace hashlab::python

namespace hp = hashlab::python;

PYBIND11_MODULE(_C, m) {
  m.doc() = "hashlab's C++ core (use the `hashlab` package, not this module)";
  static py::handle error =
      py::exception<hashlab::Error>(m, "Error", PyExc_ValueError).release();
  static py::handle radius_error =
      py::exception<hashlab::search::RadiusLimitExceeded>(m, "RadiusLimitExceeded", error.ptr())
          .release();
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const hashlab::search::RadiusLimitExceeded& e) {
      PyErr_SetString(radius_error.ptr(), e.what());
    } catch (const hashlab::Error& e) {
      PyErr_SetString(error.ptr(), e.what());
    } catch (const hashlab::ExitStatus& e) {
      PyErr_SetString(error.ptr(), fmt::format("stopped with exit status {}", e.code).c_str());
    } catch (const c10::Error& e) {
      PyErr_SetString(error.ptr(), e.what_without_backtrace());
    } catch (const std::filesystem::filesystem_error& e) {
      // A path that cannot be made or written (the CLI prints these too).
      PyErr_SetString(error.ptr(), e.what());
    }
  });

  m.def("set_num_threads", [](int n) {
    HL_CHECK(n >= 1, "set_num_threads: n must be >= 1, got {}", n);
    at::set_num_threads(n);
  });
  m.def("get_num_threads", [] { return at::get_num_threads(); });
  m.def("cpu_kernel", [] { return std::string(hashlab::search::cpu_kernel_name()); });
  m.def("available_cpu_kernels", &hashlab::search::available_cpu_kernels);
  m.def("set_cpu_kernel", &hashlab::search::set_cpu_kernel);

  hp::bind_search(m);
  hp::bind_codes(m);
  hp::bind_eval(m);
  hp::bind_runs(m);
}
