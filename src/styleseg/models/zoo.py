"""Trained generators as single files, shipped inside the package or hosted elsewhere.

An exported model is one safetensors file: the generator's EMA weights (fp16 by default, to keep it
small) and, in the file's metadata, everything needed to rebuild it: the run's config, the class
map, the growth state and kimg. No pickle: opening it runs no code. Optionally the file also holds
the discriminator (tensors named `D.*`) and ADA's p, so that training can go on from the file
(`styleseg train --init`) with a discriminator that already knows the data.

The registry (`styleseg/zoo/registry.json`, plus the JSON file named by $STYLESEG_MODELS if set)
names each model: either a `file` inside the package, or a `url` with its `sha256`, downloaded once
into the cache (~/.cache/styleseg/models) and checked before use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from styleseg.config import ConfigError, config_from_json, to_dict
from styleseg.data.classes import ClassMap
from styleseg.errors import CheckpointError
from styleseg.models.generator import Generator
from styleseg.models.growth import GrowthState
from styleseg.models.load import LoadedGenerator

MODEL_FORMAT = "styleseg-generator/1"
D_PREFIX = "D."
REGISTRY_ENV = "STYLESEG_MODELS"


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
        config = config_from_json(json.loads(meta["config"]))
        class_map = ClassMap.from_json(json.loads(meta["classes"]))
        growth = GrowthState(**json.loads(meta["growth"]))
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: metadata does not describe a styleseg model ({exc})") from exc
    G = Generator(config.model, [lvl.num_classes for lvl in class_map.levels()])
    own = G.state_dict()
    if set(own) != set(g_state) or any(own[k].shape != g_state[k].shape for k in own):
        raise CheckpointError(f"{path}: weights do not match the model its metadata describes")
    G.load_state_dict({k: v.to(own[k].dtype) for k, v in g_state.items()})
    G.eval().requires_grad_(False).to(device)
    model = LoadedGenerator(G, config, class_map, growth, float(meta["kimg"]), path)
    ada_p = float(meta["ada_p"]) if "ada_p" in meta else None
    return model, d_state or None, ada_p


def load_exported(path: Path, device: torch.device) -> LoadedGenerator:
    """Rebuild a generator from an exported file (weights cast to fp32)."""
    return load_exported_for_training(path, device)[0]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    file: str | None = None  # inside the package (styleseg/zoo/)
    url: str | None = None
    sha256: str | None = None
    card: str | None = None  # model card inside the package


def registry() -> dict[str, ModelEntry]:
    """Shipped models, then those of $STYLESEG_MODELS (a JSON file of the same form), which may add or
    replace entries."""
    entries = json.loads(resources.files("styleseg.zoo").joinpath("registry.json").read_text())
    extra = os.environ.get(REGISTRY_ENV)
    if extra:
        try:
            entries.update(json.loads(Path(extra).read_text()))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{extra} (${REGISTRY_ENV}): cannot read model registry ({exc})") from exc
    out = {}
    for name, e in entries.items():
        entry = ModelEntry(name=name, **e)
        if not entry.file and not (entry.url and entry.sha256):
            raise CheckpointError(f"model '{name}': needs a packaged 'file' or a 'url' with its 'sha256'")
        out[name] = entry
    return out


def models_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "styleseg" / "models"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch_model(entry: ModelEntry, cache: Path | None = None) -> Path:
    """The local file of a hosted model: downloaded once, checked against its sha256, moved into the
    cache atomically; a cached file is re-checked before use."""
    cache = Path(cache or models_cache())
    dest = cache / f"{entry.name}-{entry.sha256[:12]}.safetensors"
    if dest.is_file():
        if _sha256(dest) == entry.sha256:
            return dest
        dest.unlink()  # a damaged cache entry is fetched again
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.name}.", dir=cache)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(entry.url, timeout=60) as response:
            shutil.copyfileobj(response, out, 1 << 20)
        actual = _sha256(tmp)
        if actual != entry.sha256:
            raise CheckpointError(f"{entry.url}: checksum {actual} does not match the registry's {entry.sha256}")
        os.replace(tmp, dest)
    except OSError as exc:
        raise CheckpointError(f"{entry.url}: download of model '{entry.name}' failed ({exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def model_path(name: str) -> Path:
    """The local file of a registered model (a packaged file, or a cached download)."""
    models = registry()
    if name not in models:
        raise CheckpointError(f"unknown model '{name}': known models are {sorted(models)} (see `styleseg models`)")
    entry = models[name]
    if entry.file:
        path = Path(str(resources.files("styleseg.zoo").joinpath(entry.file)))
        if not path.is_file():
            raise CheckpointError(f"model '{name}': packaged file {path} is missing (a broken install?)")
        return path
    return fetch_model(entry)


def model_file(name_or_path: str) -> Path:
    """The file of a registered model by name, or an exported model file given by its path."""
    path = Path(name_or_path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise CheckpointError(f"{path}: model file not found")
        return path
    return model_path(name_or_path)


def load_model(name_or_path: str, device: torch.device) -> LoadedGenerator:
    """A registered model by name, or an exported model file."""
    return load_exported(model_file(name_or_path), device)
