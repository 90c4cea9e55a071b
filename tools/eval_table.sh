#!/usr/bin/env bash
# Trains each CONFIG at each code length and prints a markdown table of the
# final evaluation (mAP@all, mAP@1000, P@H<=2, training seconds).
#   tools/eval_table.sh [--bits "16 32 64"] [--runs-root DIR] CONFIG... [-- key=value ...]
# Needs a built ./build/hashlab (tools/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
HASHLAB=${HASHLAB:-${BUILD_DIR:-build}/hashlab}
BITS="16 32 64"
ROOT=runs
CONFIGS=()
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bits) BITS=$2; shift 2 ;;
    --runs-root) ROOT=$2; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) CONFIGS+=("$1"); shift ;;
  esac
done
[ ${#CONFIGS[@]} -gt 0 ] || { echo "usage: $0 [--bits \"16 32 64\"] CONFIG... [-- key=value ...]" >&2; exit 2; }
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for cfg in "${CONFIGS[@]}"; do
  for b in $BITS; do
    echo ">> $cfg model.bits=$b ${EXTRA[*]}" >&2
    name=$(basename "$cfg" .yaml)_b$b
    "$HASHLAB" train -c "$cfg" "model.bits=$b" "name=$name" --runs-root "$ROOT" "${EXTRA[@]}" \
      | tail -1 | sed "s|^|$(basename "$cfg" .yaml)\t|" >> "$OUT"
  done
done
/usr/bin/python3 - "$OUT" "$BITS" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    cfg, js = line.rstrip("\n").split("\t", 1)
    r = json.loads(js)
    rows.setdefault(cfg, {})[r["bits"]] = r
bits = [int(b) for b in sys.argv[2].split()]
def table(key, fmt="{:.4f}"):
    print(f"\n{key}:\n")
    print("| config | " + " | ".join(f"{b} bits" for b in bits) + " |")
    print("|---|" + "---|" * len(bits))
    for cfg, per in rows.items():
        cells = [fmt.format(per[b][key]) if b in per and key in per[b] else "–" for b in bits]
        print(f"| {cfg} | " + " | ".join(cells) + " |")
for key in ("map_all", "map_1000", "p_h2"):
    table(key)
table("train_seconds", "{:.1f}")
PY
