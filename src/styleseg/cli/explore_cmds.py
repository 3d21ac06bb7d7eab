"""`styleseg interpolate`, `styleseg mix`, `styleseg truncation`."""

from __future__ import annotations

from pathlib import Path

from styleseg.cli.common import add_device_arg, add_model_args, load_model_arg
from styleseg.errors import StylesegError
from styleseg.explore import interpolate, style_mix, truncation_sweep
from styleseg.sampling import resolve_device


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise StylesegError(f"expected comma-separated integers, got '{text}'") from exc


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise StylesegError(f"expected comma-separated numbers, got '{text}'") from exc


def _common(p) -> None:
    add_model_args(p)
    p.add_argument("--out", required=True, help="output folder")
    add_device_arg(p)


def register(sub) -> None:
    p = sub.add_parser(
        "interpolate",
        help="latent traversal between seeds as GIF, MP4 and a PNG strip",
        description="Image and mask side by side along a path through Z (spherical) or W (linear).",
    )
    _common(p)
    p.add_argument("--seeds", default="0,1,2,3", help="comma-separated seeds visited in order (default 0,1,2,3)")
    p.add_argument("--space", choices=["z", "w"], default="z", help="z: spherical in Z; w: linear in W")
    p.add_argument("--steps", type=int, default=16, help="frames between two seeds (default 16)")
    p.add_argument("--truncation", type=float, default=1.0, metavar="PSI")
    p.add_argument("--fps", type=int, default=12)
    p.set_defaults(func=cmd_interpolate)

    p = sub.add_parser("mix", help="style-mixing grid (coarse, middle, fine styles from other seeds)")
    _common(p)
    p.add_argument("--cols", default="0,1,2,3", help="seeds that give the base styles (columns)")
    p.add_argument("--rows", default="10,11", help="seeds whose coarse/middle/fine styles are swapped in")
    p.add_argument("--truncation", type=float, default=1.0, metavar="PSI")
    p.set_defaults(func=cmd_mix)

    p = sub.add_parser("truncation", help="the same seeds across a range of truncation psi")
    _common(p)
    p.add_argument("--seeds", default="0,1,2,3")
    p.add_argument("--psi", default="1,0.8,0.6,0.4,0.2,0", help="comma-separated psi values")
    p.set_defaults(func=cmd_truncation)


def cmd_interpolate(args) -> int:
    seeds = _ints(args.seeds)
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
    device = resolve_device(args.device)
    path = style_mix(
        load_model_arg(args, device),
        _ints(args.cols),
        _ints(args.rows),
        Path(args.out),
        device,
        args.truncation,
    )
    print(f"style mixing grid: {path}")
    return 0


def cmd_truncation(args) -> int:
    device = resolve_device(args.device)
    path = truncation_sweep(load_model_arg(args, device), _ints(args.seeds), _floats(args.psi), Path(args.out), device)
    print(f"truncation sweep: {path}")
    return 0
