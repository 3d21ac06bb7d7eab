"""Trained generators as single files, shipped inside the package or hosted elsewhere.

An exported model is one safetensors file: the generator's EMA weights (fp16 by default, to keep it
small) and, in the file's metadata, everything needed to rebuild it: the run's config, the class
map, the growth state and kimg. No pickle: opening it runs no code. Optionally the file also holds
the discriminator (tensors named `D.*`) and ADA's p, so that training can go on from the file
(`styleseg train --init`) with a discriminator that already knows the data.

Which models exist, and where their files are, is `registry.py`'s job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from styleseg.config import to_dict
from styleseg.errors import CheckpointError
from styleseg.models.load import LoadedGenerator, generator_from_metadata
from styleseg.models.registry import MODEL_FORMAT, model_file

D_PREFIX = "D."


def export_generator(
    model: LoadedGenerator,
    path: Path,
    name: str,
    half: bool = True,
    card: dict | None = None,
    discriminator: dict[str, torch.Tensor] | None = None,
    ada_p: float | None = None,
) -> Path:
    """Write `model` (its G_ema) as one safetensors file with its config and classes in the metadata;
    with `discriminator` (a state dict) and `ada_p`, also what training needs to go on from it."""
    dtype = torch.float16 if half else torch.float32

    def cast(v: torch.Tensor) -> torch.Tensor:
        return v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()

    tensors = {k: cast(v) for k, v in model.G.state_dict().items()}
    tensors.update({D_PREFIX + k: cast(v) for k, v in (discriminator or {}).items()})
    meta = {
        "format": MODEL_FORMAT,
        "name": name,
        "config": json.dumps(to_dict(model.config)),
        "classes": json.dumps(model.class_map.to_json()),
        "growth": json.dumps(model.growth.__dict__),
        "kimg": str(model.kimg),
        "card": json.dumps(card or {}),
    }
    if ada_p is not None:
        meta["ada_p"] = repr(float(ada_p))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, path)
    return path


def is_exported_model(path: Path) -> bool:
    path = Path(path)
    if not path.is_file() or path.suffix != ".safetensors":
        return False
    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("format") == MODEL_FORMAT
    except (SafetensorError, OSError):
        return False


def _read_exported(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """An exported file's metadata and tensors, with errors that name the file."""
    path = Path(path)
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: model file not found") from exc
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: corrupt or not a safetensors file ({exc})") from exc
    if meta.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{path}: not an exported styleseg model (format {meta.get('format')!r})")
    return meta, tensors


def load_exported_for_training(
    path: Path, device: torch.device
) -> tuple[LoadedGenerator, dict[str, torch.Tensor] | None, float | None]:
    """An exported file's generator, and its discriminator's state dict and ADA's p (None where the
    file has none), from one read of the file."""
    path = Path(path)
    meta, tensors = _read_exported(path)
    d_state = {k[len(D_PREFIX) :]: v for k, v in tensors.items() if k.startswith(D_PREFIX)}
    g_state = {k: v for k, v in tensors.items() if not k.startswith(D_PREFIX)}
    try:
        parts = [json.loads(meta[key]) for key in ("config", "classes", "growth")]
        kimg = float(meta["kimg"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: metadata does not describe a styleseg model ({exc})") from exc
    model = generator_from_metadata(*parts, path)
    G, own = model.G, model.G.state_dict()
    if set(own) != set(g_state) or any(own[k].shape != g_state[k].shape for k in own):
        raise CheckpointError(f"{path}: weights do not match the model its metadata describes")
    G.load_state_dict({k: v.to(own[k].dtype) for k, v in g_state.items()})
    G.eval().requires_grad_(False).to(device)
    model.kimg = kimg
    ada_p = float(meta["ada_p"]) if "ada_p" in meta else None
    return model, d_state or None, ada_p


def load_exported(path: Path, device: torch.device) -> LoadedGenerator:
    """Rebuild a generator from an exported file (weights cast to fp32)."""
    return load_exported_for_training(path, device)[0]


def load_model(name_or_path: str, device: torch.device) -> LoadedGenerator:
    """A registered model by name, or an exported model file."""
    return load_exported(model_file(name_or_path), device)
