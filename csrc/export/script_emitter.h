// TorchScript export without Python.
//
// LibTorch cannot script or trace a torch::nn::Module from C++. What it can
// do is build a torch::jit::Module, register tensors on it and compile
// TorchScript source with define(). So every exportable network writes its
// own forward as TorchScript text through a ScriptEmitter, registering its
// trained tensors under its state_dict names ('.' -> '_'), and build_hasher()
// wraps that body with the common preprocessing, sign and bit packing.
//
// The exported hasher (a TorchScript file; load with torch.jit.load in Python
// or torch::jit::load in C++) offers:
//   forward(x) -> float [N, nbits] of ±1: +1 where the real output v_j >= 0
//   encode(x)  -> uint8 [N, ceil(nbits/8)]: bit j = (v_j >= 0) in byte j/8 at
//                 position j%8, least significant first (FAISS IndexBinaryFlat)
//   embed(x)   -> float [N, nbits]: the real-valued outputs v before the sign
//   preprocess(x) -> the network input (x / input_scale - mean) / std
// where x is RAW input, float (any dtype is converted to float32), shaped
// [N] + input_shape (images [N, C, H, W] with pixel values 0..255 when
// input_scale is 255; vectors [N, D]). mean/std hold one value per channel
// (images) or per feature (vectors), or a single value for all; empty means
// 0 and 1. Attributes: nbits (int), method (str), input_shape (List[int]),
// input_scale (float), mean (List[float]), std (List[float]).
#pragma once

#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>

namespace hashlab::exporter {

// Collects the body of one TorchScript method and the tensors it uses.
class ScriptEmitter {
 public:
  explicit ScriptEmitter(torch::jit::Module& module) : module_(module) {}

  // Registers `t` (detached, contiguous, on CPU) as a parameter or buffer
  // named `dotted_name` with '.' replaced by '_'; returns "self.<name>".
  // Two tensors mapping to one name are a programming error.
  std::string param(const std::string& dotted_name, const torch::Tensor& t);
  std::string buffer(const std::string& dotted_name, const torch::Tensor& t);
  // Emits "<fresh> = <expr>" and returns the fresh variable's name.
  std::string let(const std::string& expr);
  // Emits one statement as is.
  void line(const std::string& stmt);
  // The statements so far, each indented by 4 spaces and newline-terminated.
  std::string body() const { return body_.str(); }

 private:
  std::string add(const std::string& dotted_name, const torch::Tensor& t, bool is_buffer);
  torch::jit::Module& module_;
  std::ostringstream body_;
  std::map<std::string, std::string> names_;  // script name -> dotted name
  int next_var_ = 0;
};

// "[1, 2, 3]" for TorchScript int lists.
std::string int_list(const std::vector<int64_t>& v);
// A double printed so that TorchScript reads back the same value.
std::string float_literal(double v);

// Layer emitters: each writes the eval-mode op of one LibTorch layer (the same
// ATen call its eager forward makes, so outputs match bit for bit), registers
// its tensors as "<prefix>weight" etc., and returns the output variable.
std::string emit_conv2d(ScriptEmitter& e, const std::string& prefix,
                        const torch::nn::Conv2dImpl& conv, const std::string& x);
std::string emit_batchnorm2d(ScriptEmitter& e, const std::string& prefix,
                             const torch::nn::BatchNorm2dImpl& bn, const std::string& x);
std::string emit_linear(ScriptEmitter& e, const std::string& prefix,
                        const torch::nn::LinearImpl& fc, const std::string& x);
// A Sequential of Conv2d, BatchNorm2d, Linear, ReLU, MaxPool2d,
// AdaptiveAvgPool2d, Flatten, Dropout (dropped: inference) layers; children
// are prefixed "<prefix><index>.". Throws hashlab::Error on other layers.
std::string emit_sequential(ScriptEmitter& e, const std::string& prefix,
                            const torch::nn::Sequential& seq, const std::string& x);

// What the exported file states about its input and codes.
struct HasherSpec {
  std::string method;
  int64_t nbits = 0;
  std::vector<int64_t> input_shape;  // one example: [C, H, W] or [D]
  double input_scale = 1.0;
  std::vector<double> mean, std;
};

// Writes the network from the preprocessed input variable `x`; returns the
// variable holding the real outputs v [N, nbits].
using NetEmitter = std::function<std::string(ScriptEmitter& e, const std::string& x)>;

// What every exported hasher shares: a module carrying the spec's attributes
// (nbits, method, input_shape, input_scale, mean, std) and the input_mean /
// input_std buffers, and the TorchScript source of preprocess(x) and embed(x)
// (embed runs the network that emit_net writes). Callers register what else
// they need, append their own methods to `source`, then define_hasher().
struct HasherBase {
  torch::jit::Module module;
  std::string source;
};
HasherBase hasher_base(const HasherSpec& spec, const NetEmitter& emit_net,
                       const std::string& module_name);
// Compiles base.source into base.module (errors show the source) and
// switches it to eval mode.
torch::jit::Module define_hasher(HasherBase& base, const std::string& method);

// The hasher module described at the top of this file.
torch::jit::Module build_hasher(const HasherSpec& spec, const NetEmitter& emit_net);

// Shallow linear hashers (LSH, PCAH, ITQ, ...): v = (x' - center) W + bias
// with x' the preprocessed input flattened to [N, D]; W float [D, B],
// center [D] (undefined: none), bias [B] (undefined: none). spec.nbits is
// taken from W.
torch::jit::Module export_linear_hasher(const torch::Tensor& W, const torch::Tensor& center,
                                        HasherSpec spec,
                                        const torch::Tensor& bias = torch::Tensor());

// Saves `module` to `path` atomically (temp file + rename).
void save_hasher(const torch::jit::Module& module, const std::string& path);

}  // namespace hashlab::exporter
