#!/usr/bin/env bash
# Old and new binaries side by side: every config's short run must give the
# same codes (byte for byte), the same final metrics and the same train
# records (timings left out); and a run the OLD binary checkpointed half way
# must resume under the NEW one to the codes the OLD one resumes it to, or be
# refused with a clear message.
#   tools/equivalence.sh OLD_BINARY NEW_BINARY [CONFIG ...]   (default: configs/*/*.yaml)
# Prints one row per config and exits non-zero if any differs.
set -uo pipefail
cd "$(dirname "$0")/.."
OLD=$1 NEW=$2; shift 2
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(configs/[a-z]*/*.yaml)
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
SHORT=(train.iterations=20 train.checkpoint_every=10 train.log_every=5 data.num_train=1000 threads=1)
status=0
printf '%-30s %-10s %-10s %-10s %s\n' config codes final records resume
for c in "${configs[@]}"; do
  n=$(basename "$c" .yaml)
  for side in old new; do
    bin=$OLD; [ $side = new ] && bin=$NEW
    "$bin" train -c "$c" --run-dir "$OUT/$n.$side" "${SHORT[@]}" > "$OUT/$n.$side.json" 2> "$OUT/$n.$side.err"
  done
  # Ten steps with OLD, then resumed to twenty by OLD (.resumed.old) and by NEW (.resumed.new).
  for side in old new; do
    "$OLD" train -c "$c" --run-dir "$OUT/$n.resumed.$side" "${SHORT[@]}" train.iterations=10 > /dev/null 2>&1
  done
  "$OLD" train -c "$c" --run-dir "$OUT/$n.resumed.old" "${SHORT[@]}" --resume > /dev/null 2>&1
  "$NEW" train -c "$c" --run-dir "$OUT/$n.resumed.new" "${SHORT[@]}" --resume > /dev/null 2> "$OUT/$n.resumed.err"
  mixed_rc=$?
  /usr/bin/python3 - "$OUT" "$n" "$mixed_rc" <<'PY' || status=1
import json, os, sys
out, n, mixed_rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
TIMING = ("seconds", "sec_per", "comm_", "run_dir", "time", "eta")
def clean(d):
    if isinstance(d, dict):
        return {k: clean(v) for k, v in d.items() if not any(t in k for t in TIMING)}
    if isinstance(d, list):
        return [clean(v) for v in d]
    return d
def last_json(path):
    lines = [l for l in open(path).read().splitlines() if l.startswith("{")]
    return clean(json.loads(lines[-1])) if lines else None
def records(run):
    p = os.path.join(run, "metrics.jsonl")
    if not os.path.exists(p):
        return None
    return [clean(json.loads(l)) for l in open(p) if l.strip()]
def codes(run):
    d = os.path.join(run, "codes")
    if not os.path.isdir(d):
        return None
    return {f: open(os.path.join(d, f), "rb").read() for f in sorted(os.listdir(d))}
o, w = os.path.join(out, n + ".old"), os.path.join(out, n + ".new")
cells = []
ok = True
for name, f in (("codes", codes), ("final", lambda r: last_json(r + ".json")), ("records", records)):
    a, b = f(o), f(w)
    same = a is not None and a == b
    ok &= same
    cells.append("same" if same else ("MISSING" if a is None or b is None else "DIFFERS"))
if mixed_rc == 0:
    a, b = (codes(os.path.join(out, n + ".resumed." + s)) for s in ("old", "new"))
    same = a is not None and a == b
    resume = "same" if same else "DIFFERS"
    ok &= same
else:
    err = open(os.path.join(out, n + ".resumed.err")).read().strip().splitlines()
    resume = "refused: " + (err[-1][:90] if err else f"exit {mixed_rc}")
print(f"{n:<30} {cells[0]:<10} {cells[1]:<10} {cells[2]:<10} {resume}")
sys.exit(0 if ok else 1)
PY
done
echo "runs: $OUT"
exit $status
