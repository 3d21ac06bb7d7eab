"""The models styleseg knows by name: the registry (`styleseg/zoo/registry.json`, plus the JSON file
named by $STYLESEG_MODELS if set) names each model, either a `file` inside the package or a `url`
with its `sha256`, downloaded once into the cache ($XDG_CACHE_HOME/styleseg/models,
~/.cache/styleseg/models by default) and checked before use. Reading the registry and an exported
file's metadata needs no torch: `styleseg models` answers in a fraction of a second."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from styleseg.errors import CheckpointError
from styleseg.paths import models_cache

MODEL_FORMAT = "styleseg-generator/1"
REGISTRY_ENV = "STYLESEG_MODELS"


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


def exported_metadata(path: Path) -> dict[str, str]:
    """The metadata of an exported file, read from the safetensors header alone (8 bytes of length,
    then JSON): no tensors loaded, no torch imported."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
    except (OSError, struct.error, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt or not a safetensors file ({exc})") from exc
    meta = header.get("__metadata__") or {}
    if meta.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{path}: not an exported styleseg model (format {meta.get('format')!r})")
    return meta
