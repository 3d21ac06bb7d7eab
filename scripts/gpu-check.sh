#!/usr/bin/env bash
# A prepared device check (under 5 minutes on one GPU): the GPU-marked tests, `styleseg bench` at viton256
# and ccp192 in fp32/TF32 and bf16, eager and compiled, and a few hundred training steps on synthetic
# data at the final stage. Results (JSON and logs) go to $OUT (default ./gpu-check-out).
#   bash scripts/gpu-check.sh                 # on a GPU machine
#   bash scripts/gpu-check.sh --device cpu --smoke   # the CI smoke test: tiny preset, no compile
set -euo pipefail
DEVICE=cuda
SMOKE=0
while [ $# -gt 0 ]; do
  case $1 in
    --device) DEVICE=$2; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    *) echo "gpu-check: unknown option $1" >&2; exit 2 ;;
  esac
done
BIN=${BIN:-.venv/bin}
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
if [ "$SMOKE" = 1 ]; then
  PRESETS="tests/training/tiny.yaml"; DTYPES="fp32"; COMPILE=""; STEPS=20; SIZE=24x16; N=64; BATCH="--batch 4"
else
  PRESETS="viton256 ccp192"; DTYPES="fp32 bf16"; COMPILE="eager compiled"; STEPS=300; SIZE=256x192; N=2000; BATCH=""
fi
echo "== device: $DEVICE; torch $("$BIN/python" -c 'import torch; print(torch.__version__, torch.cuda.is_available())')"
if [ "$DEVICE" != cpu ]; then
  nvidia-smi --query-gpu=name,memory.total --format=csv || true
  "$BIN/python" -m pytest -q -m gpu 2>&1 | tail -3 | tee "$OUT/gpu-tests.log"
fi
for preset in $PRESETS; do
  for dtype in $DTYPES; do
    for mode in ${COMPILE:-eager}; do
      flag=""; [ "$mode" = compiled ] && flag="--compile"
      name=$(basename "$preset" .yaml)-$dtype-$mode
      echo "== bench $name"
      "$BIN/styleseg" bench --preset "$preset" --device "$DEVICE" --dtype "$dtype" $flag $BATCH --steps 16 \
        --json "$OUT/bench-$name.json" 2>&1 | tail -6
    done
  done
done
echo "== training $STEPS steps at the final stage on synthetic data"
rm -rf "$OUT/data" "$OUT/prepared" "$OUT/runs"
"$BIN/styleseg" data synthetic --out "$OUT/data" --n "$N" --size "$SIZE" >/dev/null
"$BIN/styleseg" prepare --data "$OUT/data" --out "$OUT/prepared" --resolution "$SIZE" --classes lip-12 > "$OUT/prepare.log"
head -1 "$OUT/prepare.log"
preset=${PRESETS%% *}
kimg=$("$BIN/python" -c "import sys; from styleseg.config import build_config as b; c=b(sys.argv[1]); print($STEPS*c.optim.batch[-1]/1000)" "$preset")
"$BIN/styleseg" train --data "$OUT/prepared" --out "$OUT/runs" --preset "$preset" --device "$DEVICE" --no-progress \
  --set schedule.stable_kimg=0 --set schedule.fade_kimg=0 --set schedule.seg_start_kimg=0 \
  --set schedule.seg_fade_kimg=0 --set "schedule.class_split_kimg=[]" --set schedule.total_kimg="$kimg" \
  --set snapshot_kimg=1000 --set checkpoint_kimg=1000 2>&1 | tail -2 | tee "$OUT/train.log"
echo "== gpu-check done: $OUT"
