"""`styleseg interpolate`, `styleseg mix`, `styleseg grid`, `styleseg truncation`."""

from __future__ import annotations

from pathlib import Path

from styleseg.cli.common import (
    add_device_arg,
    add_model_args,
    finite_float,
    float_list,
    folder_arg,
    int_list,
    load_generator_spec,
    load_model_arg,
    png_file,
    positive_int,
    seed_list,
)
from styleseg.errors import StylesegError


def _common(p) -> None:
    add_model_args(p)
    p.add_argument("--out", required=True, type=folder_arg, help="output folder")
    add_device_arg(p)


def register(sub) -> None:
    p = sub.add_parser(
        "interpolate",
        help="latent traversal between seeds as GIF, MP4 and a PNG strip",
        description="Image and mask side by side along a path through Z (spherical) or W (linear).",
    )
    _common(p)
    p.add_argument(
        "--seeds", type=int_list, default=[0, 1, 2, 3], help="comma-separated seeds visited in order (default 0,1,2,3)"
    )
    p.add_argument("--space", choices=["z", "w"], default="z", help="z: spherical in Z; w: linear in W")
    p.add_argument("--steps", type=positive_int, default=16, help="frames between two seeds (default 16)")
    p.add_argument("--truncation", type=finite_float, default=1.0, metavar="PSI")
    p.add_argument("--fps", type=positive_int, default=12)
    p.set_defaults(func=cmd_interpolate)

    p = sub.add_parser("mix", help="style-mixing grid (coarse, middle, fine styles from other seeds)")
    _common(p)
    p.add_argument("--cols", type=int_list, default=[0, 1, 2, 3], help="seeds that give the base styles (columns)")
    p.add_argument(
        "--rows", type=int_list, default=[10, 11], help="seeds whose coarse/middle/fine styles are swapped in"
    )
    p.add_argument("--truncation", type=finite_float, default=1.0, metavar="PSI")
    p.set_defaults(func=cmd_mix)

    p = sub.add_parser(
        "grid",
        help="image | mask | overlay for fixed seeds, as one PNG",
        description="Samples of a model from fixed seeds (seed k is the same sample everywhere), with a legend.",
    )
    add_model_args(p)
    p.add_argument("--out", required=True, type=png_file, help="PNG file to write")
    p.add_argument(
        "--seeds", type=seed_list, default=list(range(16)), help="seeds: a range A-B or comma-separated (default 0-15)"
    )
    p.add_argument("--cols", type=positive_int, default=4, help="seeds per row (default 4)")
    p.add_argument(
        "--beside",
        default=None,
        metavar="MODEL|CKPT",
        help="another model drawn at the same seeds beside each triplet (the smaller enlarged), to compare two",
    )
    p.add_argument("--truncation", type=finite_float, default=1.0, metavar="PSI")
    add_device_arg(p)
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("truncation", help="the same seeds across a range of truncation psi")
    _common(p)
    p.add_argument("--seeds", type=int_list, default=[0, 1, 2, 3], help="comma-separated seeds (rows)")
    p.add_argument(
        "--psi", type=float_list, default=[1, 0.8, 0.6, 0.4, 0.2, 0], help="comma-separated psi values (columns)"
    )
    p.set_defaults(func=cmd_truncation)


def cmd_interpolate(args) -> int:
    from styleseg.device import resolve_device
    from styleseg.explore import interpolate

    seeds = args.seeds
    if len(seeds) < 2:
        raise StylesegError("--seeds needs at least two seeds")
    device = resolve_device(args.device)
    files = interpolate(
        load_model_arg(args, device),
        seeds,
        Path(args.out),
        device,
        args.space,
        args.steps,
        args.truncation,
        args.fps,
    )
    for kind, path in files.items():
        print(f"{kind}: {path}")
    if "mp4" not in files:
        print("mp4: skipped (pip install 'styleseg[video]' for imageio-ffmpeg)")
    return 0


def cmd_mix(args) -> int:
    from styleseg.device import resolve_device
    from styleseg.explore import style_mix

    device = resolve_device(args.device)
    path = style_mix(
        load_model_arg(args, device),
        args.cols,
        args.rows,
        Path(args.out),
        device,
        args.truncation,
    )
    print(f"style mixing grid: {path}")
    return 0


def cmd_grid(args) -> int:
    from styleseg.device import resolve_device
    from styleseg.explore import sample_grid

    device = resolve_device(args.device)
    model = load_model_arg(args, device)
    beside = load_generator_spec(args.beside, device) if args.beside else None
    path = sample_grid(model, args.seeds, Path(args.out), device, args.truncation, args.cols, beside=beside)
    print(
        f"sample grid ({model.path}, kimg {model.kimg:.1f}"
        + (f"; beside {beside.path}" if beside else "")
        + f"): {path}"
    )
    return 0


def cmd_truncation(args) -> int:
    from styleseg.device import resolve_device
    from styleseg.explore import truncation_sweep

    device = resolve_device(args.device)
    path = truncation_sweep(load_model_arg(args, device), args.seeds, args.psi, Path(args.out), device)
    print(f"truncation sweep: {path}")
    return 0
