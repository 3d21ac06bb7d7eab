"""Helpers shared by subcommands."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

from styleseg.errors import StylesegError

DATA_ENV = "STYLESEG_DATA"


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line, the option and what is wrong with it, and exit status 2 (the usage
    is one `--help` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not '{text}'") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, not {value}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    return _whole_number(text, 1)


def nonnegative_int(text: str) -> int:
    """An argparse type: a whole number of at least 0."""
    return _whole_number(text, 0)


def finite_float(text: str) -> float:
    """An argparse type: a finite number (no nan, no inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not '{text}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    value = finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value:g}")
    return value


def int_list(text: str) -> list[int]:
    """An argparse type: comma-separated whole numbers (at least one)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, not '{text}'") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number, got none")
    return values


def float_list(text: str) -> list[float]:
    """An argparse type: comma-separated finite numbers (at least one)."""
    values = [finite_float(v) for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number, got none")
    return values


def float_pair(text: str) -> tuple[float, float]:
    """An argparse type: LOW,HIGH, two finite numbers."""
    values = float_list(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected two numbers LOW,HIGH like 0.7,1, not '{text}'")
    return values[0], values[1]


def seed_list(text: str) -> list[int]:
    """An argparse type: a seed range A-B (A <= B) or comma-separated seeds."""
    if "-" in text.strip().lstrip("-") and "," not in text:
        a, b = text.split("-", 1)
        try:
            first, last = int(a), int(b)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a seed range like 0-15, not '{text}'") from None
        if last < first:
            raise argparse.ArgumentTypeError(f"the range {text} is empty: the first seed must not exceed the last")
        return list(range(first, last + 1))
    return int_list(text)


def png_file(value: str) -> str:
    """An argparse type: a PNG file to write (not an existing folder)."""
    path = Path(value)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"'{value}' is a folder; name the PNG file to write, e.g. {path / 'grid.png'}")
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"'{value}' does not end in .png")
    return value


def name_list(text: str) -> list[str]:
    """'skirt,coat' -> ['skirt', 'coat'] (empty items dropped)."""
    return [v.strip() for v in text.split(",") if v.strip()]


def add_class_target_args(parser, pairs: str = "pairs") -> None:
    """--classes and --class-rate: class-targeted sampling, for every command that draws pairs."""
    parser.add_argument(
        "--classes",
        type=name_list,
        default=[],
        metavar="NAME,...",
        help="class-targeted sampling: ask the generator for pairs showing these classes (e.g. skirt,coat), "
        "screened in w-space and checked on the mask",
    )
    parser.add_argument(
        "--class-rate",
        type=fraction,
        default=0.0,
        help=f"with --classes: the share of {pairs} that should show one of them (e.g. 0.5)",
    )


def class_target(args) -> tuple[list[str], float]:
    """(classes, rate) from the options `add_class_target_args` added; --classes needs a rate."""
    if args.classes and not args.class_rate:
        raise StylesegError("--classes needs a --class-rate in (0, 1], e.g. --class-rate 0.5")
    return args.classes, (args.class_rate if args.classes else 0.0)


def resolve_data(arg: str | None) -> Path:
    """--data, else $STYLESEG_DATA, else a clear error."""
    value = arg or os.environ.get(DATA_ENV)
    if not value:
        raise StylesegError(f"no dataset given: pass --data DIR or set {DATA_ENV}")
    return Path(value)


def folder_arg(value: str) -> str:
    """argparse type of an --out that names a folder: an existing file there, or a place that cannot be
    written, is refused before any work starts (the file is left as it is)."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a file; this command writes a folder there")
    check_writable(path)
    return value


def check_writable(path: Path) -> None:
    """Try writing where `path` is or would be created (the nearest existing folder above it): a
    probe folder made and removed at once, so permissions, read-only file systems and paths through
    files are all found before the work, whoever runs it (root ignores permission bits)."""
    place = Path(path).absolute()
    while not place.exists():
        place = place.parent
    if not place.is_dir():
        raise argparse.ArgumentTypeError(f"{place} is a file, so {path} cannot be a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".styleseg-probe-", dir=place))
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot write into {place} ({exc.strerror})") from None


def add_data_arg(parser, help_text: str = "dataset folder (default: $STYLESEG_DATA)") -> None:
    parser.add_argument("--data", default=None, help=help_text)


def add_device_arg(parser) -> None:
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")


def add_model_args(parser) -> None:
    """--ckpt (a run or checkpoint folder) or --model (a shipped model's name, or an exported file)."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--ckpt", help="run folder, checkpoint folder, or a file inside one")
    group.add_argument("--model", help="a shipped model by name (see `styleseg models`) or an exported .safetensors")


def load_model_arg(args, device):
    """The generator named by --ckpt or --model."""
    from styleseg.models.load import load_generator
    from styleseg.models.zoo import load_model

    if getattr(args, "model", None):
        return load_model(args.model, device)
    return load_generator(Path(args.ckpt), device)


def load_generator_spec(spec: str, device):
    """A generator named as `--generator` takes it: a shipped model's name, an exported .safetensors,
    or a run/checkpoint folder (or a file in one)."""
    from styleseg.models.load import load_generator
    from styleseg.models.zoo import load_model

    path = Path(spec)
    if path.exists() and path.suffix != ".safetensors":
        return load_generator(path, device)
    return load_model(spec, device)
