"""Where `styleseg train --init` starts: a trained generator (a shipped model, an exported file, or a
run's checkpoint), with its discriminator and ADA's p where the source holds them.

Unlike --resume, which restores a run exactly (optimisers, samplers, step counter), a warm start
begins a new run: fresh optimisers and samplers, the source's weights, and the schedule taken up at
the source's kimg, so a model can be trained further on its own data (across machines that keep no
run folder) or fine-tuned on another dataset with the same classes.

A warm start can also grow the model: a config (a preset, or `--set model.resolution=...`) whose
network is the source's with more resolution stages gets the source's weights in its first stages,
and its added stages fade in from the source's kimg on, exactly as growth during training does.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch

from styleseg.config import ConfigError, TrainConfig, apply_overrides, config_from_json, load_preset, to_dict
from styleseg.data.classes import ClassMap
from styleseg.errors import StylesegError
from styleseg.models.growth import GrowthState, added_stages, grown_schedule, growth_at
from styleseg.models.load import load_generator
from styleseg.models.weights import assign_weights, resolve_checkpoint
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

    @property
    def default_d_only_kimg(self) -> float:
        """A fresh discriminator trains alone first, one that knows the data does not."""
        return 0.0 if self.discriminator is not None else 5.0

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


def warm_start_config(warm: WarmStart, preset: str | None, overrides: list[str], d_only_kimg: float) -> TrainConfig:
    """The config of a run started from `warm`: the source's own, or with `preset` the preset's recipe
    (`--set` overrides on top of either). Where that network adds stages to the source's, the added
    stages start to fade in once D has trained alone for `d_only_kimg` after the source's kimg, and
    (unless `schedule.total_kimg` is overridden) training runs as long past that point as the
    config's own schedule runs past the first added stage."""
    data = copy.deepcopy(load_preset(preset) if preset else to_dict(warm.config))
    target = config_from_json(apply_overrides(copy.deepcopy(data), overrides))
    try:
        added = added_stages(warm.config.model, target.model)
    except ConfigError as exc:
        raise ConfigError(f"{warm.path}: {exc}") from exc
    keys = {item.split("=", 1)[0].strip() for item in overrides}
    if not added or "schedule.stage_start_kimg" in keys:
        return target
    source_stages = warm.config.model.num_stages
    starts, fades = grown_schedule(
        warm.config.schedule, target.schedule, source_stages, target.model.num_stages, warm.kimg + d_only_kimg
    )
    shift = starts[source_stages - 1] - target.schedule.stage_starts(target.model.num_stages)[source_stages - 1]
    schedule = data.setdefault("schedule", {})
    schedule["stage_start_kimg"], schedule["stage_fade_kimg"] = starts, fades
    if "schedule.total_kimg" not in keys:
        schedule["total_kimg"] = round(target.schedule.total_kimg + shift, 3)
    return config_from_json(apply_overrides(data, overrides))  # overrides win, total_kimg absolute


def check_warm_start(source: WarmStart, cfg: TrainConfig, data) -> GrowthState:
    """That a run of `cfg` on `data` can start from `source`: the same network (or one that adds
    stages to it), the same classes, and a schedule that has the source grown as it is at its kimg.
    Returns the source's growth state under that schedule."""
    try:
        added_stages(source.config.model, cfg.model)
    except ConfigError as exc:
        raise StylesegError(f"{source.path}: {exc} (--set model.* ?)") from exc
    if source.class_map != data.class_map:
        raise StylesegError(
            f"{source.path}: its classes ({source.class_map.name}) are not {data.root}'s ({data.class_map.name})"
        )
    levels = len(data.class_map.levels())
    st = growth_at(source.kimg, cfg.schedule, source.config.model.num_stages, levels)
    if st != source.growth:
        raise StylesegError(
            f"{source.path}: saved at {source.growth}, but this run's schedule gives {st} at kimg {source.kimg:.2f}"
        )
    return st


def apply_warm_start(trainer, source: WarmStart, d_only_kimg: float | None = None) -> None:
    """Start `trainer` (training/loop.py) from a trained generator at its kimg. D comes from the source
    where it has one; a fresh D first trains alone for `d_only_kimg` (default 5 when fresh, 0
    otherwise), so that its first, uninformed gradients do not undo the generator. Where the run's
    networks add stages to the source's, those start from their initial weights and fade in when the
    schedule says (function-preserving: at alpha 0 G's output is the source's up-sampled, and D reads
    it down-sampled through the source's input layer)."""
    nets = trainer.nets
    st = check_warm_start(source, trainer.cfg, trainer.data)
    added = added_stages(source.config.model, trainer.cfg.model)
    trainer.images_seen = round(source.kimg * 1000)
    source_stages = source.config.model.num_stages
    new_from = source_stages if added else None
    for module in (nets.G, nets.G_ema):
        assign_weights(module, source.generator, source.path, new_from)
    if source.discriminator is not None:
        assign_weights(nets.D, source.discriminator, f"{source.path} (discriminator)", new_from)
    if source.ada_p is not None and trainer.cfg.augment.fixed_p is None:
        trainer.ada.p = source.ada_p
    if d_only_kimg is None:
        d_only_kimg = source.default_d_only_kimg
    trainer.d_only_until = trainer.images_seen + round(d_only_kimg * 1000)
    trainer.structure = st.structure  # the source's: no growth event may re-initialise a head; added stages follow
    trainer.next_snapshot = trainer.images_seen
    trainer.next_checkpoint = trainer.images_seen + int(trainer.cfg.checkpoint_kimg * 1000)
