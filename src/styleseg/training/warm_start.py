"""Where `styleseg train --init` starts: a trained generator (a shipped model, an exported file, or a
run's checkpoint), with its discriminator and ADA's p where the source holds them.

Unlike --resume, which restores a run exactly (optimisers, samplers, RNG), a warm start begins a new
run: fresh optimisers and samplers, the source's weights, and the schedule taken up at the source's
kimg, so a model can be trained further on its own data (across machines that keep no run folder)
or fine-tuned on another dataset with the same classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from styleseg.config import TrainConfig
from styleseg.data.classes import ClassMap
from styleseg.models.growth import GrowthState
from styleseg.models.load import load_generator
from styleseg.models.weights import resolve_checkpoint
from styleseg.models.zoo import load_exported_for_training, model_file
from styleseg.training.checkpoint import discriminator_state


@dataclass
class WarmStart:
    generator: dict[str, torch.Tensor]
    """The source's EMA generator weights (G and G_ema both start from them)."""
    discriminator: dict[str, torch.Tensor] | None
    ada_p: float | None
    config: TrainConfig
    class_map: ClassMap
    growth: GrowthState
    kimg: float
    path: Path

    def describe(self) -> dict:
        return {
            "path": str(self.path),
            "kimg": self.kimg,
            "discriminator": self.discriminator is not None,
            "ada_p": self.ada_p,
        }


def read_warm_start(source: str) -> WarmStart:
    """A shipped model's name, an exported .safetensors, or a run/checkpoint folder."""
    cpu = torch.device("cpu")
    path = Path(source)
    if path.is_dir() or (path.exists() and path.suffix != ".safetensors"):  # a run or checkpoint folder
        ckpt = resolve_checkpoint(path)
        model = load_generator(ckpt, cpu)
        d_state, ada_p = discriminator_state(ckpt)  # every checkpoint the loop writes has both
    else:
        model, d_state, ada_p = load_exported_for_training(model_file(source), cpu)
    return WarmStart(
        generator=model.G.state_dict(),
        discriminator=d_state,
        ada_p=ada_p,
        config=model.config,
        class_map=model.class_map,
        growth=model.growth,
        kimg=model.kimg,
        path=model.path,
    )
