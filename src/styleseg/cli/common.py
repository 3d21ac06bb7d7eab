"""Helpers shared by subcommands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from styleseg.errors import StylesegError

DATA_ENV = "STYLESEG_DATA"


def resolve_data(arg: str | None) -> Path:
    """--data, else $STYLESEG_DATA, else a clear error."""
    value = arg or os.environ.get(DATA_ENV)
    if not value:
        raise StylesegError(f"no dataset given: pass --data DIR or set {DATA_ENV}")
    return Path(value)


def folder_arg(value: str) -> str:
    """argparse type of an --out that names a folder: an existing file there is refused before any
    work starts (and is left as it is)."""
    if Path(value).exists() and not Path(value).is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a file; this command writes a folder there")
    return value


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
