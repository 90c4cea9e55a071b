// Auto-JacoBin's Jacobian term (Auto-JacoBin, eq. 3-4), in closed form for its
// two-layer tanh auto-encoder, without a D x D tensor per item.
//
// The network (x in R^D, d hidden units = bits):
//   a1 = W1 x + b1,  y = tanh(a1),  s = 1 - y^2          W1 [d, D], b1 [d]
//   a2 = W2 y + b2,  z = tanh(a2),  r = 1 - z^2          W2 [D, d], b2 [D]
// Its Jacobian at x is G = dz/dx = diag(r) W2 diag(s) W1   [D, D]
// (eq. 4 prints G^T, which has the same norm). With T [D, d] the item's
// tangent basis (orthonormal columns, zero-padded), the term is
//   ||G - T T^T||_F^2 = ||G||^2 - 2 tr(T^T G T) + ||T T^T||^2
//                     = s^T (K o Q) s - 2 s^T rowsum(P o U) + rank(T)
// with Q = W1 W1^T, K = W2^T diag(r^2) W2, P = W1 T, U = W2^T diag(r) T
// (all [d, d]; o the elementwise product). Summed over the batch (the paper
// sums, it does not average).
//
// jacobian_term(x, W1, b1, W2, b2, T) is that sum as a torch::autograd::Function
// with a hand-written backward (derived in jacobian_term.cpp), gradients for
// W1, b1, W2, b2 (x and T are data). Shapes:
//   x [B, D], W1 [d, D], b1 [d], W2 [D, d], b2 [D], T [B, D, d]  ->  scalar.
// Memory O(B (d^2 + D d)): the largest temporaries are [B, D, d] (r o T,
// W2 M_b, W2 Gu_b, W2^T diag(r_b^2) before its product with W2).
// rank(T) is the number of non-zero columns of each T (columns are unit or 0),
// added as a constant (it has no gradient).
//
// jacobian_term_reference(...) builds each G with autograd (one grad per output
// with create_graph) and sums ||G - T T^T||^2: O(B D^2) memory, for tests and
// the benchmark only.
#pragma once

#include <torch/torch.h>

namespace hashlab::models {

torch::Tensor jacobian_term(const torch::Tensor& x, const torch::Tensor& W1,
                            const torch::Tensor& b1, const torch::Tensor& W2,
                            const torch::Tensor& b2, const torch::Tensor& T);

torch::Tensor jacobian_term_reference(const torch::Tensor& x, const torch::Tensor& W1,
                                      const torch::Tensor& b1, const torch::Tensor& W2,
                                      const torch::Tensor& b2, const torch::Tensor& T);

}  // namespace hashlab::models
