#!/usr/bin/env bash
# Scale benchmark (not part of CI): a synthetic LIP-labelled dataset of N samples (default 100,000)
# at 64x48 is written, prepared, trained on for a few hundred steps at the final stage, and evaluated
# with 10,000 generated pairs; each command's wall time and peak RSS come from /usr/bin/time -v.
#   bash scripts/scale-bench.sh [WORKDIR] [N]
set -euo pipefail
WORK=${1:-/tmp/styleseg-scale}
N=${2:-100000}
BIN=${BIN:-.venv/bin}
mkdir -p "$WORK"
measure() {  # measure NAME CMD...: run, keep its output, print wall time and peak RSS
  local name=$1; shift
  /usr/bin/time -v "$@" > "$WORK/$name.log" 2>&1 || { tail -20 "$WORK/$name.log"; exit 1; }
  grep -E "^(prepared|wrote|done:|reference|agreement|  real|  .*real\+generated)" "$WORK/$name.log" | head -8 || true
  echo "$name: $(grep 'Elapsed (wall' "$WORK/$name.log" | awk '{print $NF}') wall," \
       "peak RSS $(( $(grep 'Maximum resident' "$WORK/$name.log" | awk '{print $NF}') / 1024 )) MiB"
}
[ -d "$WORK/src/image" ] || measure synthetic "$BIN/styleseg" data synthetic --out "$WORK/src" --n "$N" --size 64x48
[ "${SKIP_PREPARE:-0}" = 1 ] || { rm -rf "$WORK/prepared"; measure prepare "$BIN/styleseg" prepare --data "$WORK/src" --out "$WORK/prepared" --resolution 64x48
echo "on disk: $(du -sb "$WORK/prepared" | awk '{print $1}') bytes, $(( $(du -sb "$WORK/prepared" | awk '{print $1}') / N )) bytes/sample"; }
rm -rf "$WORK/runs"
measure train "$BIN/styleseg" train --data "$WORK/prepared" --out "$WORK/runs" --preset viton64 --no-progress \
  --set schedule.stable_kimg=0 --set schedule.fade_kimg=0 --set schedule.seg_start_kimg=0 \
  --set schedule.seg_fade_kimg=0 --set "schedule.class_split_kimg=[]" --set schedule.total_kimg=1.92 \
  --set log_every=10 --set snapshot_kimg=100 --set checkpoint_kimg=100
python3 - "$WORK" <<'PY'
import json, pathlib, sys
run = next(pathlib.Path(sys.argv[1], "runs").iterdir())
rows = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines() if '"data_wait_ms"' in l]
rows = rows[1:]  # the first interval holds start-up
wait = sum(r["data_wait_ms"] for r in rows) / len(rows)
ips = rows[-1]["images_per_s"]
print(f"training: {ips} images/s; data wait {wait:.2f} ms per step "
      f"({100 * wait / 1000 / (32 / ips):.2f} % of a step), over {len(rows)} log intervals")
PY
rm -rf "$WORK/eval"
measure evaluate "$BIN/styleseg" evaluate --ckpt "$WORK/runs" --data "$WORK/prepared" --out "$WORK/eval" \
  --n 10000 --seeds 1 --regimes real+generated --segmenter-max-steps 100 --cache "$WORK/segcache"
