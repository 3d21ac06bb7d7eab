"""Do class-targeted pairs keep their agreement? Compare two `styleseg generate` folders against a segmenter.

    python scripts/targeted-agreement.py --segmenter SEG plain/ targeted/ --classes skirt,coat,dress

For each folder: the share of pairs that show each class (at least 0.5 % of the frame, as the targeter
counts), the mean per-pair agreement (mIoU of the generated mask against the segmenter's reading of the
generated image) over all pairs and over the pairs that show a chosen class, and each chosen class's IoU
pooled over the folder. A generator pushed toward rare classes that drew them badly would show here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from styleseg.metrics.segmentation import confusion_matrix, iou_per_class
from styleseg.metrics.segmenter import load_segmenter, predict

MIN_FRACTION = 0.005


def read_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    names = [r["name"] for r in rows if r["kept"]]
    images = np.stack([np.asarray(Image.open(folder / "images" / f"{n}.png").convert("RGB")) for n in names])
    masks = np.stack([np.asarray(Image.open(folder / "masks" / f"{n}.png")) for n in names])
    classes = [c["name"] for c in json.loads((folder / "classes.json").read_text())["classes"]]
    agreement = np.array([r["agreement"] for r in rows if r["kept"]])
    return images, masks, classes, agreement


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--segmenter", required=True, type=Path)
    parser.add_argument("--classes", required=True, help="comma-separated class names")
    args = parser.parse_args()
    device = torch.device("cpu")
    seg, _ = load_segmenter(args.segmenter, device)
    chosen = args.classes.split(",")
    for folder in args.folders:
        images, masks, classes, agreement = read_folder(folder)
        k = len(classes)
        ids = [classes.index(c) for c in chosen]
        pred = predict(seg, torch.from_numpy(images).permute(0, 3, 1, 2), device)
        iou = iou_per_class(confusion_matrix(masks, pred, k))
        fractions = np.stack([(masks == i).mean(axis=(1, 2)) for i in ids], axis=1)
        shows = fractions >= MIN_FRACTION
        any_shown = shows.any(axis=1)
        print(
            f"{folder}: {len(masks)} pairs; show {', '.join(f'{c} {s:.3f}' for c, s in zip(chosen, shows.mean(0)))}, "
            f"any {any_shown.mean():.3f}; agreement {agreement.mean():.3f} over all pairs, "
            f"{agreement[any_shown].mean():.3f} over pairs showing a chosen class; pooled IoU "
            + ", ".join(f"{c} {iou[i]:.3f}" for c, i in zip(chosen, ids))
        )


if __name__ == "__main__":
    main()
