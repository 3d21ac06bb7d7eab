"""Run folders: numbered, holding the resolved config, provenance, a JSONL log, TensorBoard
scalars, sample grids and checkpoints. Only rank 0 writes."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from styleseg import __version__


def git_hash() -> str:
    """The commit of the styleseg source in use, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def new_run_dir(out: Path, tag: str) -> Path:
    """out/NNNNN-tag with the next free number."""
    out.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in out.iterdir() if (m := re.match(r"^(\d{5})-", p.name))]
    run = out / f"{max(numbers, default=-1) + 1:05d}-{tag}"
    run.mkdir()
    return run


def latest_run_dir(out: Path) -> Path | None:
    """The newest numbered run in `out` that has a checkpoint."""
    if not out.is_dir():
        return None
    runs = sorted(p for p in out.iterdir() if re.match(r"^\d{5}-", p.name) and (p / "checkpoints").is_dir())
    for run in reversed(runs):
        if any(c.name.startswith("ckpt-") for c in (run / "checkpoints").iterdir()):
            return run
    return None


def provenance(device: torch.device, world_size: int) -> dict:
    return {
        "styleseg_version": __version__,
        "git": git_hash(),
        "command": sys.argv,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "device": str(device),
        "world_size": world_size,
    }


class RunLogger:
    """JSONL log plus TensorBoard scalars; both append, so a resumed run continues its files."""

    def __init__(self, run: Path, enabled: bool = True):
        self.run, self.enabled = run, enabled
        self._tb = None
        if enabled:
            self._jsonl = open(run / "log.jsonl", "a", buffering=1)
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(run / "tb")

    def scalars(self, record: dict, step_images: int) -> None:
        if not self.enabled:
            return
        self._jsonl.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")
        for key, value in record.items():
            if isinstance(value, int | float) and value is not None:
                self._tb.add_scalar(key, value, step_images)

    def event(self, record: dict) -> None:
        if self.enabled:
            self._jsonl.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tb.close()
