// SiGAH as a Method: two named optimizers ("generator": W, W_g, c_g;
// "discriminator": Enc, Dec) stepped alternately on each batch, in EBGAN's
// order (sigah.h beside it holds the networks and the loss terms).
//
// model:
//   bits: 32
//   alpha: 1.0e-3          # quantization weight (paper: 1e-3; 0.1 on Tiny100K)
//   lambda: 1.0e-4         # ||g|| weight
//   beta: 0.1              # discriminator margin (eq. 21)
//   gamma: 1.0e-4          # graph weight (eq. 17)
//   adv_weight: 1          # EBGAN's generator term mean e(x^) (eq. 20 omits it)
//   quant: bound           # bound: sum (1 - h^2) (eq. 9) | literal: +Tr(h h^T) as printed
//   graph: mean            # mean: 1/N^2 sum S ||h_i - h_j||^2 | paper: sum S ||h_i - h_j||
//   sigma: 0               # S_ij = exp(-sigma ||x_i - x_j||) on normalised inputs; 0: set
//                          # by sigma_rule from the first 4 batches of the training stream
//   sigma_rule: knn        # knn: 1 / mean distance to the sigma_k-th nearest item of a batch
//                          # (a local scale); mean: 1 / mean pairwise distance
//   sigma_k: 10
//   input_norm: rms        # rms: inputs (x - mean) / rho, rho the RMS of the centred training
//                          # values (the weights then mean the same in any data unit); none
//   straight_through: false  # the generator reads sign(h), gradient through tanh
//   init_gain: 0           # 0: LibTorch's default init; g > 0: every weight ~ N(0, g^2/fan_in)
//   activation: leaky_relu # generator activation: leaky_relu | relu (Table 5)
//   slope: 0.2             # LeakyReLU slope
//   discriminator: true    # false: "w/o discriminator" (no D training, adv term 0; Table 4)
//   gen_dim: 0             # m; 0 = 2 d
//   disc_hidden: 50        # d_l
//
// Inputs are flattened, centred by the training set's mean and divided by
// rho (input_norm: rms), both saved with the model: the paper is silent;
// sign(Wx) without a bias on non-negative pixels gives unbalanced bits, and
// the loss weights are absolute numbers whose effect would otherwise depend on
// the unit the data is stored in.
//
// One step: the forward pass once (h, g, x^); the discriminator's update on
// L_D with x^ detached (only Enc/Dec move); then the generator's update on L_G
// through the updated, frozen discriminator (W, W_g, c_g move; Psi never).
// Logged: loss_d, energy_real, energy_fake, loss_g, recon, quant, sparsity,
// graph, adv (the curves of the paper's Fig. 7). Each loss is evaluated once,
// so re-evaluating optimizers (lbfgs) are refused. Weight decay applies to
// weights, not biases.
//
// Codes: sign(W (x - mean) / rho); exported as a linear hasher with centring.
#pragma once

#include "trainers/method.h"

namespace hashlab {

// Registers "sigah".
void register_sigah(MethodRegistry& registry);

}  // namespace hashlab
