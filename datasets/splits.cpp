#include "datasets/splits.h"

#include <algorithm>
#include <numeric>

#include "csrc/core/error.h"

namespace hashlab::data {

void fisher_yates(std::vector<int64_t>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    size_t j = static_cast<size_t>(uniform_below(rng, i));
    std::swap(v[i - 1], v[j]);
  }
}

std::vector<int64_t> permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  std::mt19937_64 rng(seed);
  fisher_yates(v, rng);
  return v;
}

namespace {

torch::Tensor sorted_tensor(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return torch::tensor(v, torch::kInt64);
}

// The first `k` of a shuffled copy of `from`.
std::vector<int64_t> draw(std::vector<int64_t> from, int64_t k, std::mt19937_64& rng) {
  fisher_yates(from, rng);
  from.resize(static_cast<size_t>(k));
  return from;
}

std::vector<int64_t> complement(int64_t n, const std::vector<int64_t>& taken) {
  std::vector<char> used(static_cast<size_t>(n), 0);
  for (int64_t i : taken) used[static_cast<size_t>(i)] = 1;
  std::vector<int64_t> rest;
  rest.reserve(static_cast<size_t>(n) - taken.size());
  for (int64_t i = 0; i < n; ++i)
    if (!used[static_cast<size_t>(i)]) rest.push_back(i);
  return rest;
}

// `from` without the items of `drop` (indices < n), in `from`'s order.
std::vector<int64_t> without(std::vector<int64_t> from, const std::vector<int64_t>& drop,
                             int64_t n) {
  std::vector<char> dropped(static_cast<size_t>(n), 0);
  for (int64_t i : drop) dropped[static_cast<size_t>(i)] = 1;
  from.erase(std::remove_if(from.begin(), from.end(),
                            [&](int64_t i) { return dropped[static_cast<size_t>(i)] != 0; }),
             from.end());
  return from;
}

// Pool indices of each class, ascending, restricted to `among`.
std::vector<std::vector<int64_t>> by_class(const torch::Tensor& labels, int64_t num_classes,
                                           const std::vector<int64_t>& among) {
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(num_classes));
  torch::Tensor l = labels.to(torch::kCPU).to(torch::kInt64).contiguous();
  const int64_t* p = l.data_ptr<int64_t>();
  for (int64_t i : among) out[static_cast<size_t>(p[i])].push_back(i);
  return out;
}

}  // namespace

Split make_split(const Dataset& d, const DataOptions& o) {
  const int64_t n = d.size();
  std::mt19937_64 rng(static_cast<uint64_t>(o.split_seed));
  std::vector<int64_t> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  const bool per_class = o.protocol == Protocol::label && d.has_labels() && !d.multi_label;
  if (o.protocol == Protocol::label && !d.has_labels())
    fail("data: the label protocol needs labels; {} has none (use protocol: euclidean)", d.name);

  // Queries drawn from `among` (per class, or num_queries at random).
  // `what`: the items drawn from, `from`: their set ("items", "the pool").
  auto draw_queries = [&](const std::vector<int64_t>& among, const char* what, const char* from) {
    std::vector<int64_t> query;
    if (per_class) {
      auto classes = by_class(d.labels, d.num_classes, among);
      for (size_t c = 0; c < classes.size(); ++c) {
        if (static_cast<int64_t>(classes[c].size()) < o.queries_per_class)
          fail("data: class {} has {} {}, fewer than queries_per_class = {}", c,
               classes[c].size(), what, o.queries_per_class);
        auto q = draw(classes[c], o.queries_per_class, rng);
        query.insert(query.end(), q.begin(), q.end());
      }
    } else {
      if (o.num_queries > static_cast<int64_t>(among.size()))
        fail("data: num_queries = {} but {} has only {} items", o.num_queries, from,
             among.size());
      query = draw(among, o.num_queries, rng);
    }
    return query;
  };
  std::vector<int64_t> query, database, train;
  const bool by_files = d.roles.defined();
  if (by_files) {
    TORCH_CHECK(d.roles.numel() == n, "make_split: ", d.roles.numel(), " roles for ", n, " items");
    torch::Tensor r = d.roles.contiguous();
    const uint8_t* rp = r.data_ptr<uint8_t>();
    for (int64_t i = 0; i < n; ++i) {
      const auto role = static_cast<ItemRole>(rp[i]);
      (role == ItemRole::query ? query : role == ItemRole::train ? train : database).push_back(i);
    }
    if (query.empty() || database.empty())
      fail("data: the files give {} queries and {} database items (data.roles); both are needed",
           query.size(), database.size());
  } else {
    query = draw_queries(all, "items", "the pool");
    database = complement(n, query);
  }
  if (o.validation) {
    // The test queries are set aside; validation queries come from the database.
    query = draw_queries(database, "database items (validation)",
                         "the database (validation)");
    database = without(std::move(database), query, n);
  }
  torch::Tensor true_neighbors;
  if (d.true_neighbors.defined() && !o.validation) {
    if (d.true_neighbors.size(0) != static_cast<int64_t>(query.size()) ||
        d.true_neighbors.max().item<int64_t>() >= static_cast<int64_t>(database.size()))
      fail("data: the ground truth ({} queries, ids up to {}) does not fit the split ({} queries, "
           "{} database items)",
           d.true_neighbors.size(0), d.true_neighbors.max().item<int64_t>(), query.size(),
           database.size());
    true_neighbors = d.true_neighbors;
  }

  if (!by_files || train.empty()) train = database;
  if (o.train_per_class > 0) {
    if (!per_class)
      fail("data: train_per_class needs single-label data and the label protocol (use "
           "num_train)");
    auto classes = by_class(d.labels, d.num_classes, train);
    train.clear();
    for (size_t c = 0; c < classes.size(); ++c) {
      if (static_cast<int64_t>(classes[c].size()) < o.train_per_class)
        fail("data: class {} has {} {} items, fewer than train_per_class = {}", c,
             classes[c].size(), by_files ? "training" : "database", o.train_per_class);
      auto t = draw(classes[c], o.train_per_class, rng);
      train.insert(train.end(), t.begin(), t.end());
    }
    std::sort(train.begin(), train.end());
  }
  if (o.num_train > 0) {
    if (o.num_train > static_cast<int64_t>(train.size()))
      fail("data: num_train = {} but only {} training candidates remain", o.num_train,
           train.size());
    train = draw(train, o.num_train, rng);
  }
  if (o.database == "train") {
    database = train;
  } else if (o.database == "rest_without_train") {
    database = without(std::move(database), train, n);
    if (database.empty())
      fail("data: database: rest_without_train leaves no database item (the training set is the "
           "whole rest; set train_per_class or num_train)");
  } else if (o.database != "rest") {
    fail("data.database: unknown value '{}' (rest, rest_without_train or train)", o.database);
  }
  return Split{sorted_tensor(std::move(query)), sorted_tensor(std::move(database)),
               sorted_tensor(std::move(train)), true_neighbors};
}

}  // namespace hashlab::data
