// Reads the tensors of a file written by Python's torch.save(obj, path).
//
// LibTorch's torch::pickle_load cannot read a Python state_dict: its
// unpickler turns every collections.OrderedDict into None (it expects them
// only as a tensor's empty backward-hook dict), and a state_dict *is* an
// OrderedDict. So this is a small unpickler for exactly what torch.save
// writes for a dict of tensors: the zip container (default since PyTorch 1.6;
// read with caffe2's PyTorchStreamReader, also what torch::pickle_save
// writes), pickle protocols 2-4, storages as persistent ids
// ('storage', torch.<Type>Storage, key, location, numel) with their bytes in
// the record data/<key>, tensors rebuilt by torch._utils._rebuild_tensor_v2 /
// _rebuild_parameter, (Ordered)dicts, lists, tuples, strings, numbers. The
// OrderedDict's `_metadata` (BUILD state) is ignored. Anything else (custom
// classes, the legacy non-zip format) is a hashlab::Error naming the file.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace hashlab::models {

// The top-level dict of `path` as (name, tensor) pairs in file order. When the
// top-level dict holds no tensors but one entry is a dict of tensors under
// one of the keys "state_dict", "model" (training checkpoints), that inner
// dict is returned. Tensors are on the CPU, contiguous, with the saved dtype.
std::vector<std::pair<std::string, torch::Tensor>> read_torch_saved_tensors(
    const std::string& path);

}  // namespace hashlab::models
