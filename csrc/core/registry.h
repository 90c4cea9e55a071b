// A name -> factory registry. Registration is explicit (a function with one
// line per entry, e.g. register_builtin_methods()) rather than static
// initialisers, which static libraries silently drop.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "csrc/core/config.h"
#include "csrc/core/error.h"

namespace hashlab {

template <typename T, typename... Args>
class Registry {
 public:
  using Factory = std::function<std::unique_ptr<T>(Args...)>;

  // A name registered twice is a programming error (two folders claiming
  // one name): refused rather than the later entry silently winning.
  void add(const std::string& name, Factory f, std::string help = "") {
    if (!entries_.emplace(name, Entry{std::move(f), std::move(help)}).second)
      fail("{} registry: '{}' is registered twice", kind_, name);
  }
  bool has(const std::string& name) const { return entries_.count(name) > 0; }
  std::unique_ptr<T> create(const std::string& name, const std::string& where,
                            Args... args) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      std::string all;
      for (const auto& kv : entries_) all += (all.empty() ? "" : ", ") + kv.first;
      std::string hint = did_you_mean(name, names());
      fail("{}: unknown {} '{}' (known: {}){}", where, kind_, name, all,
           hint.empty() ? "" : " (did you mean '" + hint + "'?)");
    }
    return it->second.factory(std::forward<Args>(args)...);
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& kv : entries_) out.push_back(kv.first);
    return out;
  }
  std::string help(const std::string& name) const { return entries_.at(name).help; }
  explicit Registry(std::string kind) : kind_(std::move(kind)) {}

 private:
  struct Entry {
    Factory factory;
    std::string help;
  };
  std::string kind_;
  std::map<std::string, Entry> entries_;
};

}  // namespace hashlab
