// WSL (Zheng & Huang, AAAI 2018) as a Method: the paper's linear,
// unsupervised setting, fitted bit by bit (Algorithm 1). wsl.h beside it holds
// the W-shape loss, the kNN graph and the sub-problem.
//
// model:
//   bits: 32
//   mu: 0.05              # consistency weight (paper)
//   nu: 0.6               # orthogonality multiplier (paper)
//   scaling: normalized   # normalized: L/N, R/N, O/N^2 | paper: the literal sums
//   value: quartic        # the quantization value MMA minimises and the acceptance
//                         # test compares: quartic ((f^2-1)^2) | ln (the W-shape loss);
//                         # the gradient is the paper's surrogate either way
//   knn: 10               # neighbours of the heat-kernel graph S
//   heat_t: 0             # S_ij = exp(-d^2 / t); 0: t = mean kNN squared distance
//                         # (the paper names only "the basic Laplacian", as in
//                         # spectral hashing. k = 10 and t = the mean kNN squared
//                         # distance are the usual heat-kernel choices (LPP, AGH):
//                         # S then does not depend on the data's units, and every
//                         # node keeps a handful of strong edges)
//   init: pca             # pca | random | itq (the bits start from these projections,
//                         # each scaled so that f has unit standard deviation)
//   max_rounds: 5         # rounds t of Algorithm 1 (fewer when a round accepts nothing)
//   mma_maxeval: 50       # MMA evaluations per bit and round
//   mma_xtol_rel: 1e-6    # MMA's relative tolerance on w
//   max_train: 10000      # fit on this many training items (a seeded subset; 0 = all)
//
// Fit. The features are flattened, centred by their mean (saved), and a
// seeded subset of max_train rows is kept (the kNN graph and every MMA
// evaluation scale with it). Each unit of work is one bit k of one round t:
// minimise Lagrangian(w_k) = L + mu R + nu O (wsl.h, LinearBitProblem) with
// NLopt's LD_MMA from w_k^{t-1}, accept the result only when eq. 12 holds
// (the Lagrangian fell, and by more than O rose), else keep w_k^{t-1}. The fit
// stops when a round accepts no bit, or after max_rounds. Each unit logs a
// "train" record: round, bit, accepted, evaluations, the Lagrangian and its
// terms (loss = the ln W-shape loss, loss_quartic, consistency, orthogonality,
// all scaled as `scaling` says) at the kept w_k; a checkpoint follows every
// unit, so SIGINT and --resume continue exactly.
//
// Codes: sign((x - mean) W), sign(0) = +1; exported as a linear hasher.
//
// wsl_mlp — the deep variant (beyond the paper, which says any differentiable f
// works): f = head(backbone(x)) (models/backbones, default mlp [1024]), trained
// by the default step on each batch's wsl_batch_terms (wsl.h): the W-shape loss
// with its surrogate gradient, the consistency over a kNN heat-kernel graph of
// the batch's inputs (knn neighbours within the batch, t = their mean squared
// distance), and the orthogonality over the batch; mu, nu and scaling as above.
//   model: {bits, backbone, mu, nu, scaling, knn}
#pragma once

#include "trainers/method.h"

namespace hashlab {

// Registers "wsl" and "wsl_mlp".
void register_wsl(MethodRegistry& registry);

}  // namespace hashlab
