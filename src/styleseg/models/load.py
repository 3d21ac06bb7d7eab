"""Load a trained generator from a checkpoint: config and weights round-trip without pickle."""

from __future__ import annotations

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


def load_generator(path: Path, device: torch.device, which: str = "G_ema") -> LoadedGenerator:
    ckpt = resolve_checkpoint(Path(path))
    meta = load_json(ckpt / "meta.json")
    try:
        config = config_from_json(load_json(ckpt / "config.json"))
        class_map = ClassMap.from_json(meta["classes"])
        growth = GrowthState(**meta["growth"])
    except (ConfigError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{ckpt}: config.json/meta.json do not describe a styleseg model ({exc})") from exc
    G = Generator(config.model, [lvl.num_classes for lvl in class_map.levels()])
    load_weights(G, ckpt / f"{which}.safetensors")
    G.eval().requires_grad_(False).to(device)
    return LoadedGenerator(G, config, class_map, growth, float(meta["kimg"]), ckpt)
