"""Which classes keep a model's agreement below its ceiling, from an evaluation's metrics.json.

    python scripts/agreement-gap.py eval/v64-smooth/metrics.json [--target 0.85]

Agreement is the mIoU of the reference segmenter's prediction on generated images against the
generated masks; the ceiling is that segmenter's mIoU on real validation photos; both are means over
the same classes, so the gap splits into per-class parts (ceiling IoU - agreement IoU) / classes.
Prints each class's part beside its share of real and generated pixels, and two bounds: the
agreement if every class the model draws reached the ceiling's IoU while the classes it never draws
stayed at 0, and the ratio to the ceiling over the drawn classes alone. A target the first bound
cannot reach needs the model to draw new classes, not better pixels of the ones it draws.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from styleseg.metrics.segmentation import ratio_over_shared_classes


def gap_table(metrics: dict) -> dict:
    """Per-class agreement, ceiling and gap, and the two bounds, from an evaluation's metrics. A class
    with no agreement score (in no generated mask and never predicted on a generated image) counts 0."""
    agreement = metrics["agreement"]["per_class"]
    ceiling = metrics["segmenter"]["val"]["iou"]
    labels = metrics["labels"]
    classes = [c for c in ceiling if c in agreement and ceiling[c] is not None]
    drawn = [c for c in classes if labels["class_frequency_generated"].get(c, 0) > 0]
    k = len(classes)
    rows = [
        {
            "class": c,
            "real_share": labels["class_frequency_real"].get(c, 0.0),
            "generated_share": labels["class_frequency_generated"].get(c, 0.0),
            "agreement": agreement[c],
            "ceiling": ceiling[c],
            "gap_part": (ceiling[c] - (agreement[c] or 0.0)) / k,
        }
        for c in classes
    ]
    return {
        "rows": rows,
        "agreement": metrics["agreement"]["miou"],
        "ceiling": metrics["segmenter"]["val"]["miou"],
        "never_drawn": [c for c in classes if c not in drawn],
        "bound_if_drawn_classes_reach_the_ceiling": sum(ceiling[c] for c in drawn) / k,
        "ratio_over_drawn_classes": ratio_over_shared_classes({c: agreement[c] for c in drawn}, ceiling)[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", type=Path, help="metrics.json written by `styleseg evaluate` with a reference")
    parser.add_argument("--target", type=float, default=0.85, help="target ratio to the ceiling (default 0.85)")
    args = parser.parse_args()
    metrics = json.loads(args.metrics.read_text())
    if not metrics.get("agreement") or not metrics.get("segmenter"):
        raise SystemExit(f"{args.metrics}: no agreement with a reference segmenter in it")
    t = gap_table(metrics)
    print(f"{'class':15s} {'real px':>8s} {'gen px':>8s} {'agreement':>9s} {'ceiling':>8s} {'gap part':>8s}")
    for r in sorted(t["rows"], key=lambda r: -r["gap_part"]):
        score = "–" if r["agreement"] is None else f"{r['agreement']:.3f}"
        print(
            f"{r['class']:15s} {r['real_share']:8.5f} {r['generated_share']:8.5f} {score:>9s}"
            f" {r['ceiling']:8.3f} {r['gap_part']:+8.3f}"
        )
    need = args.target * t["ceiling"]
    print(f"agreement {t['agreement']:.3f}, ceiling {t['ceiling']:.3f}, ratio {t['agreement'] / t['ceiling']:.3f}")
    print(f"target {args.target:g} x ceiling = {need:.3f}; never drawn: {', '.join(t['never_drawn']) or 'none'}")
    bound = t["bound_if_drawn_classes_reach_the_ceiling"]
    print(
        f"bound if every drawn class reached the ceiling: {bound:.3f} "
        f"({'reaches' if bound >= need else 'below'} the target)"
    )
    print(f"ratio over the drawn classes alone: {t['ratio_over_drawn_classes']:.3f}")


if __name__ == "__main__":
    main()
