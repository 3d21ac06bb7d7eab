"""Checkpoints without pickled code.

A checkpoint is a folder: G.safetensors, D.safetensors, G_ema.safetensors (weights), state.pt
(optimisers, samplers, augmentation, counters; no random generator states:
every random number of a step is a function of the seed and the step; loadable with torch.load(weights_only=True)),
config.json (the run's resolved config) and meta.json (class map, growth state, kimg). It is
written into a hidden temporary folder, every file fsynced, then renamed: a crash or a full disk
leaves the previous checkpoint intact. Older checkpoints are pruned only after the rename.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from styleseg.errors import CheckpointError
from styleseg.jsonio import write_json
from styleseg.models.weights import list_checkpoints, read_safetensors

WEIGHT_FILES = ("G", "D", "G_ema")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tensor_bytes(obj) -> int:
    """Bytes of the tensors inside nested dicts and lists (the resume state's optimiser moments)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


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
    weights = {
        key: {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
        for key, module in modules.items()
    }
    needed = sum(t.numel() * t.element_size() for tensors in weights.values() for t in tensors.values())
    needed += _tensor_bytes(state)
    writing = tmp
    try:
        for key, tensors in weights.items():
            writing = tmp / f"{key}.safetensors"
            save_file(tensors, writing, metadata={"format": "pt"})
        writing = tmp / "state.pt"
        torch.save(state, writing)
        for name, data in (("config.json", config), ("meta.json", meta)):
            writing = tmp / name
            write_json(writing, data)
        for path in tmp.iterdir():
            _fsync(path)
        if final.exists():  # re-writing the same kimg (e.g. a signal right after a scheduled save)
            shutil.rmtree(final)
        tmp.rename(final)
        _fsync(folder)
    except (OSError, RuntimeError, SafetensorError) as exc:
        # torch's zip writer reports a full disk as a RuntimeError ("unexpected pos ..."), safetensors
        # and plain writes as OSError: one clear line either way; the previous checkpoint is untouched.
        shutil.rmtree(tmp, ignore_errors=True)
        free = shutil.disk_usage(folder).free
        previous = list_checkpoints(folder)
        kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
        raise CheckpointError(
            f"{writing}: could not write the checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
            f"it needs about {needed / 2**20:.1f} MiB and {free / 2**20:.1f} MiB are free on that disk; {kept}"
        ) from exc
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


def discriminator_state(ckpt: Path) -> tuple[dict[str, torch.Tensor], float]:
    """A checkpoint's discriminator weights and ADA's p: what training needs beside the generator to
    go on from it in a new run (`train --init`, `models export --with-discriminator`)."""
    return read_safetensors(ckpt / "D.safetensors"), float(load_state(ckpt / "state.pt")["ada"]["p"])
