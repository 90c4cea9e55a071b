#include "models/backbones/torch_save_reader.h"

#include <cstring>
#include <map>
#include <memory>

#include <caffe2/serialize/inline_container.h>
#include <fmt/format.h>

#include "csrc/core/error.h"

namespace hashlab::models {

namespace {

// A Python value, as far as state_dict pickles need.
struct Value;
using ValuePtr = std::shared_ptr<Value>;
struct Value {
  enum Kind { kNone, kBool, kInt, kFloat, kStr, kTuple, kList, kDict, kGlobal, kTensor } kind = kNone;
  int64_t i = 0;
  double f = 0;
  std::string s;                                    // kStr; kGlobal: "module.name"
  std::vector<ValuePtr> items;                      // kTuple, kList
  std::vector<std::pair<ValuePtr, ValuePtr>> dict;  // kDict, in insertion order
  torch::Tensor tensor;                             // kTensor (also storages)
};

ValuePtr make(Value::Kind k) {
  auto v = std::make_shared<Value>();
  v->kind = k;
  return v;
}

torch::Dtype storage_dtype(const std::string& type, const std::string& path) {
  static const std::map<std::string, torch::Dtype> types = {
      {"torch.FloatStorage", torch::kFloat32}, {"torch.DoubleStorage", torch::kFloat64},
      {"torch.HalfStorage", torch::kFloat16},  {"torch.BFloat16Storage", torch::kBFloat16},
      {"torch.LongStorage", torch::kInt64},    {"torch.IntStorage", torch::kInt32},
      {"torch.ShortStorage", torch::kInt16},   {"torch.CharStorage", torch::kInt8},
      {"torch.ByteStorage", torch::kUInt8},    {"torch.BoolStorage", torch::kBool}};
  auto it = types.find(type);
  if (it == types.end()) fail("{}: unsupported storage type {}", path, type);
  return it->second;
}

class Unpickler {
 public:
  Unpickler(caffe2::serialize::PyTorchStreamReader& reader, const char* data, size_t size,
            std::string path)
      : reader_(reader), p_(data), end_(data + size), begin_(data), path_(std::move(path)) {}

  ValuePtr run() {
    while (true) {
      uint8_t op = byte();
      switch (op) {
        case 0x80: byte(); break;                    // PROTO
        case 0x95: bytes(8); break;                  // FRAME
        case '.': return pop();                      // STOP
        case 'c': {                                  // GLOBAL
          auto g = make(Value::kGlobal);
          std::string mod = line();
          g->s = mod + "." + line();
          push(g);
          break;
        }
        case 0x93: {                                 // STACK_GLOBAL
          auto name = pop(), mod = pop();
          auto g = make(Value::kGlobal);
          g->s = mod->s + "." + name->s;
          push(g);
          break;
        }
        case 'q': memo_[byte()] = top(); break;      // BINPUT
        case 'r': memo_[u32()] = top(); break;       // LONG_BINPUT
        case 0x94: memo_[memo_.size()] = top(); break;  // MEMOIZE
        case 'h': push(memo(byte())); break;         // BINGET
        case 'j': push(memo(u32())); break;          // LONG_BINGET
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case ')': push(make(Value::kTuple)); break;  // EMPTY_TUPLE
        case 't': push(sequence(Value::kTuple, pop_mark())); break;
        case 0x85: case 0x86: case 0x87: {           // TUPLE1..3
          size_t n = op - 0x84;
          need(n);
          std::vector<ValuePtr> items(stack_.end() - n, stack_.end());
          stack_.resize(stack_.size() - n);
          push(sequence(Value::kTuple, items));
          break;
        }
        case ']': push(make(Value::kList)); break;   // EMPTY_LIST
        case 'l': push(sequence(Value::kList, pop_mark())); break;
        case 'a': {                                  // APPEND
          auto v = pop();
          expect(top(), Value::kList, "APPEND")->items.push_back(v);
          break;
        }
        case 'e': {                                  // APPENDS
          auto items = pop_mark();
          auto& l = expect(top(), Value::kList, "APPENDS")->items;
          l.insert(l.end(), items.begin(), items.end());
          break;
        }
        case '}': push(make(Value::kDict)); break;   // EMPTY_DICT
        case 'd': {                                  // DICT
          auto items = pop_mark();
          auto d = make(Value::kDict);
          set_items(d, items);
          push(d);
          break;
        }
        case 's': {                                  // SETITEM
          auto v = pop(), k = pop();
          expect(top(), Value::kDict, "SETITEM")->dict.emplace_back(k, v);
          break;
        }
        case 'u': {                                  // SETITEMS
          auto items = pop_mark();
          set_items(expect(top(), Value::kDict, "SETITEMS"), items);
          break;
        }
        case 'X': push(str(u32())); break;           // BINUNICODE
        case 0x8c: push(str(byte())); break;         // SHORT_BINUNICODE
        case 0x8d: push(str(u64())); break;          // BINUNICODE8
        case 'T': push(str(u32())); break;           // BINSTRING
        case 'U': push(str(byte())); break;          // SHORT_BINSTRING
        case 'J': { int32_t v; std::memcpy(&v, bytes(4), 4); push(integer(v)); break; }
        case 'K': push(integer(byte())); break;      // BININT1
        case 'M': { uint16_t v; std::memcpy(&v, bytes(2), 2); push(integer(v)); break; }
        case 0x8a: {                                 // LONG1
          size_t n = byte();
          HL_CHECK(n <= 8, "{}: offset {}: integer of {} bytes", path_, offset(), n);
          const char* b = bytes(n);
          int64_t v = 0;
          for (size_t k = 0; k < n; ++k) v |= static_cast<int64_t>(static_cast<uint8_t>(b[k])) << (8 * k);
          if (n > 0 && n < 8 && (static_cast<uint8_t>(b[n - 1]) & 0x80)) v -= int64_t(1) << (8 * n);
          push(integer(v));
          break;
        }
        case 'N': push(make(Value::kNone)); break;
        case 0x88: case 0x89: {                      // NEWTRUE, NEWFALSE
          auto v = make(Value::kBool);
          v->i = op == 0x88;
          push(v);
          break;
        }
        case 'G': {                                  // BINFLOAT, big-endian
          const char* b = bytes(8);
          uint64_t bits = 0;
          for (int k = 0; k < 8; ++k) bits = (bits << 8) | static_cast<uint8_t>(b[k]);
          auto v = make(Value::kFloat);
          std::memcpy(&v->f, &bits, 8);
          push(v);
          break;
        }
        case 'Q': push(storage(pop())); break;       // BINPERSID
        case 'R': {                                  // REDUCE
          auto args = pop(), fn = pop();
          push(call(fn, args));
          break;
        }
        case 'b': {                                  // BUILD
          pop();  // OrderedDict._metadata: not needed
          expect(top(), Value::kDict, "BUILD");
          break;
        }
        default:
          fail("{}: offset {}: unsupported pickle opcode {:#x} (not a plain dict of tensors?)",
               path_, offset() - 1, op);
      }
    }
  }

 private:
  size_t offset() const { return static_cast<size_t>(p_ - begin_); }
  const char* bytes(size_t n) {
    HL_CHECK(static_cast<size_t>(end_ - p_) >= n, "{}: data.pkl truncated at offset {}", path_,
             offset());
    const char* b = p_;
    p_ += n;
    return b;
  }
  uint8_t byte() { return static_cast<uint8_t>(*bytes(1)); }
  uint32_t u32() { uint32_t v; std::memcpy(&v, bytes(4), 4); return v; }
  uint64_t u64() { uint64_t v; std::memcpy(&v, bytes(8), 8); return v; }
  std::string line() {
    const char* nl = static_cast<const char*>(std::memchr(p_, '\n', end_ - p_));
    HL_CHECK(nl != nullptr, "{}: offset {}: unterminated GLOBAL", path_, offset());
    std::string s(p_, nl);
    p_ = nl + 1;
    return s;
  }
  ValuePtr str(size_t n) {
    auto v = make(Value::kStr);
    v->s.assign(bytes(n), n);
    return v;
  }
  ValuePtr integer(int64_t i) {
    auto v = make(Value::kInt);
    v->i = i;
    return v;
  }
  ValuePtr sequence(Value::Kind k, std::vector<ValuePtr> items) {
    auto v = make(k);
    v->items = std::move(items);
    return v;
  }
  void need(size_t n) {
    HL_CHECK(stack_.size() >= n, "{}: offset {}: pickle stack underflow", path_, offset());
  }
  void push(ValuePtr v) { stack_.push_back(std::move(v)); }
  ValuePtr top() {
    need(1);
    return stack_.back();
  }
  ValuePtr pop() {
    need(1);
    auto v = stack_.back();
    stack_.pop_back();
    return v;
  }
  std::vector<ValuePtr> pop_mark() {
    HL_CHECK(!marks_.empty(), "{}: offset {}: pickle MARK missing", path_, offset());
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  ValuePtr memo(size_t i) {
    auto it = memo_.find(i);
    HL_CHECK(it != memo_.end(), "{}: offset {}: pickle memo {} missing", path_, offset(), i);
    return it->second;
  }
  ValuePtr expect(const ValuePtr& v, Value::Kind k, const char* op) {
    HL_CHECK(v->kind == k, "{}: offset {}: {} on an unexpected object", path_, offset(), op);
    return v;
  }
  void set_items(const ValuePtr& d, const std::vector<ValuePtr>& items) {
    HL_CHECK(items.size() % 2 == 0, "{}: offset {}: odd number of dict items", path_, offset());
    for (size_t k = 0; k < items.size(); k += 2) d->dict.emplace_back(items[k], items[k + 1]);
  }
  std::vector<int64_t> ints(const ValuePtr& t) {
    std::vector<int64_t> out;
    for (const auto& v : t->items) {
      HL_CHECK(v->kind == Value::kInt, "{}: offset {}: expected a tuple of ints", path_, offset());
      out.push_back(v->i);
    }
    return out;
  }

  // ('storage', torch.<Type>Storage, key, location, numel)
  ValuePtr storage(const ValuePtr& pid) {
    HL_CHECK(pid->kind == Value::kTuple && pid->items.size() >= 5 &&
                 pid->items[0]->kind == Value::kStr && pid->items[0]->s == "storage",
             "{}: offset {}: unsupported persistent id", path_, offset());
    torch::Dtype dtype = storage_dtype(pid->items[1]->s, path_);
    const std::string& key = pid->items[2]->s;
    int64_t numel = pid->items[4]->i;
    auto it = storages_.find(key);
    if (it == storages_.end()) {
      std::string record = "data/" + key;
      HL_CHECK(reader_.hasRecord(record), "{}: storage record {} missing", path_, record);
      at::DataPtr ptr;
      size_t size = 0;
      std::tie(ptr, size) = reader_.getRecord(record);
      int64_t elem = static_cast<int64_t>(c10::elementSize(dtype));
      HL_CHECK(static_cast<int64_t>(size) >= numel * elem,
               "{}: storage {} holds {} bytes, expected {} elements of {} bytes", path_, key, size,
               numel, elem);
      torch::Tensor t = torch::empty({numel}, dtype);
      if (numel > 0) std::memcpy(t.data_ptr(), ptr.get(), static_cast<size_t>(numel * elem));
      it = storages_.emplace(key, t).first;
    }
    auto v = make(Value::kTensor);
    v->tensor = it->second;
    return v;
  }

  ValuePtr call(const ValuePtr& fn, const ValuePtr& args) {
    HL_CHECK(fn->kind == Value::kGlobal && args->kind == Value::kTuple,
             "{}: offset {}: REDUCE of a non-global", path_, offset());
    const auto& a = args->items;
    if (fn->s == "collections.OrderedDict") return make(Value::kDict);
    if (fn->s == "torch._utils._rebuild_tensor_v2" || fn->s == "torch._utils._rebuild_tensor") {
      HL_CHECK(a.size() >= 4 && a[0]->kind == Value::kTensor,
               "{}: offset {}: malformed _rebuild_tensor_v2 call", path_, offset());
      auto v = make(Value::kTensor);
      v->tensor = a[0]->tensor.as_strided(ints(a[2]), ints(a[3]), a[1]->i).contiguous().clone();
      return v;
    }
    if (fn->s == "torch._utils._rebuild_parameter") {
      HL_CHECK(!a.empty() && a[0]->kind == Value::kTensor,
               "{}: offset {}: malformed _rebuild_parameter call", path_, offset());
      return a[0];
    }
    // torch::pickle_save's type tags: restore_type_tag(obj, type) -> obj.
    if (fn->s == "torch.jit._pickle.restore_type_tag" && !a.empty()) return a[0];
    fail("{}: offset {}: unsupported object {} (expected a dict of tensors)", path_, offset(),
         fn->s);
  }

  caffe2::serialize::PyTorchStreamReader& reader_;
  const char* p_;
  const char* end_;
  const char* begin_;
  std::string path_;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::map<size_t, ValuePtr> memo_;
  std::map<std::string, torch::Tensor> storages_;
};

bool tensor_dict(const ValuePtr& v) {
  if (v->kind != Value::kDict || v->dict.empty()) return false;
  for (const auto& kv : v->dict)
    if (kv.first->kind != Value::kStr || kv.second->kind != Value::kTensor) return false;
  return true;
}

}  // namespace

std::vector<std::pair<std::string, torch::Tensor>> read_torch_saved_tensors(
    const std::string& path) {
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
  at::DataPtr pkl;
  size_t size = 0;
  try {
    reader = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
    std::tie(pkl, size) = reader->getRecord("data.pkl");
  } catch (const c10::Error& e) {
    fail("{}: not a torch.save() zip file (legacy, non-zip torch.save files are not supported: "
         "re-save with a current PyTorch): {}",
         path, e.what_without_backtrace());
  }
  Unpickler u(*reader, static_cast<const char*>(pkl.get()), size, path);
  ValuePtr root = u.run();
  if (!tensor_dict(root) && root->kind == Value::kDict) {
    for (const auto& kv : root->dict)
      if (kv.first->kind == Value::kStr &&
          (kv.first->s == "state_dict" || kv.first->s == "model") && tensor_dict(kv.second)) {
        root = kv.second;
        break;
      }
  }
  HL_CHECK(root->kind == Value::kDict, "{}: holds no dict of tensors", path);
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& kv : root->dict) {
    HL_CHECK(kv.first->kind == Value::kStr && kv.second->kind == Value::kTensor,
             "{}: holds a dict whose entries are not all name -> tensor", path);
    out.emplace_back(kv.first->s, kv.second->tensor);
  }
  return out;
}

}  // namespace hashlab::models
