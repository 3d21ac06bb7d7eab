"""Growth: where in the schedule training is (a pure function of kimg), and the
function-preserving operations that happen at growth events.

Three kinds of growth:
- resolution: a new stage fades in (alpha 0 -> 1); at alpha 0 G's output is the previous stage's
  output up-sampled and D sees the previous stage's input, so nothing changes at the event;
- segmentation channels: G's seg head starts emitting logits and D's seg input fades in
  (seg_alpha 0 -> 1), so D's output is unchanged at the event;
- class split: the logits of each child class start as the parent's minus log(#children), so the
  merged child probabilities equal the parent probability; D's input weights for each child start
  as the parent's, so D sees the merged mask exactly as before.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from styleseg.config import ConfigError, ModelConfig, ScheduleConfig
from styleseg.data.classes import Level


@dataclass(frozen=True)
class GrowthState:
    stage: int
    """Active resolution stage (0 = base shape)."""
    alpha: float
    """Fade-in of the active stage (1 = fully grown)."""
    seg_level: int | None
    """Active class level (index into the class map's levels, coarsest first), or None before segmentation."""
    seg_alpha: float
    """Fade-in of D's segmentation input."""

    @property
    def structure(self) -> tuple[int, int | None]:
        """What changes only at growth events."""
        return self.stage, self.seg_level


@dataclass(frozen=True)
class GrowthEvent:
    kimg: float
    kind: str  # 'resolution' | 'segmentation' | 'class-split'
    detail: str


# What a grown model may change: its resolution, the widths of its added stages and how they start.
_GROWABLE = {
    "resolution",
    "channel_base",
    "channel_max",
    "channel_min",
    "inherit_rgb_head",
    "residual_heads_from",
    "residual_d_inputs_from",
    "residual_detail_only",
}


def added_stages(source: ModelConfig, target: ModelConfig) -> int:
    """How many resolution stages `target` adds to `source` (0: the same network). A grown network
    keeps every stage of the source as it is, so the source's weights load into it unchanged."""
    different = [
        f.name
        for f in dataclasses.fields(ModelConfig)
        if f.name not in _GROWABLE and getattr(source, f.name) != getattr(target, f.name)
    ]
    if different:
        raise ConfigError(
            "model config differs from the source's in " + ", ".join(f"model.{name}" for name in different)
        )
    added = target.num_stages - source.num_stages
    for name in ("residual_heads_from", "residual_d_inputs_from"):
        first_residual = getattr(target, name)
        changed = first_residual != getattr(source, name)
        if changed and first_residual is not None and first_residual < source.num_stages:
            raise ConfigError(
                f"model.{name} {first_residual} would change how the source's trained stage "
                f"{first_residual} works; a grown model may make only its added stages "
                f"(from {source.num_stages}) residual"
            )
    trained_residual = source.residual_heads_from is not None and source.residual_heads_from < source.num_stages
    if target.residual_detail_only != source.residual_detail_only and trained_residual:
        raise ConfigError(
            f"model.residual_detail_only {target.residual_detail_only} would change what the source's trained "
            f"residual stages (from {source.residual_heads_from}) add"
        )
    if added < 0:
        raise ConfigError(
            f"model.resolution {target.resolution} is smaller than the source's {source.resolution}: "
            "a model can grow, not shrink"
        )
    widths = [(source.channels(s), target.channels(s)) for s in range(source.num_stages)]
    if any(a != b for a, b in widths):
        raise ConfigError(
            f"the source's stages have {[a for a, _ in widths]} channels, this config gives them "
            f"{[b for _, b in widths]} (model.channel_base/channel_max/channel_min)"
        )
    return added


def grown_schedule(
    source: ScheduleConfig, target: ScheduleConfig, source_stages: int, target_stages: int, start_kimg: float
) -> tuple[list[float], list[float]]:
    """(stage_start_kimg, stage_fade_kimg) of a model grown from a source that stopped at
    `start_kimg`: the source's stages start and fade as they did, the added ones from `start_kimg`
    on in the target's rhythm (fade_kimg + stable_kimg apart; they fade over its fade_kimg)."""
    starts = source.stage_starts(source_stages)
    step = target.fade_kimg + target.stable_kimg
    added = [start_kimg + i * step for i in range(target_stages - source_stages)]
    return starts + added, [source.fade_of(s) for s in range(1, source_stages)]


def first_seg_level(schedule: ScheduleConfig, num_levels: int) -> int:
    level = num_levels - 1 - len(schedule.class_split_kimg)
    if level < 0:
        raise ConfigError(
            f"schedule.class_split_kimg has {len(schedule.class_split_kimg)} splits but the class map has only "
            f"{num_levels - 1} coarse levels"
        )
    return level


def growth_at(kimg: float, schedule: ScheduleConfig, num_stages: int, num_levels: int) -> GrowthState:
    """The growth state after `kimg` thousand real images."""
    stage, alpha = 0, 1.0
    for s, start in enumerate(schedule.stage_starts(num_stages), start=1):
        if kimg < start:
            break
        stage = s
        fade = schedule.fade_of(s)
        alpha = min(1.0, (kimg - start) / fade) if fade > 0 else 1.0
    seg_level, seg_alpha = None, 0.0
    if schedule.seg_start_kimg is not None and kimg >= schedule.seg_start_kimg:
        seg_level = first_seg_level(schedule, num_levels) + sum(kimg >= k for k in schedule.class_split_kimg)
        into = kimg - schedule.seg_start_kimg
        seg_alpha = min(1.0, into / schedule.seg_fade_kimg) if schedule.seg_fade_kimg > 0 else 1.0
    return GrowthState(stage, alpha, seg_level, seg_alpha)


def schedule_events(schedule: ScheduleConfig, model: ModelConfig, levels: list[Level]) -> list[GrowthEvent]:
    """Every growth event of a run, in order, for --dry-run and the log."""
    events = []
    for s, k in enumerate(schedule.stage_starts(model.num_stages), start=1):
        if k >= schedule.total_kimg:
            break
        h, w = model.stage_shape(s)
        events.append(GrowthEvent(k, "resolution", f"{h}x{w} fades in over {schedule.fade_of(s):g} kimg"))
    if schedule.seg_start_kimg is not None and schedule.seg_start_kimg < schedule.total_kimg:
        level = first_seg_level(schedule, len(levels))
        names = ", ".join(levels[level].names)
        events.append(
            GrowthEvent(
                schedule.seg_start_kimg,
                "segmentation",
                f"{levels[level].num_classes} mask channels ({names}), D input fades in over "
                f"{schedule.seg_fade_kimg:g} kimg",
            )
        )
        for i, k in enumerate(schedule.class_split_kimg):
            if k < schedule.total_kimg:
                new = levels[level + i + 1]
                events.append(
                    GrowthEvent(
                        k,
                        "class-split",
                        f"{levels[level + i].num_classes} -> {new.num_classes} classes ({', '.join(new.names)})",
                    )
                )
    return sorted(events, key=lambda e: e.kimg)


def parent_index(coarse: Level, fine: Level) -> np.ndarray:
    """For each group of `fine`, the group of `coarse` that contains it."""
    parents = np.zeros(fine.num_classes, dtype=np.int64)
    for f_cls, group in enumerate(fine.fine_to_group):
        parents[group] = coarse.fine_to_group[f_cls]
    return parents


@torch.no_grad()
def split_generator_classes(G, level_from: int, level_to: int, parents: np.ndarray) -> None:
    """Child logits = parent logit - log(#children): merged child probabilities equal the parent's.
    A residual head's logits add to those of the stages below, which already carry the offset."""
    idx = torch.as_tensor(parents, device=G.w_avg.device)
    counts = torch.bincount(idx, minlength=int(idx.max()) + 1).float()
    first_residual = G.cfg.residual_heads_from
    for s, head in enumerate(G.heads):
        old, new = head.seg[level_from], head.seg[level_to]
        residual = first_residual is not None and s >= first_residual
        bias = old.bias[idx] - (0.0 if residual else torch.log(counts[idx]).to(old.bias.dtype))
        new.set_effective(old.effective_weight[idx], bias)


@torch.no_grad()
def inherit_rgb_projection(G, stage: int) -> None:
    """Stage `stage`'s RGB projection starts as stage - 1's: its weights where the two stages have the
    same width (else its own), and the bias (the image's mean colour) always."""
    old, new = G.heads[stage - 1].rgb, G.heads[stage].rgb
    if old.weight.shape == new.weight.shape:
        new.set_effective(old.effective_weight, old.bias)
    else:
        new.bias.copy_(old.bias)


@torch.no_grad()
def split_discriminator_classes(D, level_from: int, level_to: int, parents: np.ndarray) -> None:
    """Each child's input weights = its parent's, so D(child mask) = D(merged parent mask)."""
    idx = torch.as_tensor(parents, device=next(D.parameters()).device)
    for layer in D.inputs:
        old, new = layer.seg[level_from], layer.seg[level_to]
        new.set_effective(old.effective_weight[:, idx], old.bias)


def merge_probabilities(probs: torch.Tensor, parents: np.ndarray, num_parents: int) -> torch.Tensor:
    """(B, K_fine, H, W) -> (B, K_coarse, H, W) by summing children into their parents."""
    idx = torch.as_tensor(parents, device=probs.device)
    out = probs.new_zeros(probs.shape[0], num_parents, *probs.shape[2:])
    return out.index_add_(1, idx, probs)
