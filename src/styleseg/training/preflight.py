"""What a training run checks before it creates its folder: that the config fits the prepared data
(resolution, class levels, labels). Each refusal is one line naming the data and the setting to
change, so a refused command leaves nothing behind."""

from __future__ import annotations

import math

from styleseg.config import TrainConfig, base_shape_for
from styleseg.data.store import PreparedDataset
from styleseg.errors import StylesegError


def data_factor(data: PreparedDataset, cfg: TrainConfig) -> int:
    """How many times the prepared resolution exceeds the model's (a power of two, or an error)."""
    (dh, dw), (mh, mw) = data.resolution, cfg.model.resolution
    factor = dh / mh
    if factor != dw / mw or factor < 1 or not math.log2(factor).is_integer():
        bh, bw = base_shape_for((dh, dw))
        raise StylesegError(
            f"{data.root}: prepared at {dh}x{dw}, which is not the model resolution {mh}x{mw} times a power of two; "
            f"--set model.resolution=[{dh},{dw}] --set model.base_shape=[{bh},{bw}] fits it (or train without "
            "--preset: the recipe then follows the data), or prepare the data at the model resolution"
        )
    return int(factor)


def check_config_fits(cfg: TrainConfig, data: PreparedDataset) -> None:
    """Refuse a config the data cannot train, before anything is written."""
    data_factor(data, cfg)
    coarse = len(data.class_map.levels()) - 1
    splits = cfg.schedule.class_split_kimg
    if len(splits) > coarse:
        keep = "[" + ",".join(f"{k:g}" for k in splits[:coarse]) + "]"
        raise StylesegError(
            f"{data.root}: the class map '{data.class_map.name}' has {coarse} coarse level{'s' * (coarse != 1)}, "
            f"but schedule.class_split_kimg splits classes {len(splits)} times: --set schedule.class_split_kimg={keep} "
            "(or train without --preset: the recipe then follows the data)"
        )
    labeled = len(data.indices("train", labeled_only=True))
    if cfg.schedule.seg_start_kimg is not None and labeled == 0:
        raise StylesegError(
            f"{data.root}: the train split has no labelled samples, but the schedule adds segmentation: "
            "--set schedule.seg_start_kimg=null --set schedule.class_split_kimg=[] trains on images alone"
        )
