#!/usr/bin/env bash
# Training throughput of hashlab's HashNet step against the same model and
# step in Python PyTorch (tools/bench_train.py), same machine, same data, run
# one after the other. Synthetic uint8 images (random pixels, 10 classes) are
# written as .npy, so no dataset is needed on the GPU machine.
#
#   tools/bench_train.sh [--backbone resnet50] [--size 224] [--batch 64]
#                        [--iters 60] [--warmup 10] [--device cuda] [--amp 1]
#                        [--threads N] [--rounds R]
#
# Ours: images/s = batch / mean sec_per_step of the train records after the
# warm-up (metrics.jsonl). Peer: the same number over its timed steps. Prints
# both and ours / peer, and the same for the best 5-step window of each (the
# train records' windows; the least disturbed by other guests). With --rounds R > 1 the two run R times each in the
# order ours, peer, peer, ours, ... (a machine whose speed drifts favours
# neither), and the last line gives every round's ratio and their median:
# on a VM shared with other guests one pair's ratio moves by 10% or more. HASHLAB (default build/hashlab), PYTHON (default
# python3) pick the binaries; tools/gpu_check.sh runs it on a GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
HASHLAB=${HASHLAB:-${BUILD_DIR:-build}/hashlab}
PYTHON=${PYTHON:-python3}
BACKBONE=resnet50 SIZE=224 BATCH=64 ITERS=60 WARMUP=10 DEVICE=cuda AMP=1 THREADS=0 ROUNDS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --backbone) BACKBONE=$2 ;; --size) SIZE=$2 ;; --batch) BATCH=$2 ;; --iters) ITERS=$2 ;;
    --warmup) WARMUP=$2 ;; --device) DEVICE=$2 ;; --amp) AMP=$2 ;; --threads) THREADS=$2 ;;
    --rounds) ROUNDS=$2 ;;
    *) echo "bench_train: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift 2
done
[ "$WARMUP" -gt 0 ] && [ "$ITERS" -gt 0 ] && [ $((WARMUP % 5)) -eq 0 ] && [ $((ITERS % 5)) -eq 0 ] ||
  { echo "bench_train: --warmup and --iters must be positive multiples of 5" >&2; exit 2; }
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "bench_train: --rounds must be a positive integer, got '$ROUNDS'" >&2; exit 2; }
[ -x "$HASHLAB" ] || { echo "bench_train: $HASHLAB not built (tools/build.sh)" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
N=$((BATCH * 8 > 200 ? BATCH * 8 : 200))

"$PYTHON" - "$WORK" "$N" "$SIZE" <<'PY'
import sys, numpy as np
work, n, s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
np.save(f"{work}/x.npy", rng.integers(0, 256, (n, 3, s, s), dtype=np.uint8))
np.save(f"{work}/y.npy", (np.arange(n) % 10).astype(np.int64))
PY

THREADS_ARG=auto
[ "$THREADS" -gt 0 ] && THREADS_ARG=$THREADS
BACKBONE_YAML="{name: $BACKBONE, input_size: $SIZE}"
[ "$BACKBONE" = small_cnn ] && BACKBONE_YAML="{name: small_cnn, feature_dim: 512}"
cat > "$WORK/bench.yaml" <<YAML
name: bench_train
method: hashnet
seed: 0
threads: $THREADS_ARG
device: $DEVICE
data: {name: synthetic, format: npy, files: [$WORK/x.npy], labels: [$WORK/y.npy],
       protocol: label, queries_per_class: 2, scale: 255}
model: {bits: 64, backbone: $BACKBONE_YAML, hash_lr_mult: 10}
optim: {type: sgd, lr: 0.003, momentum: 0.9, weight_decay: 5.0e-4, schedule: constant}
train: {iterations: $((WARMUP + ITERS)), batch_size: $BATCH, log_every: 5,
        checkpoint_every: 0, amp: $([ "$AMP" = 1 ] && echo true || echo false),
        channels_last: $([ "$AMP" = 1 ] && echo true || echo false)}
eval: {map_at: [], pn: [], pr_curve: false}
output: {save_codes: false, export: false}
YAML
ours() {
  rm -rf "$WORK/runs"
  "$HASHLAB" train -c "$WORK/bench.yaml" --runs-root "$WORK/runs" > "$WORK/ours.log" 2>&1 ||
    { cat "$WORK/ours.log" >&2; exit 1; }
  "$PYTHON" - "$WORK" "$WARMUP" "$BATCH" <<'PY'
import sys, json, glob
work, warmup, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
(f,) = glob.glob(f"{work}/runs/bench_train/*/metrics.jsonl")
recs = [json.loads(l) for l in open(f)]
secs = [r["sec_per_step"] for r in recs if r.get("event") == "train" and r["step"] > warmup]
sec = sum(secs) / len(secs)
print(json.dumps({"peer": "hashlab", "sec_per_step": sec, "images_per_s": batch / sec,
                  "best_images_per_s": batch / min(secs)}))
PY
}
peer() {
  "$PYTHON" tools/bench_train.py --images "$WORK/x.npy" --labels "$WORK/y.npy" \
    --backbone "$BACKBONE" --batch "$BATCH" --iters "$ITERS" --warmup "$WARMUP" \
    --device "$DEVICE" --amp "$AMP" --channels-last "$AMP" --threads "$THREADS"
}
RATIOS=()
for ((r = 0; r < ROUNDS; r++)); do
  if ((r % 2 == 0)); then OURS=$(ours); PEER=$(peer); else PEER=$(peer); OURS=$(ours); fi
  echo "$OURS"
  echo "$PEER"
  RATIOS+=("$("$PYTHON" - "$OURS" "$PEER" "$BACKBONE" "$SIZE" "$BATCH" "$DEVICE" <<'PY'
import sys, json
o, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"train step {sys.argv[3]} {sys.argv[4]}px batch {sys.argv[5]} on {sys.argv[6]}: "
      f"hashlab {o['images_per_s']:.1f} img/s, PyTorch {p['torch']} {p['images_per_s']:.1f} img/s, "
      f"ratio {o['images_per_s'] / p['images_per_s']:.2f}x; best 5-step window "
      f"{o['best_images_per_s']:.1f} / {p['best_images_per_s']:.1f} = "
      f"{o['best_images_per_s'] / p['best_images_per_s']:.2f}x", file=sys.stderr)
print(o['images_per_s'] / p['images_per_s'], o['best_images_per_s'] / p['best_images_per_s'])
PY
)")
done
if ((ROUNDS > 1)); then
  "$PYTHON" - "${RATIOS[@]}" <<'PY'
import sys, statistics
mean = [float(x.split()[0]) for x in sys.argv[1:]]
best = [float(x.split()[1]) for x in sys.argv[1:]]
fmt = lambda r: ", ".join(f"{x:.2f}" for x in r)
print(f"{len(mean)} rounds: ratios {fmt(mean)}; median {statistics.median(mean):.2f}x")
print(f"best 5-step windows: ratios {fmt(best)}; median {statistics.median(best):.2f}x")
PY
fi
