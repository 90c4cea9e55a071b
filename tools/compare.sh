#!/usr/bin/env bash
# Trains CONFIG and the ITQ and LSH baselines at the same code length on the
# same data, then prints one summary table (mAP@all, mAP@1000, P@H<=2, time)
# and names the run's report.html and a comparison page of the three runs.
#   tools/compare.sh CONFIG [key=value ...]      (needs a built ./build/hashlab)
set -euo pipefail
cd "$(dirname "$0")/.."
HASHLAB=${HASHLAB:-${BUILD_DIR:-build}/hashlab}
CONFIG=$1; shift
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
bits=$("$HASHLAB" train -c "$CONFIG" "$@" --print-config | sed -n 's/^  bits: *\([0-9]*\)$/\1/p' | head -1)
bits=${bits:-64}
"$HASHLAB" train -c "$CONFIG" "$@" | tail -1 > "$OUT/main.json"
for b in itq lsh; do
  "$HASHLAB" train -c "configs/${b}/${b}_fmnist.yaml" "model.bits=$bits" | tail -1 > "$OUT/$b.json"
done
/usr/bin/python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
rows = [json.load(open(os.path.join(out, f))) for f in ("main.json", "itq.json", "lsh.json")]
print()
print(f"{'method':<10}{'bits':>6}{'mAP@all':>10}{'mAP@1000':>10}{'P@H<=2':>9}{'train s':>9}  run")
for r in rows:
    print(f"{r['method']:<10}{r['bits']:>6}{r['map_all']:>10.4f}{r.get('map_1000', float('nan')):>10.4f}"
          f"{r.get('p_h2', float('nan')):>9.4f}{r['train_seconds']:>9.1f}  {r['run_dir']}")
PY
dirs=()
for f in main itq lsh; do
  dirs+=("$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_dir"])' "$OUT/$f.json")")
done
main_dir=${dirs[0]}
cmp="runs/compare-$(basename "$(dirname "$main_dir")")-${bits}b.html"
"$HASHLAB" report "${dirs[@]}" --out "$cmp" 2>/dev/null
echo
echo "report:     $main_dir/report.html"
echo "comparison: $cmp"
