"""JSON files written by runs and commands: paths and numpy scalars serialised, one newline at the end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def json_default(o):
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o))


def json_text(data) -> str:
    return json.dumps(data, indent=2, default=json_default) + "\n"


def write_json(path: Path, data) -> None:
    """Write atomically (a temporary file renamed over the target): a reader never sees half a file,
    and an interrupted write leaves the previous file whole."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json_text(data))
    os.replace(tmp, path)
