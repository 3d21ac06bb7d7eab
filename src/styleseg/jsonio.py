"""JSON files written by runs and commands: paths and numpy scalars serialised, one newline at the end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def json_default(o):
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o))


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=json_default) + "\n")
