#!/usr/bin/env bash
# Trains one config under several sets of overrides, JOBS at a time, and prints
# a markdown table of the final evaluations (mAP@all, mAP@1000, P@H<=2,
# training seconds). For hyperparameter choices add data.validation=true
# (validation queries carved from the database; the test queries stay unseen).
#
#   tools/sweep.sh CONFIG OUT_DIR "name|key=value key=value" ["name|..." ...]
#
# Environment: HASHLAB (default build/hashlab), JOBS (default 2), THREADS per
# run (default 1; results depend on it, not on JOBS). A variant whose run
# directory already holds a final evaluation is not trained again.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
CONFIG=$1
OUT=$2
shift 2
HASHLAB=${HASHLAB:-build/hashlab}
JOBS=${JOBS:-2}
THREADS=${THREADS:-1}
mkdir -p "$OUT"

run_one() {
  local name=${1%%|*} overrides=${1#*|}
  local dir="$OUT/$name"
  if [ -f "$dir/metrics.jsonl" ] && grep -q '"final":true' "$dir/metrics.jsonl"; then return 0; fi
  rm -rf "$dir"
  # shellcheck disable=SC2086
  if ! "$HASHLAB" train -c "$CONFIG" "threads=$THREADS" $overrides --run-dir "$dir" \
      > "$OUT/$name.log" 2>&1; then
    echo "sweep: $name failed, see $OUT/$name.log" >&2
  fi
}

running=0
for v in "$@"; do
  run_one "$v" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait

/usr/bin/python3 - "$OUT" "$@" <<'PY'
import json, os, sys
out, variants = sys.argv[1], sys.argv[2:]
print("| variant | overrides | mAP@all | mAP@1000 | P@H≤2 | train s |")
print("|---|---|---|---|---|---|")
for v in variants:
    name, _, overrides = v.partition("|")
    final = None
    path = os.path.join(out, name, "metrics.jsonl")
    if os.path.exists(path):
        for line in open(path):
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("event") == "eval" and r.get("final"):
                final = r
    if final is None:
        print(f"| {name} | `{overrides}` | failed | | | |")
        continue
    f = lambda k, fmt="{:.4f}": fmt.format(final[k]) if k in final else "–"
    print(f"| {name} | `{overrides}` | {f('map_all')} | {f('map_1000')} | {f('p_h2')} | "
          f"{f('train_seconds', '{:.0f}')} |")
PY
