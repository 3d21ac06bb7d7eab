"""Checkpoints without pickled code.

A checkpoint is a folder: G.safetensors, D.safetensors, G_ema.safetensors (weights), state.pt
(optimisers, RNG, sampler, augmentation, counters; loadable with torch.load(weights_only=True)),
config.json (the run's resolved config) and meta.json (class map, growth state, kimg). It is
written into a hidden temporary folder, every file fsynced, then renamed: a crash or a full disk
leaves the previous checkpoint intact. Older checkpoints are pruned only after the rename.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from styleseg.errors import CheckpointError
from styleseg.models.weights import list_checkpoints, load_json, load_weights, resolve_checkpoint

WEIGHT_FILES = ("G", "D", "G_ema")
__all__ = ["list_checkpoints", "load_json", "load_state", "load_weights", "resolve_checkpoint", "save_checkpoint"]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    folder: Path, name: str, modules: dict[str, torch.nn.Module], state: dict, config: dict, meta: dict, keep: int
) -> Path:
    """Write checkpoint `folder/name` atomically and keep the newest `keep` checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    tmp = folder / f".{name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        for key, module in modules.items():
            tensors = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
            save_file(tensors, tmp / f"{key}.safetensors", metadata={"format": "pt"})
        torch.save(state, tmp / "state.pt")
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        for path in tmp.iterdir():
            _fsync(path)
        if final.exists():  # re-writing the same kimg (e.g. a signal right after a scheduled save)
            shutil.rmtree(final)
        tmp.rename(final)
        _fsync(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: missing from checkpoint") from exc
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt resume state ({exc})") from exc
