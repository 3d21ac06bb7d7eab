"""`styleseg demo`: the main job end to end on CCP (what `make demo` runs)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from styleseg.cli.common import DATA_ENV, folder_arg
from styleseg.errors import StylesegError
from styleseg.paths import cache_root

CCP12 = ["--classes", "ccp-12"]


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="prepare CCP, train the demo preset through every growth event, write samples",
        description="Finds CCP (--data, $STYLESEG_DATA, ../shared/datasets/clothing-co-parsing, the download "
        "cache, or downloads it), prepares it at 48x32, trains the 'demo' preset (resuming an interrupted "
        "demo), then writes a sample grid, a style-mixing grid, an interpolation and 64 generated pairs, "
        "and a grid from the shipped model beside its own.",
    )
    p.add_argument("--data", default=None, help="CCP folder (default: see above)")
    p.add_argument("--out", default="runs/demo", type=folder_arg, help="demo folder (default runs/demo)")
    p.add_argument("--preset", default="demo", help="training preset (default demo)")
    p.add_argument("--n", type=int, default=64, help="pairs to generate (default 64)")
    p.set_defaults(func=cmd_demo)


def find_ccp(arg: str | None) -> Path:
    from styleseg.data.download import download_dataset

    candidates = [
        arg,
        os.environ.get(DATA_ENV),
        "../shared/datasets/clothing-co-parsing",
        str(cache_root() / "clothing-co-parsing"),
    ]
    for c in candidates:
        if c and (Path(c) / "photos").is_dir():
            return Path(c)
    if arg or os.environ.get(DATA_ENV):
        raise StylesegError(f"{arg or os.environ.get(DATA_ENV)}: not a CCP dataset folder")
    print("CCP not found locally; downloading it")
    path, _ = download_dataset("ccp", cache_root())
    return path


def _run(args, argv: list[str]) -> None:
    """Run `styleseg ARGV` in this process (args.run_command is the CLI's entry point)."""
    print("$ styleseg " + " ".join(argv), flush=True)
    rc = args.run_command(argv)
    if rc != 0:
        raise StylesegError(f"step failed with exit code {rc}: styleseg {' '.join(argv)}")


def shipped_model_grid(args, out: Path) -> Path | None:
    """A grid from the first shipped model, beside the demo's own: minutes against hours of training."""
    from styleseg.models.registry import registry

    packaged = [name for name, entry in sorted(registry().items()) if entry.file]
    if not packaged:
        return None
    path = out / f"grid-{packaged[0]}.png"
    _run(args, ["grid", "--model", packaged[0], "--out", str(path)])
    return path


def cmd_demo(args) -> int:
    from styleseg.models.weights import resolve_checkpoint
    from styleseg.training.run_dir import latest_run_dir

    start = time.perf_counter()
    out = Path(args.out)
    ccp = find_ccp(args.data)
    prepared = out / "prepared-48x32"
    if not (prepared / "dataset.json").exists():
        _run(
            args,
            ["prepare", "--data", str(ccp), "--out", str(prepared), "--resolution", "48x32", "--classes", "ccp-12"],
        )
    _run(
        args,
        ["train", "--data", str(prepared), "--out", str(out / "runs"), "--preset", args.preset, "--resume", "auto"],
    )
    run = latest_run_dir(out / "runs")
    ckpt = resolve_checkpoint(run)
    grids = sorted((run / "samples").glob("grid-*.png"))
    shutil.copyfile(grids[-1], out / "grid.png")
    _run(args, ["generate", "--ckpt", str(ckpt), "--n", str(args.n), "--out", str(out / "generated"), "--overlays"])
    _run(args, ["mix", "--ckpt", str(ckpt), "--out", str(out / "explore")])
    _run(
        args, ["interpolate", "--ckpt", str(ckpt), "--out", str(out / "explore"), "--seeds", "0,1,2,3", "--steps", "8"]
    )
    shipped = shipped_model_grid(args, out)
    minutes = (time.perf_counter() - start) / 60
    print(f"\ndemo finished in {minutes:.1f} min")
    print(f"sample grid: {out / 'grid.png'} (what {minutes:.0f} minutes of training buy)")
    if shipped:
        print(f"shipped model's grid: {shipped} (what hours of training buy)")
    print(f"generated pairs: {out / 'generated'}\nexploration: {out / 'explore'}")
    return 0
