"""`styleseg evaluate` and `styleseg segmenter train|eval`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from styleseg.cli.common import add_data_arg, add_device_arg, resolve_data
from styleseg.data.store import PreparedDataset
from styleseg.evaluate import evaluate, summary_table
from styleseg.metrics.segmenter import (
    SegmenterConfig,
    cached_segmenter,
    evaluate_segmenter,
    load_segmenter,
    save_segmenter,
)
from styleseg.sampling import resolve_device

DEFAULT_CACHE = Path.home() / ".cache" / "styleseg" / "segmenters"


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="agreement, usefulness, realism and label statistics of a model",
        description="Writes metrics.json and a self-contained report.html.",
    )
    p.add_argument("--ckpt", required=True, help="run folder, checkpoint folder, or a file inside one")
    add_data_arg(p, "prepared real dataset at the model's resolution (default: $STYLESEG_DATA)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, default=1000, help="generated pairs (default 1000)")
    p.add_argument("--truncation", type=float, default=1.0, metavar="PSI")
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help=f"segmenter cache (default {DEFAULT_CACHE})")
    p.add_argument("--inception-weights", default=None, help="local Inception weights for FID (offline machines)")
    add_device_arg(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("segmenter", help="train or score the reference segmentation network")
    s = p.add_subparsers(dest="segmenter_command", metavar="ACTION", required=True)
    t = s.add_parser("train", help="train a U-Net on a prepared dataset (cached by dataset fingerprint)")
    add_data_arg(t, "prepared dataset: its labeled train split (default: $STYLESEG_DATA)")
    t.add_argument("--extra", action="append", default=[], help="more prepared datasets to train on (all samples)")
    t.add_argument("--out", required=True, help="folder for the trained segmenter")
    t.add_argument("--cache", default=str(DEFAULT_CACHE))
    add_device_arg(t)
    t.set_defaults(func=cmd_seg_train)
    e = s.add_parser("eval", help="mIoU, per-class IoU and pixel accuracy of a trained segmenter")
    e.add_argument("--ckpt", required=True, help="folder written by `segmenter train`")
    add_data_arg(e, "prepared dataset to score on (default: $STYLESEG_DATA)")
    e.add_argument("--split", choices=["train", "val", "test"], default="val")
    add_device_arg(e)
    e.set_defaults(func=cmd_seg_eval)


def cmd_evaluate(args) -> int:
    device = resolve_device(args.device)
    metrics = evaluate(
        Path(args.ckpt),
        resolve_data(args.data),
        Path(args.out),
        args.n,
        args.truncation,
        device,
        Path(args.cache),
        args.inception_weights,
    )
    print(summary_table(metrics))
    print(
        f"metrics: {Path(args.out) / 'metrics.json'}\nreport: {Path(args.out) / 'report.html'} ({metrics['seconds']} s)"
    )
    return 0


def cmd_seg_train(args) -> int:
    device = resolve_device(args.device)
    ds = PreparedDataset(resolve_data(args.data))
    sets = [(ds, ds.indices("train", labeled_only=True))]
    for extra in args.extra:
        e = PreparedDataset(Path(extra))
        sets.append((e, np.flatnonzero(e.labeled)))  # every labeled sample of an extra set
    cfg = SegmenterConfig(num_classes=ds.class_map.num_classes)
    model, cached = cached_segmenter(Path(args.cache), sets, cfg, device)
    result = evaluate_segmenter(model, ds, "val", device)
    save_segmenter(model, cfg, Path(args.out), {"cache": str(cached), "val": result})
    print(
        f"segmenter: {args.out} (cache {cached}); val mIoU {result['miou']:.3f}, "
        f"pixel accuracy {result['pixel_accuracy']:.3f}"
    )
    return 0


def cmd_seg_eval(args) -> int:
    device = resolve_device(args.device)
    model, _ = load_segmenter(Path(args.ckpt), device)
    ds = PreparedDataset(resolve_data(args.data))
    r = evaluate_segmenter(model, ds, args.split, device)
    print(f"{args.split}: mIoU {r['miou']:.3f}, pixel accuracy {r['pixel_accuracy']:.3f} over {r['n']} images")
    for name, iou in r["iou"].items():
        print(f"  {name:<16} {'-' if iou is None else f'{iou:.3f}'}")
    return 0
