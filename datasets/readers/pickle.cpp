#include "datasets/readers/pickle.h"

#include <cstring>
#include <unordered_map>

#include "csrc/core/error.h"

namespace hashlab::data {

const char* py_kind_name(PyValue::Kind k) {
  switch (k) {
    case PyValue::Kind::none: return "None";
    case PyValue::Kind::boolean: return "bool";
    case PyValue::Kind::integer: return "int";
    case PyValue::Kind::floating: return "float";
    case PyValue::Kind::bytes: return "bytes";
    case PyValue::Kind::str: return "str";
    case PyValue::Kind::list: return "list";
    case PyValue::Kind::tuple: return "tuple";
    case PyValue::Kind::dict: return "dict";
    case PyValue::Kind::global: return "global";
    case PyValue::Kind::call: return "object";
  }
  return "?";
}

PyRef PyValue::get(const std::string& key) const {
  for (const auto& [k, v] : dict)
    if (k && k->text() && *k->text() == key) return v;
  return nullptr;
}

namespace {

class Unpickler {
 public:
  Unpickler(const uint8_t* d, size_t n, const std::string& name) : d_(d), n_(n), name_(name) {}

  Pickle run() {
    while (true) {
      if (pos_ >= n_) fail("{}: pickle ends at byte {} without its STOP opcode", name_, pos_);
      op_at_ = pos_;
      const uint8_t op = d_[pos_++];
      switch (op) {
        case 0x80: take(1); break;  // PROTO
        case 0x95: take(8); break;  // FRAME: frames are only a buffering hint
        case '.': {                 // STOP
          if (stack_.size() != 1 || !marks_.empty())
            bad("STOP with {} values on the stack", stack_.size());
          Pickle out;
          out.root = stack_.back();
          out.values = std::move(arena_);
          return out;
        }
        case '(': marks_.push_back(stack_.size()); break;
        case '0': pop(); break;
        case '1': pop_mark(); break;
        case '2': push(top()); break;
        case 'N': push(make(PyValue::Kind::none)); break;
        case 0x88: push(integer(1, PyValue::Kind::boolean)); break;
        case 0x89: push(integer(0, PyValue::Kind::boolean)); break;
        case 'J': push(integer(static_cast<int32_t>(le(4)))); break;
        case 'K': push(integer(static_cast<int64_t>(le(1)))); break;
        case 'M': push(integer(static_cast<int64_t>(le(2)))); break;
        case 0x8a: {  // LONG1: little-endian two's complement of n bytes
          const size_t len = static_cast<size_t>(le(1));
          if (len > 8) bad("an integer of {} bytes (over 64 bits)", len);
          const uint8_t* p = take(len);
          uint64_t v = 0;
          for (size_t b = 0; b < len; ++b) v |= uint64_t{p[b]} << (8 * b);
          if (len > 0 && len < 8 && (p[len - 1] & 0x80)) v |= ~uint64_t{0} << (8 * len);
          push(integer(static_cast<int64_t>(v)));
          break;
        }
        case 'G': {  // BINFLOAT: big-endian double
          const uint8_t* p = take(8);
          uint64_t bits = 0;
          for (int b = 0; b < 8; ++b) bits = (bits << 8) | p[b];
          auto v = make(PyValue::Kind::floating);
          std::memcpy(&v->f, &bits, 8);
          push(v);
          break;
        }
        case 'U': push(string(le(1), PyValue::Kind::bytes)); break;   // SHORT_BINSTRING
        case 'T': push(string(le(4), PyValue::Kind::bytes)); break;   // BINSTRING
        case 'C': push(string(le(1), PyValue::Kind::bytes)); break;   // SHORT_BINBYTES
        case 'B': push(string(le(4), PyValue::Kind::bytes)); break;   // BINBYTES
        case 0x8e: push(string(le(8), PyValue::Kind::bytes)); break;  // BINBYTES8
        case 0x8c: push(string(le(1), PyValue::Kind::str)); break;    // SHORT_BINUNICODE
        case 'X': push(string(le(4), PyValue::Kind::str)); break;     // BINUNICODE
        case 0x8d: push(string(le(8), PyValue::Kind::str)); break;    // BINUNICODE8
        case ']': push(make(PyValue::Kind::list)); break;
        case 'l': {
          auto v = make(PyValue::Kind::list);
          v->items = pop_mark();
          push(v);
          break;
        }
        case 'a': {
          PyRef x = pop();
          list_at_top()->items.push_back(x);
          break;
        }
        case 'e': {
          auto xs = pop_mark();
          auto& items = list_at_top()->items;
          items.insert(items.end(), xs.begin(), xs.end());
          break;
        }
        case ')': push(make(PyValue::Kind::tuple)); break;
        case 't': push(tuple(pop_mark())); break;
        case 0x85: case 0x86: case 0x87: {
          const size_t k = op - 0x84u;
          if (stack_.size() < k + floor()) bad("TUPLE{} with {} values", k, stack_.size() - floor());
          std::vector<PyRef> xs(stack_.end() - static_cast<std::ptrdiff_t>(k), stack_.end());
          stack_.resize(stack_.size() - k);
          push(tuple(std::move(xs)));
          break;
        }
        case '}': push(make(PyValue::Kind::dict)); break;
        case 'd': {
          auto xs = pop_mark();
          auto v = make(PyValue::Kind::dict);
          set_items(*v, xs);
          push(v);
          break;
        }
        case 's': {
          PyRef val = pop(), key = pop();
          set_items(*dict_at_top(), {key, val});
          break;
        }
        case 'u': {
          auto xs = pop_mark();
          set_items(*dict_at_top(), xs);
          break;
        }
        case 'c': {  // GLOBAL: "module\nname\n"
          std::string module = line(), nm = line();
          push(global(module + "." + nm));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          PyRef nm = pop(), module = pop();
          if (nm->kind != PyValue::Kind::str || module->kind != PyValue::Kind::str)
            bad("STACK_GLOBAL of a {} and a {} (two str expected)", py_kind_name(module->kind),
                py_kind_name(nm->kind));
          push(global(module->s + "." + nm->s));
          break;
        }
        case 'R': case 0x81: {  // REDUCE f(args), NEWOBJ cls.__new__(cls, *args)
          PyRef args = pop(), f = pop();
          if (args->kind != PyValue::Kind::tuple)
            bad("{} with {} arguments (a tuple expected)", op == 'R' ? "REDUCE" : "NEWOBJ",
                py_kind_name(args->kind));
          auto v = make(PyValue::Kind::call);
          v->items = {f, args};
          push(v);
          break;
        }
        case 'b': {  // BUILD
          PyRef state = pop();
          PyRef obj = top();
          if (obj->kind != PyValue::Kind::call)
            bad("BUILD on a {} (an object expected)", py_kind_name(obj->kind));
          obj->state = state;
          break;
        }
        case 'q': memo_[le(1)] = top(); break;
        case 'r': memo_[le(4)] = top(); break;
        case 0x94: memo_[memo_.size()] = top(); break;  // MEMOIZE
        case 'h': push(memo(le(1))); break;
        case 'j': push(memo(le(4))); break;
        default:
          bad("opcode 0x{:02x} ('{}') is not one this reader accepts (binary pickle protocols "
              "2-5 of plain data)",
              op, op >= 0x20 && op < 0x7f ? static_cast<char>(op) : '?');
      }
    }
  }

 private:
  template <typename... Args>
  [[noreturn]] void bad(const char* fmt_str, Args&&... args) {
    fail("{}: not a readable pickle at byte {}: {}", name_, op_at_,
         fmt::format(fmt::runtime(fmt_str), std::forward<Args>(args)...));
  }

  const uint8_t* take(size_t k) {
    if (k > n_ - pos_) bad("{} bytes needed but the file ends after {}", k, n_ - pos_);
    const uint8_t* p = d_ + pos_;
    pos_ += k;
    return p;
  }
  uint64_t le(size_t k) {
    const uint8_t* p = take(k);
    uint64_t v = 0;
    for (size_t b = 0; b < k; ++b) v |= uint64_t{p[b]} << (8 * b);
    return v;
  }
  std::string line() {
    const size_t start = pos_;
    while (pos_ < n_ && d_[pos_] != '\n') ++pos_;
    if (pos_ >= n_) bad("a GLOBAL name without its newline");
    return std::string(reinterpret_cast<const char*>(d_ + start), pos_++ - start);
  }

  PyRef make(PyValue::Kind k) {
    arena_.push_back(std::make_unique<PyValue>());
    arena_.back()->kind = k;
    return arena_.back().get();
  }
  PyRef integer(int64_t x, PyValue::Kind k = PyValue::Kind::integer) {
    auto v = make(k);
    v->i = x;
    return v;
  }
  PyRef string(uint64_t len, PyValue::Kind k) {
    auto v = make(k);
    const uint8_t* p = take(static_cast<size_t>(len));
    v->s.assign(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
    return v;
  }
  PyRef tuple(std::vector<PyRef> xs) {
    auto v = make(PyValue::Kind::tuple);
    v->items = std::move(xs);
    return v;
  }
  PyRef global(std::string s) {
    auto v = make(PyValue::Kind::global);
    v->s = std::move(s);
    return v;
  }

  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(PyRef v) { stack_.push_back(std::move(v)); }
  PyRef top() {
    if (stack_.size() <= floor()) bad("the stack is empty");
    return stack_.back();
  }
  PyRef pop() {
    PyRef v = top();
    stack_.pop_back();
    return v;
  }
  std::vector<PyRef> pop_mark() {
    if (marks_.empty()) bad("no MARK to pop to");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<PyRef> xs(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return xs;
  }
  PyValue* list_at_top() {
    PyRef v = top();
    if (v->kind != PyValue::Kind::list) bad("APPEND to a {}", py_kind_name(v->kind));
    return v;
  }
  PyValue* dict_at_top() {
    PyRef v = top();
    if (v->kind != PyValue::Kind::dict) bad("SETITEM on a {}", py_kind_name(v->kind));
    return v;
  }
  void set_items(PyValue& d, const std::vector<PyRef>& xs) {
    if (xs.size() % 2) bad("{} values for key / value pairs", xs.size());
    for (size_t k = 0; k < xs.size(); k += 2) d.dict.emplace_back(xs[k], xs[k + 1]);
  }
  PyRef memo(uint64_t k) {
    auto it = memo_.find(k);
    if (it == memo_.end()) bad("memo entry {} was never stored", k);
    return it->second;
  }

  const uint8_t* d_;
  size_t n_;
  std::string name_;
  size_t pos_ = 0, op_at_ = 0;
  std::vector<PyRef> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, PyRef> memo_;
  std::vector<std::unique_ptr<PyValue>> arena_;
};

}  // namespace

Pickle parse_pickle(const uint8_t* data, size_t size, const std::string& name) {
  return Unpickler(data, size, name).run();
}

}  // namespace hashlab::data
