#!/usr/bin/env bash
# Trains each CONFIG at each code length and prints a markdown table of the
# final evaluation (mAP@all, mAP@1000, P@H<=2, training seconds), and writes
# RUNS_ROOT/eval_table.html comparing the runs (hashlab report).
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
DIRS=()
for cfg in "${CONFIGS[@]}"; do
  for b in $BITS; do
    echo ">> $cfg model.bits=$b ${EXTRA[*]}" >&2
    name=$(basename "$cfg" .yaml)_b$b
    line=$("$HASHLAB" train -c "$cfg" "model.bits=$b" "name=$name" --runs-root "$ROOT" "${EXTRA[@]}" | tail -1)
    DIRS+=("$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])["run_dir"])' "$line")")
  done
done
# The tables (one per metric, configs down, code lengths across) and the
# comparison page with the curves: `hashlab report`.
"$HASHLAB" report --markdown --out "$ROOT/eval_table.html" "${DIRS[@]}"
echo "comparison page: $ROOT/eval_table.html" >&2
