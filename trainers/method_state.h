// MethodState: a method's state that is not a trained parameter (a data mean,
// a scale, a continuation's beta, a flag), held as declared named entries
// instead of plain members with hand-written save, load, device moves and
// broadcasts. One call saves it, loads it (with a clear
// error naming a missing or misshapen entry), moves it to a device and
// shares rank 0's values with every rank.
//
// Archive layout: each entry at the top level of the method's archive under
// its name, as a tensor of the dtype it was declared with (a scalar as a
// 0-dim tensor): the layout the methods wrote by hand before, so their
// earlier checkpoints and model files load unchanged.
//
// An entry is "unset" while it holds no values (numel 0): a tensor a fit or
// before_train fills in.
//
// Not buffers of the method's torch module: registered there they would
// change the "net" sub-archive every checkpoint holds (earlier runs would no
// longer load) and ride the trainer's per-step buffer broadcast, which is
// for BatchNorm statistics, not for per-item state such as DeepQuan's.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "trainers/data_parallel.h"

namespace hashlab {

class MethodState {
 public:
  // `owner` names the method in errors ("sigah state: ...").
  explicit MethodState(std::string owner);

  // Declares a tensor entry, unset (empty, of `dtype`) until set().
  void add_tensor(const std::string& name, torch::Dtype dtype);
  // Declares a scalar entry stored as a 0-dim tensor of `dtype` (kFloat64 or kLong).
  void add_scalar(const std::string& name, double value, torch::Dtype dtype = torch::kFloat64);
  // An entry that archives written before it existed lack: load() gives it
  // `legacy` (a scalar) instead of refusing the archive.
  void allow_missing(const std::string& name, std::optional<double> legacy = std::nullopt);

  const torch::Tensor& tensor(const std::string& name) const;
  bool is_set(const std::string& name) const { return tensor(name).numel() > 0; }
  // Replaces a tensor entry (an undefined tensor unsets it); keeps the value's dtype and device.
  void set(const std::string& name, torch::Tensor value);
  double scalar(const std::string& name) const;
  void set_scalar(const std::string& name, double value);

  // Every entry, CPU copies, in declaration order.
  void save(torch::serialize::OutputArchive& archive) const;
  // Reads every entry. A missing entry not allowed to be missing, or a
  // scalar that is not one value, is a hashlab::Error naming it.
  void load(torch::serialize::InputArchive& archive);
  // Tensor entries to `device` (scalars stay CPU 0-dim tensors).
  void to(torch::Device device);
  // Rank 0's values of `names` on every rank (nothing with one process):
  // the entries must be set and have the same shape on every rank.
  void broadcast(DataParallel& dp, const std::vector<std::string>& names);

  const std::string& owner() const { return owner_; }

 private:
  struct Entry {
    std::string name;
    torch::Tensor value;
    bool scalar = false;
    bool may_miss = false;
    std::optional<double> legacy;  // a missing scalar's value
  };
  Entry& entry(const std::string& name);
  const Entry& entry(const std::string& name) const;
  void declare(Entry e);

  std::string owner_;
  std::vector<Entry> entries_;  // declaration order
};

}  // namespace hashlab
