#!/usr/bin/env bash
# Euclidean-protocol evaluation time against the machine's measured limit,
# in one run: ITQ codes of Fashion-MNIST (1,000 queries x 69,000 database
# items, 784-d pixels) evaluated by `hashlab eval --run` at 1 and 2 threads
# (eval_seconds: exact top-1,000 ground truth + Hamming ranking + metrics),
# and the one float GEMM that ground truth cannot avoid (the same
# 1,000 x 784 x 69,000 product, torch.mm in Python on the same LibTorch and
# BLAS) at the same thread counts. Prints seconds and eval / GEMM.
#
#   tools/bench_eval_euclidean.sh [--runs 3]
# HASHLAB (default build/hashlab) and PYTHON (default /usr/bin/python3) pick the binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
HASHLAB=${HASHLAB:-${BUILD_DIR:-build}/hashlab}
PYTHON=${PYTHON:-/usr/bin/python3}  # Debian's python3-torch
RUNS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2 ;;
    *) echo "bench_eval_euclidean: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift 2
done
[ -x "$HASHLAB" ] || { echo "bench_eval_euclidean: $HASHLAB not built (tools/build.sh)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$HASHLAB" train -c configs/itq/itq_fmnist.yaml --run-dir "$work/itq" data.protocol=euclidean \
  data.num_queries=1000 output.save_codes=false output.export=false > /dev/null 2> "$work/train.err" ||
  { cat "$work/train.err" >&2; exit 1; }
printf '%-8s %-12s %-12s %s\n' threads eval_s gemm_s eval/gemm
for t in 1 2; do
  best_eval=
  for r in $(seq "$RUNS"); do
    "$HASHLAB" eval --run "$work/itq" threads=$t --out "$work/e.json" > /dev/null 2>&1
    s=$("$PYTHON" -c "import json; print(json.load(open('$work/e.json'))['eval_seconds'])")
    best_eval=$("$PYTHON" -c "print(min(float('$s'), float('${best_eval:-inf}')))")
  done
  gemm=$("$PYTHON" - "$t" "$RUNS" <<'PY'
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
q = torch.rand(1000, 784)
x = torch.rand(69000, 784)
torch.mm(q, x.t())  # warm-up
best = float("inf")
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    torch.mm(q, x.t())
    best = min(best, time.perf_counter() - t0)
print(best)
PY
)
  "$PYTHON" -c "print(f'{$t:<8d} {$best_eval:<12.3f} {$gemm:<12.3f} {$best_eval / $gemm:.2f}')"
done
