#include "csrc/core/config.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <cstdlib>
#include <thread>

namespace fs = std::filesystem;

namespace hashlab {
namespace {

std::string mark_str(const std::string& file, const YAML::Mark& m) {
  if (m.line < 0) return file;
  return fmt::format("{}:{}:{}", file, m.line + 1, m.column + 1);
}

std::string join_key(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

// Records the origin of every key below `node`.
void record_marks(const YAML::Node& node, const std::string& prefix,
                  const std::string& file,
                  std::map<std::string, std::string>& where) {
  if (node.IsSequence()) {  // list items are "<prefix>.<index>"
    for (size_t i = 0; i < node.size(); ++i) {
      const std::string key = join_key(prefix, std::to_string(i));
      where[key] = mark_str(file, node[i].Mark());
      record_marks(node[i], key, file, where);
    }
    return;
  }
  if (!node.IsMap()) return;
  // yaml-cpp keeps both entries of a repeated key and `node[key]` finds the
  // first, so a repeated key would silently ignore the later value.
  std::map<std::string, std::string> seen;
  for (const auto& kv : node) {
    const std::string key = join_key(prefix, kv.first.Scalar());
    auto [it, fresh] = seen.emplace(kv.first.Scalar(), mark_str(file, kv.first.Mark()));
    if (!fresh)
      fail("config {}: {}: key given twice in one mapping (first at {}); keep one",
           mark_str(file, kv.first.Mark()), key, it->second);
    where[key] = mark_str(file, kv.first.Mark());
    record_marks(kv.second, key, file, where);
  }
}

void erase_prefix(std::map<std::string, std::string>& where,
                  const std::string& key) {
  for (auto it = where.begin(); it != where.end();) {
    if (it->first == key || it->first.rfind(key + ".", 0) == 0)
      it = where.erase(it);
    else
      ++it;
  }
}

// Deep merge of `src` into `dst` (maps merge, everything else replaces).
void merge(YAML::Node dst, const YAML::Node& src) {
  for (const auto& kv : src) {
    const std::string key = kv.first.Scalar();
    if (kv.second.IsMap() && dst[key] && dst[key].IsMap()) {
      merge(dst[key], kv.second);
    } else {
      dst[key] = YAML::Clone(kv.second);
    }
  }
}

// yaml-cpp shares an anchor's node between its aliases, so a few hundred
// bytes of nested aliases (a "billion laughs") load at once but stand for
// billions of values, which everything that walks or copies the tree
// (record_marks, merge, dump) would visit one by one until memory runs out.
// A config has a few hundred values: a document standing for more than this
// many nodes, aliases expanded, is refused after visiting at most this many.
constexpr size_t kMaxConfigNodes = 100000;

void check_expanded_size(const YAML::Node& root, const std::string& what) {
  std::vector<YAML::Node> todo{root};  // iterative: an alias may even refer to itself
  size_t seen = 0;
  while (!todo.empty()) {
    const YAML::Node n = todo.back();
    todo.pop_back();
    if (++seen > kMaxConfigNodes)
      fail("config {}: holds more than {} values once its YAML aliases (*name) are expanded "
           "(each alias repeats its anchor's whole value); a config needs far fewer: refusing it",
           what, kMaxConfigNodes);
    if (n.IsMap()) {
      for (const auto& kv : n) {
        todo.push_back(kv.first);
        todo.push_back(kv.second);
      }
    } else if (n.IsSequence()) {
      for (const auto& e : n) todo.push_back(e);
    }
  }
}

YAML::Node parse_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("config {}: cannot open file", path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  try {
    YAML::Node n = YAML::Load(text);
    check_expanded_size(n, path);
    if (n.IsNull()) return YAML::Node(YAML::NodeType::Map);
    if (!n.IsMap()) fail("config {}: top level must be a mapping of keys", path);
    return n;
  } catch (const YAML::Exception& e) {
    fail("config {}: {}", mark_str(path, e.mark), e.msg);
  }
}

void load_recursive(const std::string& path, YAML::Node& root,
                    std::map<std::string, std::string>& where,
                    std::vector<std::string>& stack) {
  std::string canon = fs::weakly_canonical(path).string();
  if (std::find(stack.begin(), stack.end(), canon) != stack.end())
    fail("config {}: `_base_` cycle through this file", path);
  stack.push_back(canon);
  YAML::Node self = parse_file(path);
  if (self["_base_"]) {
    YAML::Node bases = self["_base_"];
    std::vector<std::string> list;
    if (bases.IsScalar()) {
      list.push_back(bases.Scalar());
    } else if (bases.IsSequence()) {
      for (const auto& b : bases) {
        if (!b.IsScalar())
          fail("config {}: `_base_` entries must be file paths",
               mark_str(path, b.Mark()));
        list.push_back(b.Scalar());
      }
    } else {
      fail("config {}: `_base_` must be a path or a list of paths",
           mark_str(path, bases.Mark()));
    }
    for (const auto& b : list) {
      fs::path p = fs::path(path).parent_path() / b;
      if (!fs::exists(p))
        fail("config {}: `_base_` file '{}' not found (looked for {})",
             mark_str(path, bases.Mark()), b, p.string());
      load_recursive(p.string(), root, where, stack);
    }
    self.remove("_base_");
  }
  for (const auto& kv : self) erase_prefix(where, kv.first.Scalar());
  merge(root, self);
  record_marks(self, "", path, where);
  stack.pop_back();
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string type_name(const YAML::Node& n) {
  if (n.IsMap()) return "a mapping";
  if (n.IsSequence()) return "a list";
  if (n.IsNull()) return "null";
  return "'" + n.Scalar() + "'";
}

}  // namespace

std::string did_you_mean(const std::string& word,
                         const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::max<size_t>(2, word.size() / 3) + 1;
  for (const auto& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

int resolve_threads(const std::string& value, const std::string& where) {
  if (value == "auto") {
    // All cores, shared among the processes of a local multi-process job
    // (LOCAL_WORLD_SIZE, set by `--nproc` and by torchrun).
    unsigned n = std::thread::hardware_concurrency();
    int local = 1;
    if (const char* l = std::getenv("LOCAL_WORLD_SIZE")) local = std::max(1, std::atoi(l));
    return std::max(1, (n == 0 ? 1 : static_cast<int>(n)) / local);
  }
  try {
    size_t pos = 0;
    int n = std::stoi(value, &pos);
    if (pos == value.size() && n >= 1 && n <= 4096) return n;
  } catch (...) {
  }
  fail("{}: expected 'auto' or a thread count in [1, 4096], got '{}'", where,
       value);
}

Config::Config() : root_(YAML::NodeType::Map) {}

Config Config::load(const std::string& path,
                    const std::vector<std::string>& overrides) {
  Config c;
  c.path_ = path;
  std::vector<std::string> stack;
  load_recursive(path, c.root_, c.where_, stack);
  for (const auto& o : overrides) c.apply_override(o);
  return c;
}

Config Config::from_string(const std::string& text, const std::string& name) {
  Config c;
  c.path_ = name;
  YAML::Node n;
  try {
    n = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail("config {}: {}", mark_str(name, e.mark), e.msg);
  }
  check_expanded_size(n, name);
  if (!n.IsNull()) {
    if (!n.IsMap()) fail("config {}: top level must be a mapping", name);
    merge(c.root_, n);
    record_marks(n, "", name, c.where_);
  }
  return c;
}

void Config::set(const std::string& dotted, const YAML::Node& value,
                 const std::string& origin) {
  std::vector<std::string> parts;
  std::stringstream ss(dotted);
  std::string part;
  while (std::getline(ss, part, '.')) {
    if (part.empty()) fail("{}: empty component in key '{}'", origin, dotted);
    parts.push_back(part);
  }
  if (parts.empty()) fail("{}: empty key", origin);
  YAML::Node cur = root_;
  std::string prefix;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    prefix = join_key(prefix, parts[i]);
    YAML::Node next = cur[parts[i]];
    if (!next || next.IsNull()) {
      cur[parts[i]] = YAML::Node(YAML::NodeType::Map);
      where_[prefix] = origin;
    } else if (!next.IsMap()) {
      fail("{}: cannot set '{}': '{}' is {} not a mapping", origin, dotted,
           prefix, type_name(next));
    }
    cur.reset(cur[parts[i]]);
  }
  erase_prefix(where_, dotted);
  cur[parts.back()] = YAML::Clone(value);
  where_[dotted] = origin;
  if (value.IsMap()) {
    std::map<std::string, std::string> sub;
    record_marks(value, dotted, origin, sub);
    for (auto& kv : sub) where_[kv.first] = origin;
  }
}

void Config::apply_override(const std::string& assignment) {
  auto eq = assignment.find('=');
  std::string origin = "command line '" + assignment + "'";
  if (eq == std::string::npos || eq == 0)
    fail("{}: overrides look like key.path=value", origin);
  std::string key = assignment.substr(0, eq);
  std::string text = assignment.substr(eq + 1);
  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail("{}: value does not parse as YAML: {}", origin, e.msg);
  }
  check_expanded_size(value, origin);
  if (key == "_base_") fail("{}: `_base_` cannot be overridden", origin);
  set(key, value, origin);
}

Section Config::section(const std::string& key) const {
  return root().sub(key);
}

Section Config::root() const { return Section(root_, "", this); }

std::string Config::dump() const {
  YAML::Emitter out;
  out << root_;
  return std::string(out.c_str()) + "\n";
}

std::string Config::where(const std::string& key) const {
  auto it = where_.find(key);
  if (it != where_.end()) return it->second;
  // Fall back to the nearest ancestor that has a location.
  std::string k = key;
  while (true) {
    auto dot = k.rfind('.');
    if (dot == std::string::npos) break;
    k = k.substr(0, dot);
    it = where_.find(k);
    if (it != where_.end()) return it->second;
  }
  return path_.empty() ? std::string("<config>") : path_;
}

// ---------------------------------------------------------------- Section

Section::Section(YAML::Node node, std::string prefix, const Config* cfg)
    : node_(std::move(node)), prefix_(std::move(prefix)), cfg_(cfg) {}

std::string Section::full(const std::string& key) const {
  return join_key(prefix_, key);
}

std::string Section::where(const std::string& key) const {
  return cfg_->where(full(key)) + ": " + full(key);
}

bool Section::has(const std::string& key) const {
  return node_.IsMap() && node_[key] && !node_[key].IsNull();
}

Section& Section::known(const std::vector<std::string>& keys) {
  for (const auto& k : keys) known_.insert(k);
  return *this;
}

template <typename T>
T Section::convert(const std::string& key, const YAML::Node& n) const {
  auto expect = [&](const char* what) -> Error {
    return Error(fmt::format("{}: expected {}, got {}", where(key), what,
                             type_name(n)));
  };
  if constexpr (std::is_same_v<T, std::string>) {
    if (!n.IsScalar()) throw expect("a string");
    return n.Scalar();
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!n.IsScalar()) throw expect("true or false");
    try {
      return n.as<bool>();
    } catch (const YAML::Exception&) {
      throw expect("true or false");
    }
  } else if constexpr (std::is_integral_v<T>) {
    if (!n.IsScalar()) throw expect("an integer");
    try {
      return n.as<T>();
    } catch (const YAML::Exception&) {
      throw expect("an integer");
    }
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!n.IsScalar()) throw expect("a number");
    try {
      return n.as<T>();
    } catch (const YAML::Exception&) {
      throw expect("a number");
    }
  } else {
    // std::vector<E>: a list, or a single scalar promoted to a one-element list.
    using E = typename T::value_type;
    T out;
    if (n.IsSequence()) {
      for (const auto& e : n) out.push_back(convert<E>(key, e));
    } else if (n.IsScalar()) {
      out.push_back(convert<E>(key, n));
    } else {
      throw expect("a list");
    }
    return out;
  }
}

template <typename T>
Section& Section::get(const std::string& key, T& out) {
  known_.insert(key);
  if (has(key)) out = convert<T>(key, node_[key]);
  return *this;
}

template <typename T>
Section& Section::get(const std::string& key, T& out, Range r) {
  get(key, out);
  auto check = [&](double v) {
    if (!(v >= r.lo && v <= r.hi))
      fail("{}: value {} is out of range [{}, {}]", where(key), v, r.lo, r.hi);
  };
  if constexpr (std::is_arithmetic_v<T>) {
    check(static_cast<double>(out));
  } else {
    for (const auto& v : out) check(static_cast<double>(v));
  }
  return *this;
}

template <typename T>
T Section::require(const std::string& key) {
  known_.insert(key);
  if (!has(key)) fail("{}: required key is missing", where(key));
  return convert<T>(key, node_[key]);
}

Section& Section::get_choice(const std::string& key, std::string& out,
                             const std::vector<std::string>& choices) {
  get(key, out);
  if (std::find(choices.begin(), choices.end(), out) == choices.end()) {
    std::string all;
    for (const auto& c : choices) all += (all.empty() ? "" : ", ") + c;
    std::string hint = did_you_mean(out, choices);
    fail("{}: '{}' is not one of [{}]{}", where(key), out, all,
         hint.empty() ? "" : " (did you mean '" + hint + "'?)");
  }
  return *this;
}

Section Section::sub(const std::string& key) {
  known_.insert(key);
  if (has(key)) {
    YAML::Node n = node_[key];
    if (!n.IsMap())
      fail("{}: expected a mapping of keys, got {}", where(key), type_name(n));
    return Section(n, full(key), cfg_);
  }
  return Section(YAML::Node(YAML::NodeType::Map), full(key), cfg_);
}

Section Section::item(const std::string& key, size_t index) const {
  const std::string k = key + "." + std::to_string(index);
  if (!has(key) || !node_[key].IsSequence() || index >= node_[key].size())
    fail("{}: no list item {}", where(key), index);
  YAML::Node n = node_[key][index];
  if (!n.IsMap()) fail("{}: expected a mapping of keys, got {}", where(k), type_name(n));
  return Section(n, full(k), cfg_);
}

void Section::finish() const {
  if (!node_.IsMap()) return;
  std::vector<std::string> cands(known_.begin(), known_.end());
  for (const auto& kv : node_) {
    const std::string key = kv.first.Scalar();
    if (known_.count(key)) continue;
    std::string hint = did_you_mean(key, cands);
    fail("{}: unknown key '{}'{}", cfg_->where(full(key)), full(key),
         hint.empty() ? "" : " (did you mean '" + full(hint) + "'?)");
  }
}

#define HL_INSTANTIATE(T)                                           \
  template Section& Section::get<T>(const std::string&, T&);        \
  template Section& Section::get<T>(const std::string&, T&, Range); \
  template T Section::require<T>(const std::string&);
HL_INSTANTIATE(int)
HL_INSTANTIATE(int64_t)
HL_INSTANTIATE(double)
HL_INSTANTIATE(float)
HL_INSTANTIATE(std::vector<int>)
HL_INSTANTIATE(std::vector<int64_t>)
HL_INSTANTIATE(std::vector<double>)
#undef HL_INSTANTIATE
template Section& Section::get<bool>(const std::string&, bool&);
template bool Section::require<bool>(const std::string&);
template Section& Section::get<std::string>(const std::string&, std::string&);
template std::string Section::require<std::string>(const std::string&);
template Section& Section::get<std::vector<std::string>>(
    const std::string&, std::vector<std::string>&);
template std::vector<std::string> Section::require<std::vector<std::string>>(
    const std::string&);

namespace {
void flatten(const YAML::Node& n, const std::string& prefix,
             std::map<std::string, std::string>& out) {
  if (n.IsMap()) {
    for (const auto& kv : n)
      flatten(kv.second, prefix.empty() ? kv.first.Scalar() : prefix + "." + kv.first.Scalar(),
              out);
  } else if (n.IsSequence()) {
    for (size_t i = 0; i < n.size(); ++i) flatten(n[i], fmt::format("{}[{}]", prefix, i), out);
    if (n.size() == 0) out[prefix] = "[]";
  } else if (n.IsScalar()) {
    out[prefix] = n.Scalar();
  } else {
    out[prefix] = "~";
  }
}
}  // namespace

std::map<std::string, std::string> flat_keys(const Config& cfg,
                                             const std::vector<std::string>& tops) {
  std::map<std::string, std::string> out;
  for (const auto& t : tops)
    if (cfg.node()[t]) flatten(cfg.node()[t], t, out);
  return out;
}

std::vector<std::string> key_differences(const std::map<std::string, std::string>& a,
                                         const std::map<std::string, std::string>& b) {
  std::vector<std::string> d;
  auto show = [](const std::map<std::string, std::string>& m, const std::string& k) {
    auto it = m.find(k);
    return it == m.end() ? std::string("(not set)") : it->second;
  };
  std::set<std::string> keys;
  for (const auto& kv : a) keys.insert(kv.first);
  for (const auto& kv : b) keys.insert(kv.first);
  for (const auto& k : keys)
    if (show(a, k) != show(b, k)) d.push_back(fmt::format("{}: {} -> {}", k, show(a, k), show(b, k)));
  return d;
}

}  // namespace hashlab
