"""Typed run configuration: nested dataclasses, loaded from a YAML preset, overridden with
`--set section.key=value`, validated in __post_init__, and written into every run folder."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from styleseg.errors import StylesegError


class ConfigError(StylesegError):
    pass


@dataclass
class ModelConfig:
    """Generator and discriminator architecture."""

    resolution: tuple[int, int] = (48, 32)
    """Final output H, W; must be base_shape times a power of two."""
    base_shape: tuple[int, int] = (3, 2)
    """H, W of the learned constant input (3x2 suits the 3:2 portrait default); each stage doubles it."""
    z_dim: int = 512
    """Latent z size."""
    w_dim: int = 512
    """Intermediate latent w size."""
    mapping_layers: int = 8
    """Depth of the mapping network z -> w."""
    mapping_lr_mul: float = 0.01
    """Learning-rate multiplier of the mapping network (equalized learning rate)."""
    channel_base: int = 4096
    """Channels of stage 0 before the cap; halves every stage (4096 with a 512 cap = StyleGAN's widths)."""
    channel_max: int = 512
    """Upper bound on channels of any stage."""
    channel_min: int = 8
    """Lower bound on channels of any stage: keeps the high-resolution stages of a narrow model from
    thinning out (e.g. a 128x96 stage grown onto a model whose 64x48 stage has 32 channels)."""
    head_init_scale: float = 0.1
    """Initial size of G's output-head weights relative to the equalized-lr init. 1.0 (as in StyleGAN)
    starts every stage with saturated colour noise that takes thousands of steps to unlearn; 0.1
    starts from flat grey (measured in docs/results.md, "Why the output heads start small")."""
    inherit_rgb_head: bool = False
    """When a resolution stage fades in, its RGB projection starts as a copy of the previous stage's
    (weights where the two widths match, the bias always) instead of small, so that the fade mixes
    in an image closer to the old one (at 128x96: contrast 0.23 instead of 0.16, the old head's
    0.61; docs/results.md). The mask projections still start small: class probabilities fade as such."""
    residual_heads_from: int | None = None
    """From this stage on, a stage's output (image and mask logits) is the output of the stage below,
    up-sampled smoothly, plus its own head's (StyleGAN2's skip generator), instead of replacing it
    after a fade. A stage grown onto a trained model then only adds detail; nothing is handed over
    when its fade ends (with the replacing fade the 128x96 images washed out: the old head was
    sharpened instead of the new one taught; docs/results.md). None: every stage replaces."""
    residual_detail_only: bool = False
    """A residual stage adds only detail: its head's image and logits less their own low-pass (the
    head's output down-sampled and up-sampled smoothly), as each level of a Laplacian pyramid
    (LAPGAN). What the stage below drew (colours, regions) it can then sharpen but not repaint:
    unconstrained, the 128x96 stage of viton128 repainted whole regions (green hair, cyan
    backgrounds) within 4 kimg (docs/results.md)."""
    residual_d_inputs_from: int | None = None
    """D's counterpart: from this stage on, D keeps reading the image (and mask) down-sampled at the
    stage below and adds what the stage's own block finds (StyleGAN2's skip discriminator), instead
    of handing over to the new block when its fade ends. A stage grown onto a trained model then
    keeps the trained D's judgement of the down-sampled pair and learns only to judge detail. None:
    every stage replaces."""
    mbstd_group: int = 4
    """Group size of the minibatch standard deviation layer in D."""
    w_avg_beta: float = 0.995
    """Decay of the tracked average w used by the truncation trick."""
    style_mixing_prob: float = 0.9
    """Probability that a training sample mixes two latents at a random layer (style mixing
    regularisation), decided per sample."""
    truncation_cutoff: int | None = None
    """Number of style layers ψ applies to (from the coarsest); None = all layers."""

    def __post_init__(self) -> None:
        self.resolution, self.base_shape = tuple(self.resolution), tuple(self.base_shape)
        for name in ("residual_heads_from", "residual_d_inputs_from"):
            first = getattr(self, name)
            if first is not None and first < 1:
                raise ConfigError(f"model.{name} is {first}: stage 0 has no stage below to add to")
        if self.residual_detail_only and self.residual_heads_from is None:
            raise ConfigError("model.residual_detail_only needs model.residual_heads_from (the stages it applies to)")
        if self.residual_heads_from is not None and self.inherit_rgb_head:
            raise ConfigError(
                "model.inherit_rgb_head and model.residual_heads_from exclude each other: a residual head "
                "that copied the stage below's projection would add its image twice"
            )
        ratio = self.resolution[0] / self.base_shape[0]
        if ratio != self.resolution[1] / self.base_shape[1] or ratio < 1 or not math.log2(ratio).is_integer():
            raise ConfigError(
                f"model.resolution {self.resolution} must be model.base_shape {self.base_shape} times a power of two"
            )

    @property
    def num_stages(self) -> int:
        return int(math.log2(self.resolution[0] // self.base_shape[0])) + 1

    def stage_shape(self, stage: int) -> tuple[int, int]:
        return self.base_shape[0] << stage, self.base_shape[1] << stage

    def channels(self, stage: int) -> int:
        """Feature maps at a stage: halve as resolution doubles, capped at channel_max (as in StyleGAN)."""
        return max(min(self.channel_base >> stage, self.channel_max), self.channel_min)


@dataclass
class ScheduleConfig:
    """Growth schedule, all in kimg (thousands of real images shown to D)."""

    stable_kimg: float = 20.0
    """kimg each resolution trains at full strength (the first resolution too)."""
    fade_kimg: float = 20.0
    """kimg over which each new resolution fades in (alpha 0 -> 1)."""
    seg_start_kimg: float | None = 40.0
    """kimg at which segmentation channels are added; None trains images only."""
    seg_fade_kimg: float = 10.0
    """kimg over which the discriminator's segmentation input fades in."""
    class_split_kimg: list[float] = field(default_factory=list)
    """kimg of each coarse-to-fine class split; segmentation starts that many levels above the finest."""
    total_kimg: float = 200.0
    """Length of training."""
    stage_start_kimg: list[float] = field(default_factory=list)
    """kimg at which each stage after the first starts to fade in; empty: the regular rhythm
    (stable_kimg, then fade_kimg + stable_kimg per stage). `train --init` with a larger resolution
    than its source's sets it, so that the added stages start where the source stopped."""
    stage_fade_kimg: list[float] = field(default_factory=list)
    """kimg over which the first stages after the first fade in; the stages past the list (all, when
    it is empty) fade over fade_kimg. `train --init` sets it, with stage_start_kimg, to the fades of
    the source's stages, so that a grown run describes its source as it was trained."""

    def stage_starts(self, num_stages: int) -> list[float]:
        """kimg at which stages 1 .. num_stages - 1 start to fade in."""
        if self.stage_start_kimg:
            return list(self.stage_start_kimg)[: num_stages - 1]
        return [self.stable_kimg + (s - 1) * (self.fade_kimg + self.stable_kimg) for s in range(1, num_stages)]

    def fade_of(self, stage: int) -> float:
        """kimg over which stage `stage` (1 or more) fades in."""
        return self.stage_fade_kimg[stage - 1] if stage <= len(self.stage_fade_kimg) else self.fade_kimg

    def __post_init__(self) -> None:
        self.class_split_kimg = [float(k) for k in self.class_split_kimg]
        if self.class_split_kimg and self.seg_start_kimg is None:
            raise ConfigError("schedule.class_split_kimg needs schedule.seg_start_kimg")
        if self.class_split_kimg != sorted(self.class_split_kimg):
            raise ConfigError("schedule.class_split_kimg must increase")
        if self.class_split_kimg and self.class_split_kimg[0] <= self.seg_start_kimg:
            raise ConfigError("class splits must come after schedule.seg_start_kimg")
        self.stage_fade_kimg = [float(k) for k in self.stage_fade_kimg]
        if min(self.stable_kimg, self.fade_kimg, self.seg_fade_kimg, *self.stage_fade_kimg) < 0 or self.total_kimg <= 0:
            raise ConfigError("schedule lengths must be non-negative and total_kimg positive")
        self.stage_start_kimg = [float(k) for k in self.stage_start_kimg]
        if self.stage_start_kimg != sorted(set(self.stage_start_kimg)):
            raise ConfigError("schedule.stage_start_kimg must increase")


@dataclass
class OptimConfig:
    """Losses, optimisers and batch sizes."""

    batch: list[int] = field(default_factory=lambda: [32])
    """Batch per stage (per process); the last value applies to later stages."""
    lr: list[float] = field(default_factory=lambda: [0.0015])
    """Adam learning rate per stage; the last value applies to later stages."""
    d_lr_mul: float = 1.0
    """D's learning rate is lr times this (a two time-scale update rule when != 1)."""
    betas: tuple[float, float] = (0.0, 0.99)
    """Adam betas, as in StyleGAN."""
    eps: float = 1e-8
    """Adam's epsilon, as in StyleGAN. Adam scales every gradient to a step of about lr, so a gradient
    that is pure float rounding (|g| >> eps but ~0 in exact arithmetic) still moves its weight by ~lr;
    a larger epsilon damps such steps (the DDP equivalence test uses one)."""
    loss: str = "logistic"
    """'logistic' (non-saturating, with R1) or 'wgan-gp'."""
    r1_gamma: float = 10.0
    """R1 penalty weight on real inputs (image and mask channels)."""
    r1_interval: int = 16
    """Lazy regularisation: R1 every N discriminator steps, scaled by N."""
    gp_weight: float = 10.0
    """WGAN-GP gradient penalty weight."""
    ema_kimg: float = 10.0
    """Half-life of the generator EMA in kimg."""
    freeze_g_below_stage: int | None = None
    """G's mapping network and its stages below this index keep their weights (they get no gradient):
    for growing a trained model so that only the added stages learn, and the picture the trained
    stages draw cannot drift while the new ones do. None: all of G trains."""
    ema_rampup: float | None = 0.05
    """Cap the EMA half-life at this fraction of kimg so far (early samples follow G closely)."""

    def __post_init__(self) -> None:
        if self.loss not in {"logistic", "wgan-gp"}:
            raise ConfigError(f"optim.loss must be 'logistic' or 'wgan-gp', not '{self.loss}'")
        self.batch, self.lr = [int(b) for b in self.batch], [float(v) for v in self.lr]
        if not self.batch or min(self.batch) < 1 or not self.lr:
            raise ConfigError("optim.batch and optim.lr need at least one positive value")
        if not all(math.isfinite(v) and v > 0 for v in self.lr):
            raise ConfigError(f"optim.lr must be positive and finite, not {self.lr}")
        if not (math.isfinite(self.d_lr_mul) and self.d_lr_mul > 0):
            raise ConfigError(f"optim.d_lr_mul must be positive and finite, not {self.d_lr_mul}")
        self.betas = tuple(self.betas)
        if self.freeze_g_below_stage is not None and self.freeze_g_below_stage < 1:
            raise ConfigError(f"optim.freeze_g_below_stage must be at least 1, not {self.freeze_g_below_stage}")

    def at_stage(self, values: list, stage: int):
        return values[min(stage, len(values) - 1)]


@dataclass
class AugmentConfig:
    """Adaptive discriminator augmentation (ADA)."""

    enabled: bool = True
    """Augment real and fake inputs of D with probability p."""
    target: float = 0.6
    """Target of the overfitting signal r_t = E[sign(D(real))]."""
    adjust_kimg: float = 100.0
    """kimg for p to go from 0 to 1 at the fastest."""
    interval: int = 4
    """Adjust p every N discriminator steps."""
    fixed_p: float | None = None
    """Use this p throughout instead of adapting it."""
    xflip: float = 1.0
    translate: float = 1.0
    scale: float = 1.0
    rotate: float = 1.0
    aniso: float = 1.0
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0


@dataclass
class MaskInputConfig:
    """How masks are shown to D (real masks are area fractions, fake ones softmax probabilities)."""

    mode: str = "noise"
    """'noise': the same Gaussian noise on real and fake masks; 'soft': plain probabilities;
    'straight_through': hard one-hot fakes with softmax gradients."""
    noise_std: float = 0.1
    """Standard deviation of the mask noise in 'noise' mode."""
    mismatch_share: float = 0.0
    """Share of each batch's real pairs shown to D a second time, as fakes, with a corrupted mask
    (a matching-aware D: training/mismatch.py). 0 turns it off; logistic loss only."""
    mismatch: str = "swap"
    """How those masks are corrupted: 'swap' two of the mask's classes, or 'shuffle' (another real
    image's mask)."""
    mismatch_weight: float = 1.0
    """Weight of the mismatched pairs' loss in D's, beside the fakes' (1); GAN-CLS used 0.5 for both."""

    def __post_init__(self) -> None:
        if self.mode not in {"noise", "soft", "straight_through"}:
            raise ConfigError(f"masks.mode must be noise, soft or straight_through, not '{self.mode}'")
        if not 0.0 <= self.mismatch_share <= 1.0:
            raise ConfigError(f"masks.mismatch_share must be in [0, 1], not {self.mismatch_share}")
        if self.mismatch not in {"swap", "shuffle"}:
            raise ConfigError(f"masks.mismatch must be swap or shuffle, not '{self.mismatch}'")
        if self.mismatch_weight < 0:
            raise ConfigError(f"masks.mismatch_weight must be at least 0, not {self.mismatch_weight}")


@dataclass
class DataConfig:
    """How training reads the prepared data."""

    xflip: bool = True
    """Flip half of the real samples horizontally each epoch (left/right classes swapped with them)."""
    max_labeled: float | None = None
    """Label budget: keep this many labelled train samples (a whole number >= 1) or this fraction of
    them (0 < f < 1), chosen once from the run's seed and written to labels.json in the run folder;
    the others are used as unlabelled photos. None: every label."""
    image_share: float | None = None
    """After segmentation starts, this share of each step's real and fake samples is judged by D's
    image head (reals: any train photo, labelled or not) and the rest by its pair head (reals:
    labelled pairs). 0: pair-only, every sample a pair. None: 0.5 when the train split has
    unlabelled photos (after max_labeled), else 0."""
    repeat_threshold: float = 0.0
    """Rare-class oversampling (LVIS repeat-factor sampling): each labelled train sample is drawn
    max(1, sqrt(t / f_c)) times as often, f_c the share of labelled samples showing its rarest class
    c. Teaches rare classes; it may also shift the class frequency the model learns (measured in
    docs/results.md). 0: every sample once per epoch."""

    def __post_init__(self) -> None:
        if self.max_labeled is not None and not (
            0 < self.max_labeled < 1 or (self.max_labeled >= 1 and float(self.max_labeled).is_integer())
        ):
            raise ConfigError(f"data.max_labeled must be a count >= 1 or a fraction in (0, 1), not {self.max_labeled}")
        if self.image_share is not None and not 0 <= self.image_share < 1:
            raise ConfigError(f"data.image_share must be in [0, 1), not {self.image_share}")
        if not 0 <= self.repeat_threshold <= 1:
            raise ConfigError(f"data.repeat_threshold must be in [0, 1], not {self.repeat_threshold}")


@dataclass
class TrainConfig:
    """Everything a training run needs; written to config.json in the run folder."""

    preset: str = "custom"
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    masks: MaskInputConfig = field(default_factory=MaskInputConfig)
    data: DataConfig = field(default_factory=DataConfig)
    classes: str | None = None
    """Class map for raw data (default: the dataset's); prepared data carries its own."""
    seed: int = 0
    """Seed of everything random in the run."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N."""
    dtype: str = "fp32"
    """fp32, bf16 (autocast), or auto: measure both on the device at start and keep the faster
    (training/precision.py); the choice is written into the run's config."""
    channels_last: bool = False
    """Use channels_last memory format."""
    tf32: bool = True
    """TF32 matrix products and convolutions on Ampere and newer GPUs (ignored elsewhere)."""
    threads: int | None = None
    """CPU threads for torch (None: torch's default)."""
    compile: bool = False
    """torch.compile G, and D where the generator step calls it, once per growth phase (D's own step
    stays eager: lazy R1 takes a double backward); the graph count goes to the log."""
    snapshot_kimg: float = 10.0
    """Write a sample grid every this many kimg."""
    checkpoint_kimg: float = 20.0
    """Write a checkpoint every this many kimg."""
    keep_checkpoints: int = 3
    """How many recent checkpoints to keep."""
    log_every: int = 20
    """Log scalars every N steps."""
    grid_seeds: int = 16
    """Number of fixed seeds in sample grids."""
    eval_segmenter: str | None = None
    """A trained reference segmenter (`styleseg segmenter train --out DIR`): with it, every snapshot at the
    final resolution and class level logs mask agreement and in-domain FD to TensorBoard."""
    eval_samples: int = 256
    """Generated samples for those in-training metrics."""

    def __post_init__(self) -> None:
        if self.dtype not in {"fp32", "bf16", "auto"}:
            raise ConfigError(f"dtype must be fp32, bf16 or auto, not '{self.dtype}'")
        if self.keep_checkpoints < 1:
            raise ConfigError("keep_checkpoints must be at least 1")
        starts = self.schedule.stage_start_kimg
        if starts and len(starts) != self.model.num_stages - 1:
            raise ConfigError(
                f"schedule.stage_start_kimg has {len(starts)} entries; model.resolution {self.model.resolution} "
                f"has {self.model.num_stages - 1} stages after the first"
            )
        fades = self.schedule.stage_fade_kimg
        if len(fades) > self.model.num_stages - 1:
            raise ConfigError(
                f"schedule.stage_fade_kimg has {len(fades)} entries; model.resolution {self.model.resolution} "
                f"has {self.model.num_stages - 1} stages after the first"
            )
        if self.model.channel_min < 1:
            raise ConfigError(f"model.channel_min must be at least 1, not {self.model.channel_min}")
        if self.masks.mismatch_share > 0 and self.optim.loss != "logistic":
            raise ConfigError("masks.mismatch_share needs optim.loss 'logistic' (mismatched pairs are logistic fakes)")


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            value = [value]
        (item,) = typing.get_args(tp)[:1] or (Any,)
        items = [_coerce(item, v, where) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp in (int, float, str):
        try:
            return tp(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from exc
    return value


def from_dict(cls, data: dict, where: str = "config"):
    """Build a dataclass from a dict, refusing unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known: {sorted(names)}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("styleseg.presets").iterdir() if p.name.endswith(".yaml"))


def load_preset(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} and path.is_file():
        text = path.read_text()
    elif name_or_path in preset_names():
        text = resources.files("styleseg.presets").joinpath(f"{name_or_path}.yaml").read_text()
    else:
        raise ConfigError(f"unknown preset '{name_or_path}': choose from {preset_names()} or give a YAML file")
    data = yaml.safe_load(text) or {}
    data.setdefault("preset", path.stem if path.suffix else name_or_path)
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b=value` overrides (values parsed as YAML) to a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{part}' is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def build_config(preset: str, overrides: list[str] | None = None) -> TrainConfig:
    return from_dict(TrainConfig, apply_overrides(load_preset(preset), overrides or []))


def config_from_json(data: dict) -> TrainConfig:
    return from_dict(TrainConfig, data)


def base_shape_for(resolution: tuple[int, int]) -> tuple[int, int]:
    """The smallest H x W the generator can start from and double up to `resolution`: halve both sides
    while both are even and the result keeps at least 2 x 3 pixels (64x48 -> 4x3, 96x64 -> 3x2,
    128x128 -> 4x4)."""
    h, w = resolution
    while h % 2 == 0 and w % 2 == 0 and min(h, w) // 2 >= 2 and max(h, w) // 2 >= 3:
        h, w = h // 2, w // 2
    return h, w


def data_recipe(resolution: tuple[int, int], num_levels: int, train_photos: int, labeled: int) -> dict:
    """A preset (as `load_preset` returns one) for a dataset nobody wrote one for, from what the data
    says: the resolution and aspect it was prepared at, how many class levels its class map has
    (class splits only where there are coarse levels, else one segmentation event), and how many
    photos it has. A growth phase lasts 8 kimg x sqrt(photos / 12,800), between 0.25 and 8 kimg
    (12,800 VITON photos: 8 kimg as in the viton64 preset; 500 photos: 1.6 kimg, three epochs),
    at viton64's widths and learning rates; segmentation starts at 2.5 phases, each class split
    1.5 phases later; training ends 12 phases after the last stage has faded in."""
    base = base_shape_for(resolution)
    stages = int(math.log2(resolution[0] // base[0])) + 1
    phase = min(8.0, max(0.25, round(8 * math.sqrt(train_photos / 12800) * 20) / 20))
    seg_start = round(2.5 * phase, 3)
    splits = [round(seg_start + 1.5 * phase * (j + 1), 3) for j in range(num_levels - 1)] if labeled else []
    growth_end = phase * (2 * stages - 2)
    lr = [0.005] * max(stages - 2, 0) + [0.004, 0.003][-min(stages, 2) :]
    return {
        "preset": "auto",
        "model": {
            "resolution": list(resolution),
            "base_shape": list(base),
            "z_dim": 128,
            "w_dim": 128,
            "mapping_layers": 4,
            "mapping_lr_mul": 0.1,
            "channel_base": 32 << (stages - 1),
            "channel_max": 128,
            "channel_min": 32,
        },
        "schedule": {
            "stable_kimg": phase,
            "fade_kimg": phase,
            "seg_start_kimg": seg_start if labeled else None,
            "seg_fade_kimg": round(phase / 2, 3),
            "class_split_kimg": splits,
            "total_kimg": round(max(growth_end, splits[-1] if splits else 0.0) + 12 * phase, 3),
        },
        "optim": {"batch": [32], "lr": lr, "r1_gamma": 0.2, "ema_kimg": min(5.0, phase)},
        "augment": {"adjust_kimg": min(100.0, max(10.0, round(train_photos / 128)))},
        # the matching-aware D is a late fine-tune (viton64-lip12 took it from 714 kimg on); from the
        # start, on 451 VITON photos, it left G drawing one person for every seed by 20 kimg
        "masks": {"mismatch_share": 0.0},
        "data": {"repeat_threshold": 0.3 if labeled else 0.0},
        "dtype": "auto",
        "channels_last": True,
        "snapshot_kimg": phase,
        "checkpoint_kimg": round(2 * phase, 3),
    }
