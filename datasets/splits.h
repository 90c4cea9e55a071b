// Query / database / training splits of a pooled dataset (PROTOCOLS.md).
//
// Label protocol, single-label data: for each class c = 0..C-1 in order,
// the pool indices of class c (ascending) are shuffled and the first
// queries_per_class become queries; the database is every other item. The
// training set is the database, or train_per_class items of each class drawn
// the same way from the database; num_train > 0 then keeps a random subset
// of that many. Multi-label data (no per-class draw) and the Euclidean
// protocol take num_queries random queries instead; the database is the rest.
//
// validation: true carves a validation split for choosing hyperparameters:
// the queries above are set aside (never returned), validation queries are
// drawn from the database exactly as the queries were drawn from the pool
// (same counts, the same generator continuing), and they become `query`; the
// database and the training set are then taken from what remains.
//
// data.database changes what the database is: "rest_without_train" removes
// the training set from it, "train" makes it the training set.
//
// data.roles: the files give the split (query, database, training files);
// validation then draws its queries from the database items as above and the
// query files are set aside. The training set is no subset of the database
// when it comes from its own files.
//
// All three index tensors are int64, sorted ascending, into the pool.
// Randomness: one std::mt19937_64 seeded with split_seed and a Fisher-Yates
// shuffle drawing with uniform_below, so a seed gives the same split with
// every standard library.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include <torch/torch.h>

#include "datasets/dataset.h"

namespace hashlab::data {

struct Split {
  torch::Tensor query;     // int64 [Q]
  torch::Tensor database;  // int64 [N - Q]
  torch::Tensor train;     // int64 [T]: a subset of database, unless data.roles or
                           // data.database say otherwise
  // int64 [Q, k]: each query's true nearest neighbours as positions in
  // `database` (from data.ground_truth; undefined when there is none, and
  // under validation).
  torch::Tensor true_neighbors;
};

Split make_split(const Dataset& d, const DataOptions& o);

// In-place Fisher-Yates: for i = n-1..1 swap v[i] with v[uniform_below(i+1)].
void fisher_yates(std::vector<int64_t>& v, std::mt19937_64& rng);

// The permutation of 0..n-1 for `seed` (identical across standard libraries).
std::vector<int64_t> permutation(int64_t n, uint64_t seed);

}  // namespace hashlab::data
