"""Growth events as the training loop meets them: which happened between two growth states (for the
log), the function-preserving operations they need (models/growth.py), and the schedule in words."""

from __future__ import annotations

from collections.abc import Iterator

from styleseg.config import TrainConfig
from styleseg.models.growth import (
    GrowthState,
    inherit_rgb_projection,
    parent_index,
    schedule_events,
    split_discriminator_classes,
    split_generator_classes,
)
from styleseg.training.networks import TrainingNetworks


def growth_messages(cfg: TrainConfig, levels, structure: tuple | None, st: GrowthState) -> Iterator[tuple[str, str]]:
    """(kind, detail) of each event between the structure a run had and the state it reached."""
    if structure is None:
        h, w = cfg.model.stage_shape(st.stage)
        kind = "images only" if st.seg_level is None else f"{levels[st.seg_level].num_classes} classes"
        yield "start", f"resolution {h}x{w}, {kind}"
        return
    old_stage, old_level = structure
    for s in range(old_stage + 1, st.stage + 1):
        h, w = cfg.model.stage_shape(s)
        yield "resolution", f"{h}x{w} fades in"
    if old_level is None and st.seg_level is not None:
        lvl = levels[st.seg_level]
        yield "segmentation", f"{lvl.num_classes} mask channels added ({', '.join(lvl.names)})"
    elif old_level is not None and st.seg_level is not None and st.seg_level > old_level:
        lvl = levels[st.seg_level]
        yield "class-split", f"{levels[old_level].num_classes} -> {lvl.num_classes} classes ({', '.join(lvl.names)})"


def apply_growth(nets: TrainingNetworks, levels, structure: tuple | None, st: GrowthState) -> None:
    """The function-preserving operation of each event between two structures: the pair head starts
    as a copy of the image head when segmentation starts, and each class split initialises the
    children from their parent (G's logits and D's input weights). A new resolution stage fades in
    from alpha 0, where G and D compute what they computed before; with model.inherit_rgb_head its
    RGB projection starts as the previous stage's."""
    if structure and nets.G.cfg.inherit_rgb_head:
        for stage in range(structure[0] + 1, st.stage + 1):
            for G in (nets.G, nets.G_ema):
                inherit_rgb_projection(G, stage)
    old_level = structure[1] if structure else None
    if old_level is None and st.seg_level is not None and nets.D.final.has_pair_head:
        nets.D.final.start_pair_head()
    if old_level is not None and st.seg_level is not None:
        for level in range(old_level, st.seg_level):
            parents = parent_index(levels[level], levels[level + 1])
            for G in (nets.G, nets.G_ema):
                split_generator_classes(G, level, level + 1, parents)
            split_discriminator_classes(nets.D, level, level + 1, parents)


def describe_schedule(cfg: TrainConfig, levels) -> str:
    """The resolution stages, every growth event and the per-stage batch and learning rate."""
    lines = [
        f"resolution {cfg.model.resolution[0]}x{cfg.model.resolution[1]} in {cfg.model.num_stages} stages: "
        + ", ".join(f"{h}x{w}" for h, w in (cfg.model.stage_shape(s) for s in range(cfg.model.num_stages)))
    ]
    lines.append(f"total {cfg.schedule.total_kimg:g} kimg; growth events:")
    for e in schedule_events(cfg.schedule, cfg.model, levels):
        lines.append(f"  kimg {e.kimg:8.1f}  {e.kind:<13} {e.detail}")
    stages = [
        f"{cfg.model.stage_shape(s)[0]}x{cfg.model.stage_shape(s)[1]}: batch "
        f"{cfg.optim.at_stage(cfg.optim.batch, s)}, lr {cfg.optim.at_stage(cfg.optim.lr, s)}"
        for s in range(cfg.model.num_stages)
    ]
    lines.append("per stage: " + "; ".join(stages))
    return "\n".join(lines)
