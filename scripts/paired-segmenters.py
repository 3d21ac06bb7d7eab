"""Paired comparison of segmenter runs over seeds: a regime against its baseline, seed by seed.

    python scripts/paired-segmenters.py --baseline seg/a-s0,seg/a-s1,seg/a-s2 --regime seg/e-s0,seg/e-s1,seg/e-s2

Each folder is one `styleseg segmenter train --seed N` output (its `segmenter.json` holds the report
half's mIoU and per-class IoU); the i-th baseline and the i-th regime share a seed, so the same real
labels. Prints each seed's figures, the mean paired difference of mIoU with its 95 % Student-t
interval (`usefulness.paired_difference`, as `styleseg evaluate` reports it), and per class.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from styleseg.metrics.usefulness import paired_difference, summarize, verdict


def scores(folder: str) -> dict:
    val = json.loads((Path(folder) / "segmenter.json").read_text())["val"]
    return {"miou": val["miou"], **val["iou"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="run folders, comma-separated, one per seed")
    parser.add_argument("--regime", required=True, help="run folders in the same seed order")
    args = parser.parse_args()
    base, regime = args.baseline.split(","), args.regime.split(",")
    if len(base) != len(regime):
        raise SystemExit(f"{len(base)} baseline runs but {len(regime)} regime runs: they pair seed by seed")
    b, r = [scores(f) for f in base], [scores(f) for f in regime]
    for fb, fr, sb, sr in zip(base, regime, b, r):
        print(f"{fb}: {sb['miou']:.3f}   {fr}: {sr['miou']:.3f}   diff {sr['miou'] - sb['miou']:+.3f}")
    diff = paired_difference([s["miou"] for s in r], [s["miou"] for s in b])
    low, high = diff["low"], diff["high"]
    interval = f" [{low:+.3f}, {high:+.3f}]" if low is not None else ""
    mean_b, mean_r = (summarize([s["miou"] for s in runs])["mean"] for runs in (b, r))
    print(f"mIoU: baseline {mean_b:.3f}, regime {mean_r:.3f}, "
          f"paired diff {diff['mean']:+.3f}{interval} ({verdict(diff)}, {diff['n_seeds']} seeds)")  # fmt: skip
    print("per class (mean IoU baseline -> regime, paired diff [95 % interval]):")
    for name in [k for k in b[0] if k != "miou"]:
        d = paired_difference([s[name] for s in r], [s[name] for s in b])
        span = f" [{d['low']:+.3f}, {d['high']:+.3f}]" if d["low"] is not None else ""
        mean_b, mean_r = (summarize([s[name] for s in runs])["mean"] for runs in (b, r))
        print(f"  {name:<14} {mean_b:.3f} -> {mean_r:.3f}  {d['mean']:+.3f}{span}")


if __name__ == "__main__":
    main()
