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
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from styleseg.errors import CheckpointError

WEIGHT_FILES = ("G", "D", "G_ema")
PREFIX = "ckpt-"


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


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints in a folder, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "meta.json").exists()
    )


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint folder from: a checkpoint folder, a file in one, a run folder, or a folder of runs
    (then the newest checkpoint of the newest run)."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint or run folder")
    if (path / "meta.json").exists() and (path / "G_ema.safetensors").exists():
        return path
    found = list_checkpoints(path / "checkpoints")
    if not found:
        runs = sorted(p for p in path.iterdir() if p.is_dir() and list_checkpoints(p / "checkpoints"))
        if runs:
            found = list_checkpoints(runs[-1] / "checkpoints")
    if not found:
        raise CheckpointError(f"{path}: holds no checkpoint (expected G_ema.safetensors and meta.json)")
    return found[-1]


def load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: missing from checkpoint") from exc
    except ValueError as exc:
        raise CheckpointError(f"{path}: corrupt JSON ({exc})") from exc


def load_weights(module: torch.nn.Module, path: Path) -> None:
    """Load a safetensors file into a module, naming the file and the mismatch on failure."""
    try:
        tensors = load_file(path, device="cpu")
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: missing from checkpoint") from exc
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt or not a safetensors file ({exc})") from exc
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: does not match this model (missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})"
        )
    for key, value in tensors.items():
        if own[key].shape != value.shape:
            raise CheckpointError(
                f"{path}: '{key}' has shape {tuple(value.shape)}, the model expects "
                f"{tuple(own[key].shape)} (a checkpoint of another configuration?)"
            )
    module.load_state_dict(tensors)


def load_state(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: missing from checkpoint") from exc
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt resume state ({exc})") from exc
