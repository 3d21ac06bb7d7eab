"""Load a trained generator from a checkpoint: config and weights round-trip without pickle."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from styleseg.config import ConfigError, TrainConfig, config_from_json
from styleseg.data.classes import ClassMap, Level
from styleseg.errors import CheckpointError
from styleseg.models.generator import Generator
from styleseg.models.growth import GrowthState
from styleseg.models.weights import load_json, load_weights, resolve_checkpoint


@dataclass
class LoadedGenerator:
    G: Generator
    config: TrainConfig
    class_map: ClassMap
    growth: GrowthState
    kimg: float
    path: Path

    @property
    def level(self) -> Level | None:
        """The class level the generator emits (None for an image-only model)."""
        if self.growth.seg_level is None:
            return None
        return self.class_map.levels()[self.growth.seg_level]


def generator_from_metadata(config: dict, classes: dict, growth: dict, where: Path) -> LoadedGenerator:
    """An untrained generator of the architecture that saved metadata (config, class map, growth
    state) describe: the one way checkpoints and exported files rebuild their networks. `where`
    names the source in errors; `kimg` and the weights are the caller's to fill in."""
    try:
        cfg = config_from_json(config)
        class_map = ClassMap.from_json(classes)
        state = GrowthState(**growth)
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: its metadata does not describe a styleseg model ({exc})") from exc
    G = Generator(cfg.model, [lvl.num_classes for lvl in class_map.levels()])
    return LoadedGenerator(G, cfg, class_map, state, 0.0, Path(where))


def load_generator(path: Path, device: torch.device, which: str = "G_ema") -> LoadedGenerator:
    ckpt = resolve_checkpoint(Path(path))
    meta = load_json(ckpt / "meta.json")
    if not isinstance(meta, dict) or "classes" not in meta or "growth" not in meta:
        raise CheckpointError(f"{ckpt / 'meta.json'}: not a styleseg checkpoint's meta.json")
    model = generator_from_metadata(load_json(ckpt / "config.json"), meta["classes"], meta["growth"], ckpt)
    load_weights(model.G, ckpt / f"{which}.safetensors")
    model.G.eval().requires_grad_(False).to(device)
    model.kimg = float(meta.get("kimg", 0.0))
    return model


def generator_digest(model: LoadedGenerator) -> str:
    """sha256 (16 hex digits) of a generator's weights, tensor bytes in name order: names the model
    in cache keys and generation records wherever its file lives."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.G.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]
