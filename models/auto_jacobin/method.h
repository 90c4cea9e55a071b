// Auto-JacoBin (auto-encoder Jacobian binary hashing) and its AutoBin variants
// as one Method: a two-layer tanh auto-encoder whose hidden signs are the codes
// (../shared/papers/auto_jacobin.md, §III, eqs. 4-5, Algorithm 1).
//
//   p  = x, or (x - mu) P            input_pca: N > 0: the top N principal directions P
//                                    [D_in, N] and mean mu of the training set (stored)
//   x' = s p                         s = scale / max ||p|| over the training set (stored)
//   y  = tanh(W1 x' + b1)            W1 [d, D], b1 [d]     d = bits
//   z  = tanh(W2 y + b2)             W2 [D, d], b2 [D]
//   codes: sign(W1 x' + b1) (code_bias: true) or sign(W1 x') (false, as the paper prints)
//
// Cost of one mini-batch X [B, D] (sums, as in eq. 5; Y [B, d] the hidden layer):
//   C = Σ_i ||x_i - z_i||^2                                      recon
//     + Σ_i ||G_i - T_i T_i^T||_F^2      (jacobian: true)        jacobian (jacobian_term.h)
//     + α Σ_{n,m} sqrt((Y^T Y - B I)^2_{nm} + ε)                 binary (eq. 5's N I read as B I)
//     + λ Σ_i ||∂y_i/∂x_i||_F^2 = λ Σ_i Σ_k (1 - y_ik^2)^2 ||W1_k||^2   contractive (CAutoBin)
// With noise t > 0 (DAutoBin) the network reads x with each entry zeroed with
// probability t (eq. 8) and reconstructs the clean x; the Jacobian and
// contractive terms are taken at the clean x. T_i [D, d] is the local tangent
// basis of training item i (tangents.h: local PCA of its D + d nearest training
// points), computed once before the first step and found for a batch through
// the items' pool indices.
//
// Variants (configs/auto_jacobin/*autobin*.yaml): AutoBin = jacobian: false; DAutoBin =
// jacobian: false, noise: t; CAutoBin = jacobian: false, contractive: λ.
//
// Initialisation (§III-B, applied when training starts, not on resume):
// μ the mean of the scaled training data, P the top-d principal directions,
// R a seeded random rotation: W1 = (P R)^T, W2 = W1^T, b1 = -W1 μ, b2 = μ.
//
// Optimiser: the config's `optim` (lbfgs, history 1, one iteration per batch,
// strong Wolfe, reset each step: each step is one steepest-descent step with a
// Wolfe step length, minFunc's first iteration). The closure re-evaluates the
// same batch with the same noise mask.
//
// model:
//   bits: 32
//   alpha: 0.1            # α
//   epsilon: 1.0e-4       # ε
//   jacobian: true        # the first-order term (false: AutoBin)
//   noise: 0              # t: DAutoBin's drop probability
//   contractive: 0        # λ: CAutoBin's weight
//   scale: 0.8            # s = scale / max ||x||
//   code_bias: true       # codes sign(W1 x' + b1); false: sign(W1 x'); changes only encoding
//   input_pca: 0          # N > 0: the auto-encoder reads the top-N PCA projection (D = N);
//                         # bits: N = bits, the paper's d = D regime on high-dimensional data
//   tangents:
//     neighbours: 0       # 0: D + d
//     energy: 0.98
//     iters: 2            # subspace iterations (accuracy: tests LocalTangents.*)
//     oversample: 8
//     block: 64
//
// Logged per step: loss (the cost), recon, jacobian, binary, contractive,
// evals (closure evaluations of the step). Once: an "auto_jacobin" record with
// the scale, the tangents' time and the kept-direction counts.
// Export: a linear hasher with W = s W1^T and bias b1 (or none); with the
// input PCA, W = s P W1^T and bias b1 - mu^T W (or -mu^T W).
#pragma once

#include "trainers/method.h"

namespace hashlab {

// Registers "auto_jacobin".
void register_auto_jacobin(MethodRegistry& registry);

}  // namespace hashlab
