"""`styleseg prepare`, `styleseg info`, `styleseg data download`."""

from __future__ import annotations

import sys
from pathlib import Path

from styleseg.cli.common import add_data_arg, folder_arg, resolve_data
from styleseg.errors import StylesegError
from styleseg.paths import cache_root


def register(sub) -> None:
    from styleseg.data.download import DATASETS
    from styleseg.options import FIT_MODES

    p = sub.add_parser(
        "prepare",
        help="read a source dataset and write a fast prepared store",
        description="Read a dataset in one of the layouts the README lists and write a prepared store (uint8 "
        "images, masks, labeled flags, splits, dataset.json), which training reads by rows.",
    )
    add_data_arg(
        p,
        "source dataset: CCP, VITON (image/ + image-parse/), LIP, CIHP, ATR, images/ + masks/, or COCO JSON "
        "(default: $STYLESEG_DATA)",
    )
    p.add_argument("--out", required=True, type=folder_arg, help="folder to create for the prepared dataset")
    p.add_argument(
        "--resolution",
        default=None,
        help="HxW, e.g. 64x48 or 192x128 (default: the photos' median aspect at the largest shape of at most "
        "96x64 pixels the generator can grow to: 64x48 for VITON's 4:3 photos, 96x64 for CCP's 3:2)",
    )
    p.add_argument(
        "--classes",
        default=None,
        help="class map: ccp-12 (CCP default), ccp-full, person, lip-12 (VITON/LIP/CIHP default), lip-20, atr-18, "
        "source (the dataset's own class file), or a YAML/JSON file or a text file of class names",
    )
    p.add_argument("--image-dir", default=None, help="photo folder inside --data (with --mask-dir; else detected)")
    p.add_argument("--mask-dir", default=None, help="label-PNG folder inside --data (with --image-dir)")
    p.add_argument(
        "--fit",
        default="pad-edge",
        choices=list(FIT_MODES),
        help="how photos of another aspect reach the target one; image and mask alike (default pad-edge)",
    )
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: every core)")
    p.add_argument("--force", action="store_true", help="replace an existing prepared dataset at --out")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser(
        "info",
        help="print counts, classes and frequencies of a prepared dataset",
        description="Describe a prepared dataset; optionally write a preview grid of image | coloured mask | overlay.",
    )
    add_data_arg(p, "prepared dataset folder (default: $STYLESEG_DATA)")
    p.add_argument("--preview", default=None, help="write a preview PNG here")
    p.add_argument("--split", default="train", choices=["train", "val", "test"], help="split to preview")
    p.add_argument("--n", type=int, default=16, help="samples in the preview (default 16)")
    p.add_argument("--seed", type=int, default=0, help="which samples to preview")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("data", help="dataset utilities (download)")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    d = data_sub.add_parser(
        "download",
        help="download a public dataset archive and cache it",
        description="Fetch, check and extract a public dataset atomically; a second call "
        "does nothing. Known: " + ", ".join(sorted(DATASETS)),
    )
    d.add_argument("name", choices=sorted(DATASETS))
    d.add_argument("--root", default=None, help=f"where to keep datasets (default: {cache_root()})")
    d.add_argument("--url", default=None, help="alternative archive URL (a mirror, or file:// for a local copy)")
    d.add_argument("--sha256", default=None, help="expected SHA-256 of the archive")
    d.set_defaults(func=cmd_download)
    y = data_sub.add_parser(
        "synthetic",
        help="write a synthetic LIP-labelled dataset in VITON's layout (scale benchmarks, tests)",
        description="Drawn people (hair, face, clothes, arms, legs) with LIP label maps: image/*.jpg + "
        "image-parse/*.png. Deterministic for a seed; any size.",
    )
    y.add_argument("--out", required=True, type=folder_arg, help="folder to write")
    y.add_argument("--n", type=int, required=True, help="number of samples")
    y.add_argument("--size", default="64x48", help="HxW of each photo (default 64x48)")
    y.add_argument("--seed", type=int, default=0)
    y.set_defaults(func=cmd_synthetic)


def cmd_prepare(args) -> int:
    from tqdm import tqdm

    from styleseg.data.geometry import parse_resolution
    from styleseg.data.prepare import prepare_dataset

    source = resolve_data(args.data)
    if args.resolution is None:
        resolution = report_shape_choice(source, args.image_dir, args.mask_dir)
    else:
        try:
            resolution = parse_resolution(args.resolution)
        except ValueError as exc:
            raise StylesegError(f"--resolution: {exc}") from exc
    bar = tqdm(total=None, desc="prepare", unit="img", disable=not sys.stderr.isatty())

    def progress(done, total):
        bar.total = total
        bar.update(done - bar.n)

    meta = prepare_dataset(
        source,
        Path(args.out),
        resolution,
        args.classes,
        args.workers,
        args.force,
        progress,
        image_dir=args.image_dir,
        mask_dir=args.mask_dir,
        fit=args.fit,
    )
    bar.close()
    seconds = meta["prepare_seconds"]
    speed = f", {meta['num_samples'] / seconds:.0f} images/s" if seconds >= 1 else ""  # rates of a blink mislead
    print(
        f"prepared {meta['num_samples']} samples at {resolution[0]}x{resolution[1]} into {args.out} "
        f"in {seconds} s ({meta['workers']} workers{speed})"
    )
    print_summary(meta)
    return 0


def report_shape_choice(source: Path, image_dir=None, mask_dir=None) -> tuple[int, int]:
    """The default shape for a source, printed with why, and a warning when fitting pads much."""
    from styleseg.data.prepare import choose_resolution
    from styleseg.data.readers import open_source

    choice = choose_resolution(open_source(source, image_dir, mask_dir))
    h, w = choice.resolution
    print(
        f"resolution {h}x{w}: the median photo is {choice.median_aspect:.3f} times as high as wide "
        f"({choice.looked_at} photos looked at); --resolution chooses another"
    )
    if choice.padded_share > 0.05 or choice.photos_over_10pct > 0.1:
        print(
            f"warning: fitting the median photo to {h}x{w} pads or crops {choice.padded_share:.0%} of its frame, "
            f"and {choice.photos_over_10pct:.0%} of the photos lose or gain more than 10 % (see --fit)",
            file=sys.stderr,
        )
    return choice.resolution


def print_summary(meta: dict) -> None:
    counts = meta["counts"]
    labeled = sum(c["labeled"] for c in counts.values())
    unlabeled = sum(c["unlabeled"] for c in counts.values())
    print(
        f"{meta['num_samples']} samples from {meta['source']['layout']} layout; resolution "
        f"{meta['resolution'][0]}x{meta['resolution'][1]} (HxW), fit {meta.get('fit', 'pad-reflect (old store)')}; "
        f"classes '{meta['classes']['name']}'"
    )
    print(f"{labeled} labeled, {unlabeled} unlabeled")
    print(f"{'split':<8}{'labeled':>9}{'unlabeled':>11}")
    for split, c in counts.items():
        print(f"{split:<8}{c['labeled']:>9}{c['unlabeled']:>11}")
    print(f"\n{'id':>3}  {'class':<16}{'colour':<15}{'train pixels':>13}")
    freq = meta["class_pixel_frequency"]
    for c in meta["classes"]["classes"]:
        color = "#{:02x}{:02x}{:02x}".format(*c["color"])
        print(f"{c['id']:>3}  {c['name']:<16}{color:<15}{100 * freq[c['name']]:>12.2f}%")
    for depth, level in enumerate(meta["classes"].get("coarse_levels", [])):
        groups = "; ".join(f"{g['name']}: {', '.join(g['members'])}" for g in level)
        print(f"coarse level {depth}: {groups}")
    pairs = meta["classes"].get("mirror_pairs", [])
    if pairs:
        print("left/right pairs (swapped by every flip): " + ", ".join(f"{a} <-> {b}" for a, b in pairs))


def cmd_info(args) -> int:
    import json

    root = resolve_data(args.data)
    try:
        meta = json.loads((root / "dataset.json").read_text())
    except (OSError, ValueError) as exc:
        raise StylesegError(
            f"{root / 'dataset.json'}: {exc}; {root} is not a prepared dataset (run `styleseg prepare`)"
        ) from exc
    print(f"prepared dataset {root} (from {meta.get('source', {}).get('path')})")
    print_summary(meta)
    if args.preview:
        preview(root, args)
    return 0


def preview(root: Path, args) -> None:
    """A picture of n samples of a split: image | mask | overlay (the store read in full here)."""
    import numpy as np

    from styleseg.data.store import PreparedDataset
    from styleseg.viz import grid, save_png, triplet, upscale, with_legend

    ds = PreparedDataset(root)
    idx = ds.indices(args.split, labeled_only=True)
    if len(idx) == 0:
        raise StylesegError(f"{ds.root}: split '{args.split}' has no labeled samples to preview")
    pick = np.sort(np.random.default_rng(args.seed).choice(idx, min(args.n, len(idx)), replace=False))
    images, masks = ds.load_batch(pick)
    palette = ds.class_map.palette
    tiles = [triplet(images[i].permute(1, 2, 0).numpy(), masks[i].numpy(), palette) for i in range(len(pick))]
    picture = upscale(grid(tiles, cols=4), 2)
    save_png(with_legend(picture, ds.class_map.classes, palette), args.preview)
    print(f"preview of {len(pick)} {args.split} samples (image | mask | overlay): {args.preview}")


def cmd_download(args) -> int:
    from tqdm import tqdm

    from styleseg.data.download import download_dataset

    root = Path(args.root) if args.root else cache_root()
    bar = tqdm(unit="B", unit_scale=True, desc=f"download {args.name}", disable=not sys.stderr.isatty())

    def progress(done, total):
        bar.total = total or None
        bar.update(done - bar.n)

    path, fetched = download_dataset(args.name, root, args.url, args.sha256, progress)
    bar.close()
    print(f"{'downloaded' if fetched else 'already present'}: {path}")
    return 0


def cmd_synthetic(args) -> int:
    from styleseg.data.geometry import parse_resolution
    from styleseg.data.synthetic import write_synthetic_parsing

    try:
        size = parse_resolution(args.size)
    except ValueError as exc:
        raise StylesegError(str(exc)) from exc
    import time

    start = time.perf_counter()
    write_synthetic_parsing(Path(args.out), args.n, size, args.seed)
    print(f"wrote {args.n} synthetic samples at {args.size} into {args.out} in {time.perf_counter() - start:.1f} s")
    return 0
