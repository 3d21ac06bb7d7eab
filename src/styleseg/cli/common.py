"""Helpers shared by subcommands."""

from __future__ import annotations

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


def add_data_arg(parser, help_text: str = "dataset folder (default: $STYLESEG_DATA)") -> None:
    parser.add_argument("--data", default=None, help=help_text)


def add_device_arg(parser) -> None:
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
