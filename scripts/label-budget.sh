#!/usr/bin/env bash
# What labels buy, and what unlabelled photos give back: three arms of equal compute on one prepared
# dataset (the same schedule, batch and steps; a photo costs D what a pair costs it).
#   all     every label (the image head is off: there are no unlabelled photos)
#   pairs   LABELS labels, pair-only training (data.image_share=0: what styleseg did before)
#   photos  LABELS labels plus every other photo through D's image head (data.image_share auto: 0.5)
# Then each model is evaluated: agreement with the reference segmenter, and the usefulness of N
# generated pairs added to the same LABELS real ones (the budget arm's labels.json), over 3 seeds.
#
#   bash scripts/label-budget.sh PREPARED OUT [KIMG] [LABELS]
# e.g. bash scripts/label-budget.sh /data/viton-64x48 runs/label-budget 36 500
# Environment: PRESET (viton64), SCHEDULE (--set overrides of the short schedule below; empty keeps
# the preset's), EXTRA (more --set overrides for every arm, e.g. "--set dtype=bf16 --set threads=1"),
# N (2000 generated pairs), SEEDS (3), USEFUL_STEPS (300), CACHE (segmenter cache),
# ARMS ("all pairs photos"), STYLESEG (styleseg command).
set -euo pipefail
data=${1:?prepared dataset}
out=${2:?output folder}
kimg=${3:-36}
labels=${4:-500}
preset=${PRESET:-viton64}
styleseg=${STYLESEG:-styleseg}
cache=${CACHE:-$HOME/.cache/styleseg/segmenters}
# Every growth event of viton64 compressed into the first 24 kimg (segmentation at 8, splits at 12 and 16).
schedule=${SCHEDULE-"--set schedule.stable_kimg=3 --set schedule.fade_kimg=3 --set schedule.seg_start_kimg=8 --set schedule.seg_fade_kimg=2 --set schedule.class_split_kimg=[12,16]"}
common="--preset $preset --set schedule.total_kimg=$kimg --set snapshot_kimg=4 --set checkpoint_kimg=4 --no-progress"
mkdir -p "$out"

arm_options() {
  case $1 in
    all) echo "--set data.image_share=0" ;;
    pairs) echo "--set data.max_labeled=$labels --set data.image_share=0" ;;
    photos) echo "--set data.max_labeled=$labels" ;;
    *) echo "unknown arm $1" >&2; return 2 ;;
  esac
}

for arm in ${ARMS:-all pairs photos}; do
  echo "== arm $arm: train"
  start=$SECONDS
  # shellcheck disable=SC2086
  "$styleseg" train --data "$data" --out "$out/$arm" $common $schedule ${EXTRA:-} $(arm_options "$arm") \
    --resume auto
  echo "arm $arm: trained in $((SECONDS - start)) s (this invocation)" | tee -a "$out/times.txt"
done

budget_labels=""
for arm in pairs photos all; do
  if [ -f "$out/$arm/00000-$preset/labels.json" ] && grep -q '"max_labeled": [0-9]' "$out/$arm/00000-$preset/labels.json"; then
    budget_labels="$out/$arm/00000-$preset/labels.json"
    break
  fi
done
if [ -z "$budget_labels" ]; then
  echo "no run with a label budget in $out: cannot pick the shared real labels" >&2
  exit 2
fi
echo "== the real labels of every usefulness regime: $budget_labels"

for arm in ${ARMS:-all pairs photos}; do
  echo "== arm $arm: evaluate"
  "$styleseg" evaluate --ckpt "$out/$arm/00000-$preset" --data "$data" --out "$out/eval-$arm" \
    --n "${N:-2000}" --seeds "${SEEDS:-3}" --real-subset "$budget_labels" \
    --regimes "$labels real+generated" --usefulness-max-steps "${USEFUL_STEPS:-300}" --cache "$cache"
done
"$styleseg" compare "$out"/eval-* --out "$out/compare"
