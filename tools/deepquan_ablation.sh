#!/usr/bin/env bash
# DeepQuan ablations on one shared pretraining (Fashion-MNIST, label protocol).
#
#   tools/deepquan_ablation.sh [BITS] [OUT_DIR]          (defaults: 16, runs/deepquan_ablation_b<BITS>)
#
# 1. Pretrains the auto-encoder once: configs/deepquan/deepquan_fmnist.yaml stopped at
#    its pretraining end (train.iterations = model.pretrain_steps). Its final
#    evaluation is DAE-PQ.
# 2. Copies that run once per variant and resumes it to the config's full
#    length with the variant's overrides (a resumed run trains exactly as an
#    uninterrupted one would: test DeepQuanMethod.ResumedRunsMatchAnUninterruptedRun).
# 3. Prints a markdown table: variant, overrides, mAP@all, mAP@1000, seconds of
#    the joint phase.
#
# Environment:
#   HASHLAB   the binary (default build/hashlab)
#   JOBS      variants trained at once (default 2); THREADS per job (default 1).
#             Results depend on THREADS (float reduction order), not on JOBS.
#   VARIANTS  space-separated subset of the names below (default: all)
#   EXTRA     overrides added to every run (e.g. "train.iterations=4500")
set -euo pipefail

BITS=${1:-16}
OUT=${2:-runs/deepquan_ablation_b${BITS}}
HASHLAB=${HASHLAB:-build/hashlab}
JOBS=${JOBS:-2}
THREADS=${THREADS:-1}
EXTRA=${EXTRA:-}
CONFIG=configs/deepquan/deepquan_fmnist.yaml

# name|overrides (empty: the config as it is)
ALL_VARIANTS=(
  "deepquan|"
  "quad|model.loss=quad model.reconstruction=false"
  "wtps|model.reconstruction=false"
  "quad_r|model.loss=quad"
  "triplet_subspace|model.triplet=subspace"
  "lambda_0.5|model.lambda=0.5"
  "s_0.001_lambda_0.2|model.margin=0.001 model.lambda=0.2"
  "deepquan_sgd|optim.type=sgd optim.lr=0.01 optim.momentum=0.9"
  "quad_sgd|model.loss=quad model.reconstruction=false optim.type=sgd optim.lr=0.01 optim.momentum=0.9"
)

die() { echo "deepquan_ablation.sh: $*" >&2; exit 1; }
[[ -x $HASHLAB ]] || die "$HASHLAB not found: build first (tools/build.sh) or set HASHLAB"
[[ $BITS =~ ^[0-9]+$ && $((BITS % 8)) -eq 0 && $BITS -gt 0 ]] || die "BITS must be a positive multiple of 8, got '$BITS'"

selected=()
for v in "${ALL_VARIANTS[@]}"; do
  name=${v%%|*}
  if [[ -z ${VARIANTS:-} || " $VARIANTS " == *" $name "* ]]; then selected+=("$v"); fi
done
[[ ${#selected[@]} -gt 0 ]] || die "VARIANTS='$VARIANTS' names none of: $(printf '%s ' "${ALL_VARIANTS[@]%%|*}")"

# Full length and pretraining length, as the config resolves them.
resolved=$("$HASHLAB" train -c "$CONFIG" model.bits="$BITS" $EXTRA --print-config)
iters=$(awk '/^train:/{t=1;next} /^[^ ]/{t=0} t&&/^  iterations:/{print $2}' <<<"$resolved")
pre=$(awk '/^model:/{t=1;next} /^[^ ]/{t=0} t&&/^  pretrain_steps:/{print $2}' <<<"$resolved")
[[ -n $iters && -n $pre && $pre -lt $iters ]] || die "could not read train.iterations / model.pretrain_steps from $CONFIG"

mkdir -p "$OUT"
pre_dir="$OUT/pretrain"
if [[ ! -f $pre_dir/checkpoints/last.pt ]]; then
  echo "pretraining: $pre steps at $BITS bits -> $pre_dir"
  rm -rf "$pre_dir"
  "$HASHLAB" train -c "$CONFIG" model.bits="$BITS" threads="$THREADS" $EXTRA \
    train.iterations="$pre" --run-dir "$pre_dir" >"$OUT/pretrain.log" 2>&1 ||
    die "pretraining failed, see $OUT/pretrain.log"
fi

run_variant() {
  local name=${1%%|*} overrides=${1#*|}
  local dir="$OUT/$name"
  if [[ ! -f $dir/done ]]; then
    rm -rf "$dir"
    cp -r "$pre_dir" "$dir"
    # shellcheck disable=SC2086
    "$HASHLAB" train --resume --run-dir "$dir" threads="$THREADS" train.iterations="$iters" \
      $EXTRA $overrides >"$OUT/$name.log" 2>&1 || { echo "variant $name failed, see $OUT/$name.log" >&2; return 1; }
    touch "$dir/done"
  fi
}
export -f run_variant
export OUT HASHLAB THREADS EXTRA iters pre_dir

echo "variants: ${#selected[@]} ($JOBS at once, $THREADS thread(s) each) -> $OUT"
status=0
printf '%s\n' "${selected[@]}" | xargs -d '\n' -P "$JOBS" -I{} bash -c 'run_variant "$1"' _ {} || status=1

python3 - "$OUT" "$BITS" "${selected[@]}" <<'PY'
import json, os, sys
out, bits, variants = sys.argv[1], sys.argv[2], sys.argv[3:]

def final_eval(run):
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    last = None
    for line in open(path):
        r = json.loads(line)
        if r.get("event") == "eval" and r.get("final"):
            last = r
    return last

pre = final_eval(os.path.join(out, "pretrain"))
print(f"\nDeepQuan ablations, Fashion-MNIST, {bits} bits (mAP@all, mAP@1000)\n")
print("| variant | overrides | mAP@all | mAP@1000 | joint s |")
print("|---|---|---|---|---|")
if pre:
    print(f"| DAE-PQ (pretraining only) | | {pre['map_all']:.4f} | {pre['map_1000']:.4f} | |")
for v in variants:
    name, overrides = v.split("|", 1)
    r = final_eval(os.path.join(out, name))
    if r is None or pre is None or r["step"] == pre["step"]:
        print(f"| {name} | {overrides} | failed | | |")
        continue
    joint = r["train_seconds"] - pre["train_seconds"]
    print(f"| {name} | {overrides} | {r['map_all']:.4f} | {r['map_1000']:.4f} | {joint:.0f} |")
PY
exit $status
