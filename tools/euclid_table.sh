#!/usr/bin/env bash
# Euclidean-protocol table of trained runs (Auto-JacoBin, eq. 6-7): for each run
# directory, m-Recall for k in KS true neighbours at K in MS retrieved items
# (eval.m_recall_k / eval.m_recall_K), and Recall@1/10/100/1000 for k = 100,
# from the run's saved codes (hashlab eval --from-codes), in one evaluation per run.
#   tools/euclid_table.sh [--ks "1 10 100"] [--ms "1000 10000"] [--reencode "overrides"] RUN...
# --reencode re-encodes the queries and database with model overrides instead of
# reading the saved codes (e.g. --reencode model.code_bias=false).
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
HASHLAB=${HASHLAB:-$HERE/${BUILD_DIR:-build}/hashlab}
KS="1 10 100"
MS="1000 10000"
REENCODE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --ks) KS=$2; shift 2 ;;
    --ms) MS=$2; shift 2 ;;
    --reencode) REENCODE=$2; shift 2 ;;
    -*) echo "euclid_table: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { sed -n '2,8p' "$0" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
list() { echo "[$(echo $1 | tr ' ' ',')]"; }
n=0
for run in "$@"; do
  [ -f "$run/config.yaml" ] || { echo "euclid_table: $run is not a run directory" >&2; exit 1; }
  args=("eval.m_recall_k=$(list "$KS")" "eval.m_recall_K=$(list "$MS")" "eval.recall_k=100"
        "eval.recall_at=[1,10,100,1000]")
  if [ -n "$REENCODE" ]; then
    # shellcheck disable=SC2086
    "$HASHLAB" eval --run "$run" $REENCODE "${args[@]}" --out "$TMP/$n.json" > /dev/null
  else
    "$HASHLAB" eval --run "$run" --from-codes "${args[@]}" --out "$TMP/$n.json" > /dev/null
  fi
  n=$((n + 1))
done
/usr/bin/python3 - "$TMP" "$KS" "$MS" "$@" <<'PY'
import json, sys
tmp, ks, ms, runs = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4:]
cols = [(k, m) for k in ks for m in ms]
print("| run | bits | " + " | ".join(f"mR k={k} K={m}" for k, m in cols) +
      " | R@1 | R@10 | R@100 | R@1000 |")
print("|---|---|" + "---|" * (len(cols) + 4))
for n, run in enumerate(runs):
    j = json.load(open(f"{tmp}/{n}.json"))
    row = [f"{j[f'm_recall_k{k}_K{m}']:.4f}" for k, m in cols]
    row += [f"{j['recall_at_' + i]:.4f}" for i in ("1", "10", "100", "1000")]
    print(f"| {run} | {j['bits']} | " + " | ".join(row) + " |")
PY
