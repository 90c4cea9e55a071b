// Shared by the bindings of the `hashlab._C` extension (python/src): the
// argument checks at the Python boundary and the conversions of results.
//
// Arrays arrive as torch tensors: the Python layer (python/hashlab) turns a
// numpy array into a tensor sharing its memory (torch.from_numpy), and turns
// results back the same way, so nothing is copied on either side when the
// layout already fits. Every check names the Python argument, what it must
// be and what it was ("queries: expected uint8 codes [n, 8] for 64-bit codes,
// got float32 [10, 64]"), and raises hashlab.Error.
#pragma once

#include <string>

#include <nlohmann/json.hpp>
#include <pybind11/pybind11.h>
#include <torch/torch.h>

#include "csrc/codes/code_file.h"
#include "csrc/codes/codes.h"

namespace hashlab::python {

namespace py = pybind11;

// "uint8 [10, 8]"
std::string describe(const torch::Tensor& t);

// Packed binary codes of `nbits` bits: a CPU uint8 tensor [n, ceil(nbits/8)],
// returned contiguous (a copy only when it was not).
torch::Tensor check_codes(const torch::Tensor& t, int nbits, const char* arg);

// Labels for `n` items: integer [n] class ids, or multi-hot [n, C] of 0/1
// (bool or any integer type). Returned as int64 [n] or uint8 [n, C].
torch::Tensor check_labels(const torch::Tensor& t, int64_t n, const char* arg);

// Real-valued features for `n` items: [n, d] of a floating type, as float32.
torch::Tensor check_features(const torch::Tensor& t, int64_t n, const char* arg);

// A JSON value as the Python object json.loads would make of its text (the
// same doubles, to the last digit, as the CLI prints).
py::object to_python(const nlohmann::json& j);

// Registers the bindings of each part on the module.
void bind_search(py::module_& m);
void bind_codes(py::module_& m);
void bind_eval(py::module_& m);
void bind_runs(py::module_& m);

}  // namespace hashlab::python
