// YAML configuration: `_base_` inheritance, dotted command-line overrides,
// and typed, strictly checked reading into option structs.
//
//   Config cfg = Config::load("configs/hashnet/hashnet_fmnist.yaml", {"model.bits=32"});
//   Section m = cfg.section("model");
//   m.get("bits", opts.bits, Range{1, 4096});
//   m.finish();   // rejects keys nobody asked for, with file:line:col and a suggestion
//
// `_base_` is a path or a list of paths, relative to the file that names it;
// bases are merged in order, then the file itself on top. Maps merge key by
// key, everything else (scalars, lists) is replaced. Every key remembers where
// its value came from ("file:line:col" or "command line 'k=v'") so errors can
// point there.
#pragma once

#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "csrc/core/error.h"

namespace hashlab {

struct Range {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
};

class Section;

class Config {
 public:
  Config();
  // Loads `path` with its `_base_` chain and applies `overrides` ("a.b=value",
  // value parsed as YAML so `x=[1,2]` is a list and `x=1e-3` a float).
  static Config load(const std::string& path,
                     const std::vector<std::string>& overrides = {});
  static Config from_string(const std::string& yaml_text,
                            const std::string& name = "<string>");

  void apply_override(const std::string& assignment);
  // Sets a value programmatically (e.g. defaults chosen by a command).
  void set(const std::string& dotted_key, const YAML::Node& value,
           const std::string& origin);

  Section section(const std::string& key) const;
  Section root() const;
  std::string dump() const;  // resolved YAML, with `_base_` removed
  const YAML::Node& node() const { return root_; }
  std::string where(const std::string& dotted_key) const;
  const std::string& path() const { return path_; }

 private:
  friend class Section;
  YAML::Node root_;
  std::map<std::string, std::string> where_;
  std::string path_;
};

// A view of one mapping in the config, with strict typed accessors.
class Section {
 public:
  Section(YAML::Node node, std::string prefix, const Config* cfg);

  bool has(const std::string& key) const;
  // Optional key: leaves `out` at its default when absent.
  template <typename T>
  Section& get(const std::string& key, T& out);
  template <typename T>
  Section& get(const std::string& key, T& out, Range range);
  // One of a fixed set of strings.
  Section& get_choice(const std::string& key, std::string& out,
                      const std::vector<std::string>& choices);
  // Required key.
  template <typename T>
  T require(const std::string& key);
  // Nested mapping (empty section when absent). Marks `key` as known.
  Section sub(const std::string& key);
  // Item `index` of the list under `key`, which must be a mapping
  // (locations "key.index.sub"). Does not mark `key` as known.
  Section item(const std::string& key, size_t index) const;
  // Declares keys as known without reading them (read by someone else).
  Section& known(const std::vector<std::string>& keys);
  // Throws hashlab::Error for the first key that was never asked for.
  void finish() const;

  std::string full(const std::string& key) const;   // dotted path
  std::string where(const std::string& key) const;  // "file:line:col: path"
  const YAML::Node& node() const { return node_; }

 private:
  template <typename T>
  T convert(const std::string& key, const YAML::Node& n) const;
  YAML::Node node_;
  std::string prefix_;
  const Config* cfg_;
  std::set<std::string> known_;
};

// Levenshtein-based suggestion: best candidate within a small edit distance,
// or "" when nothing is close.
std::string did_you_mean(const std::string& word,
                         const std::vector<std::string>& candidates);

// "auto" or a positive integer; "auto" -> hardware concurrency.
int resolve_threads(const std::string& value, const std::string& where);

// The sections `tops` of `cfg` as dotted keys ("model.bits" -> "64";
// sequences as "key[0]", an empty one as "[]"), for comparing configs.
std::map<std::string, std::string> flat_keys(const Config& cfg,
                                             const std::vector<std::string>& tops);
// "key: A -> B" for every key whose value differs between `a` and `b`
// ("(not set)" for a missing one).
std::vector<std::string> key_differences(const std::map<std::string, std::string>& a,
                                         const std::map<std::string, std::string>& b);

}  // namespace hashlab
