// DeepQuan (Chen, Cheung, Wang; IJCAI 2018) and its ablations as Methods
// (deepquan.h beside it holds the network and the losses, export.h the hasher).
//
// deepquan — auto-encoder pretraining, then alternating optimisation
// (section 3.3): optimizer steps on eq. 4 with the codebooks fixed, and every epoch
// the codebooks C and assignments h refreshed by seeded k-means on the codes z
// of the whole training set.
//
// model:
//   M: 8                   # subspaces; or `bits: 64` (= 8 M). Code = M uint8 ids
//   K: 256                 # codewords per subspace (2..256)
//   code_dim: 0            # L; 0 = 16 M
//   widths: [500, 500, 2000]
//   pretrain_steps: 1000   # first steps train the auto-encoder on eq. 3 only
//   margin: 1.0            # s of eq. 2
//   lambda: 0.1            # λ of eq. 2 (MNIST setting)
//   eta: 1.0               # η of eq. 4
//   loss: triplet          # triplet (eq. 2) | quad (eq. 1, the "Quad" ablation)
//   triplet: concat        # concat: eq. 2 on the concatenated codewords (one hinge
//                          # per item); subspace: one hinge per subspace, summed
//   reconstruction: true   # false: η = 0 after pretraining (the "WTPs" / "Quad" ablations)
//   kmeans_iters: 25
//
// Step. Items are flattened to x [N, D]; z = f(x). During pretraining the
// loss is η R, R = mean ||x − g(z)||². Afterwards the positive codewords are the
// ones the item was assigned to at the last refresh (looked up by the batch's
// pool index; an item the refresh did not see gets its nearest codeword
// now), one random negative per subspace (sample_negative_ids, global CPU
// RNG), and the loss is J + η R (or the quadratic loss of eq. 1 + η R).
// Logged: "loss", "quantization" (J or eq. 1) and "reconstruction" (R, also
// when not minimised).
//
// Refresh. before_train caches the training features: the items of the
// training stream's first epoch in the order the loader yields them
// (ctx.training_set().epoch_rows(0), drop_last applied), on the CPU. The first refresh happens when
// pretraining ends (or in before_train when pretrain_steps is 0), then on
// every epoch change, and once more in after_train so the codebooks quantise
// the final encoder's codes. Each refresh runs search::pq_train (k-means++,
// seed = model seed + refresh count) and writes the metrics event
// "codebook_refresh" {step, epoch, quantization_error (mean ||z − q(z)||²),
// codeword_distance (mean distance between codewords of a codebook: the
// paper's Fig. 2a diagnostic)}. Each refresh is a fresh k-means (the k-means
// API has no warm start), so ids are not comparable across refreshes.
// After a resume the assignments are re-derived from the restored codebooks.
//
// dae_pq — the "DAE-PQ" ablation: the same auto-encoder trained on eq. 3 for
// every step, then PQ on its codes (after_train). Options as deepquan minus
// the triplet ones (M/bits, K, code_dim, widths, eta, kmeans_iters).
//
// pq — the "PQ" ablation: product quantization of the raw (preprocessed,
// flattened) features, fitted directly (no trainer). model: {M or bits, K,
// kmeans_iters}; M must divide the input dimension.
//
// All three: code_kind() pq, nbits() = 8 M (one byte per subspace),
// embed(x) = the continuous vector that is quantised, encode(x) = uint8
// ids [N, M], save/load the network and the codebooks, to_torchscript builds
// models/deepquan/export.h's PQ hasher.
#pragma once

#include "trainers/method.h"

namespace hashlab {

// Registers "deepquan", "dae_pq" and "pq".
void register_deepquan(MethodRegistry& registry);

}  // namespace hashlab
