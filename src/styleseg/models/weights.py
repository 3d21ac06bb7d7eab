"""Reading weights: checkpoint folders (the training loop writes them, see training/checkpoint.py)
and safetensors files, with errors that name the file and the mismatch. Lives below the loop, so
that loading a model never imports training code."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from styleseg.errors import CheckpointError

PREFIX = "ckpt-"


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


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors (on the CPU), naming the file on failure."""
    try:
        return load_file(path, device="cpu")
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: missing from checkpoint") from exc
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt or not a safetensors file ({exc})") from exc


def assign_weights(
    module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str | Path, new_from_stage: int | None = None
) -> None:
    """Load a state dict into a module (casting dtypes), naming `source` and the mismatch on failure.
    With `new_from_stage`, the module is a grown copy of the source's network: its parameters of that
    stage and later (`module.stage_of`) are new and keep their initial values; every other one must
    be in `tensors`."""
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if new_from_stage is not None:
        missing = [k for k in missing if (module.stage_of(k) or 0) < new_from_stage]
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: does not match this model (missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})"
        )
    for key, value in tensors.items():
        if own[key].shape != value.shape:
            raise CheckpointError(
                f"{source}: '{key}' has shape {tuple(value.shape)}, the model expects "
                f"{tuple(own[key].shape)} (a checkpoint of another configuration?)"
            )
    module.load_state_dict(tensors, strict=new_from_stage is None)


def load_weights(module: torch.nn.Module, path: Path) -> None:
    """Load a safetensors file into a module, naming the file and the mismatch on failure."""
    assign_weights(module, read_safetensors(path), path)
