// HashNet as a Method (hashnet.h beside it holds the network, the loss and the
// continuation schedule).
//
// model:
//   bits: 64
//   backbone: {name: small_cnn, feature_dim: 512}    # or {name: mlp, widths: [1024, 1024]}; models/backbones/backbone.h
//   alpha: 0               # sigmoid scale; 0 = 10 / bits (thuml/HashNet)
//   weighting: paper       # paper (eq. 2) | code (released code) | none (HashNet-W)
//   class_weight: 0        # `code` weighting's similar-pair factor; 0 = number of classes
//   pairs: all             # all: every pair of distinct batch items;
//                          # halves: first half x second half (the authors' two loaders)
//   continuation: {type: hashnet, init: 1, gamma: 0.005, power: 0.5, every: 200}
//                          # beta schedule: HashNetContinuation (hashnet.h), or any
//                          # type of trainers/schedules.h ({type: constant, init: 1}
//                          # = HashNet-C, plain tanh); `type` defaults to hashnet
//   hash_lr_mult: 10       # fch learning rate / backbone learning rate
//
// Pairs. The authors' code draws two batches per step (both with gradients)
// and scores only the pairs between them. A batch of 2n with pairs: halves is
// exactly that; the default `all` scores every pair of distinct items of the
// one batch, which contains those pairs and adds the within-half ones at no
// extra forward cost. Previous batches are not reused (their outputs would be
// stale: computed by older weights and smaller beta).
//
// Step losses: "loss" (J(g), g = tanh(beta z), minimised) and "loss_binary"
// (the same loss on h = sgn(z), no gradient: the paper's Fig. 6 diagnostic; the
// two meet when the codes are binary). status(): beta. after_train writes the
// metrics event "code_histogram": counts of |tanh(beta z)| in 100 bins over
// [0, 1] on the first 512 items of the training stream's first epoch (from
// ctx.training_set(), without augmentation), plus the fraction with |g| > 0.99.
// embed(x) = tanh(beta z); encode = sign bits of it (= bits of z).
#pragma once

#include "trainers/method.h"

// register_hashnet also adds the "hashnet" type to scalar_schedule_registry().

namespace hashlab {

void register_hashnet(MethodRegistry& registry);

}  // namespace hashlab
