"""`styleseg generate`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tqdm import tqdm

from styleseg.cli.common import add_device_arg
from styleseg.generate import GenerateOptions, generate_dataset
from styleseg.models.load import load_generator
from styleseg.sampling import resolve_device


def register(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="export generated (image, mask) pairs as a paired dataset",
        description="Write images/, masks/ (palette PNGs of class ids), optional overlays/, classes.json and "
        "manifest.jsonl. An interrupted run continues where it stopped when run again with the same --out.",
    )
    p.add_argument("--ckpt", required=True, help="run folder, checkpoint folder, or a file inside one")
    p.add_argument("--n", type=int, required=True, help="number of pairs to keep")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="first seed; sample k uses seed+k (default 0)")
    p.add_argument("--truncation", type=float, default=1.0, metavar="PSI", help="truncation psi (default 1)")
    p.add_argument("--batch", type=int, default=32, help="samples per forward pass (default 32)")
    p.add_argument("--overlays", action="store_true", help="also write overlays/")
    p.add_argument("--require-person", action="store_true", help="drop samples whose mask has no person")
    p.add_argument(
        "--min-person-fraction",
        type=float,
        default=0.0,
        help="drop samples whose person area is below this fraction of the image",
    )
    p.add_argument("--no-write", action="store_true", help="generate without writing files (benchmarking)")
    add_device_arg(p)
    p.set_defaults(func=cmd_generate)


def cmd_generate(args) -> int:
    device = resolve_device(args.device)
    model = load_generator(Path(args.ckpt), device)
    opts = GenerateOptions(
        n=args.n,
        seed=args.seed,
        psi=args.truncation,
        batch=args.batch,
        overlays=args.overlays,
        min_person_fraction=args.min_person_fraction,
        require_person=args.require_person,
        write=not args.no_write,
    )
    bar = tqdm(total=args.n, unit="pair", desc="generate", disable=not sys.stderr.isatty())

    def progress(done, total):
        bar.update(done - bar.n)

    start = time.perf_counter()
    result = generate_dataset(model, Path(args.out), opts, device, progress)
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
