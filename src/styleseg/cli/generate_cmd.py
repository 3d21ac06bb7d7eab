"""`styleseg generate`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from styleseg.cli.common import (
    add_class_target_args,
    add_device_arg,
    add_model_args,
    class_target,
    finite_float,
    folder_arg,
    fraction,
    load_model_arg,
    positive_int,
)
from styleseg.errors import StylesegError
from styleseg.options import GenerateOptions


def register(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="export generated (image, mask) pairs as a paired dataset",
        description="Write images/, masks/ (palette PNGs of class ids), optional overlays/, classes.json and "
        "manifest.jsonl. An interrupted run continues where it stopped when run again with the same --out.",
    )
    add_model_args(p)
    p.add_argument("--n", type=positive_int, required=True, help="number of pairs to keep")
    p.add_argument("--out", required=True, type=folder_arg, help="output folder")
    p.add_argument(
        "--seed", type=int, default=GenerateOptions.seed, help="first seed; sample k uses seed+k (default 0)"
    )
    p.add_argument(
        "--truncation", type=finite_float, default=GenerateOptions.psi, metavar="PSI", help="truncation psi (default 1)"
    )
    p.add_argument(
        "--batch", type=positive_int, default=GenerateOptions.batch, help="samples per forward pass (default 32)"
    )
    p.add_argument("--overlays", action="store_true", help="also write overlays/")
    p.add_argument("--require-person", action="store_true", help="drop samples whose mask has no person")
    p.add_argument(
        "--min-person-fraction",
        type=fraction,
        default=GenerateOptions.min_person_fraction,
        help="drop samples whose person area is below this fraction of the image",
    )
    p.add_argument(
        "--min-confidence",
        type=fraction,
        default=GenerateOptions.min_confidence,
        help="drop samples whose mean per-pixel class confidence (top softmax probability) is below this",
    )
    p.add_argument("--filter-segmenter", default=None, help="a `segmenter train` folder, for --min-agreement")
    p.add_argument(
        "--min-agreement",
        type=fraction,
        default=GenerateOptions.min_agreement,
        help="drop samples whose mask agrees with the filter segmenter's prediction below this mIoU",
    )
    add_class_target_args(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="start --out over when it holds pairs generated with other options (they are removed)",
    )
    p.add_argument(
        "--upsample",
        type=int,
        default=GenerateOptions.upsample,
        metavar="N",
        help="write pairs 2**N times the model's size: image and mask logits up-sampled bilinearly before "
        "the mask's argmax (default 0)",
    )
    p.add_argument("--no-write", action="store_true", help="generate without writing files (benchmarking)")
    add_device_arg(p)
    p.set_defaults(func=cmd_generate)


def cmd_generate(args) -> int:
    from tqdm import tqdm

    from styleseg.device import resolve_device
    from styleseg.generate import generate_dataset
    from styleseg.metrics.segmenter import load_segmenter

    if args.min_agreement > 0 and not args.filter_segmenter:
        raise StylesegError("--min-agreement needs --filter-segmenter DIR (a `styleseg segmenter train` folder)")
    classes, class_rate = class_target(args)
    device = resolve_device(args.device)
    model = load_model_arg(args, device)
    opts = GenerateOptions(
        n=args.n,
        seed=args.seed,
        psi=args.truncation,
        batch=args.batch,
        overlays=args.overlays,
        min_person_fraction=args.min_person_fraction,
        require_person=args.require_person,
        min_confidence=args.min_confidence,
        filter_segmenter=load_segmenter(Path(args.filter_segmenter), device)[0] if args.filter_segmenter else None,
        min_agreement=args.min_agreement,
        filter_segmenter_dir=str(Path(args.filter_segmenter).resolve()) if args.filter_segmenter else None,
        classes=classes,
        class_rate=class_rate,
        upsample=args.upsample,
        write=not args.no_write,
    )
    bar = tqdm(total=args.n, unit="pair", desc="generate", disable=not sys.stderr.isatty())

    def progress(done, total):
        bar.update(done - bar.n)

    start = time.perf_counter()
    result = generate_dataset(model, Path(args.out), opts, device, progress, force=args.force)
    bar.close()
    elapsed = time.perf_counter() - start
    new = result["kept"] + result["dropped"] - result["resumed"]
    print(f"checkpoint {model.path} (kimg {model.kimg:.1f}), psi {args.truncation}")
    print(
        f"kept {result['kept']} pairs, dropped {result['dropped']} by the filters"
        + (f", {result['resumed']} already present" if result["resumed"] else "")
    )
    print(
        f"{new} samples in {elapsed:.1f} s: {new / max(elapsed, 1e-9):.1f} pairs/s "
        f"({'with' if opts.write else 'without'} writing files) on {device}"
    )
    if opts.write:
        print(f"output: {args.out}")
    return 0
