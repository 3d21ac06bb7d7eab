"""What runs between training steps to show progress: sample grids from fixed seeds, and cheap
in-training metrics against a reference segmenter (mask agreement, Fréchet distance in its features)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from styleseg.config import TrainConfig
from styleseg.data.balance import class_presence
from styleseg.data.store import PreparedDataset
from styleseg.models.generator import Generator
from styleseg.models.growth import GrowthState
from styleseg.sampling import synthesize, to_class_ids, to_uint8_images
from styleseg.viz import grid, save_png, triplet, upscale, with_legend

EVAL_SEEDS = 10_000
"""First seed of the in-training metrics' samples (the grids use seeds 0 .. grid_seeds - 1)."""


class Snapshots:
    def __init__(self, cfg: TrainConfig, data: PreparedDataset, levels, run: Path, device: torch.device):
        self.cfg, self.data, self.levels, self.run, self.device = cfg, data, levels, run, device
        # the reference segmenter, its features of real images and the classes it scores: loaded at
        # the first snapshot that needs them
        self.segmenter = None
        self.real_features: np.ndarray | None = None
        self.scored_classes: np.ndarray | None = None

    @torch.no_grad()
    def grid(self, G_ema: Generator, st: GrowthState, images_seen: int) -> Path:
        """Sample grid from fixed seeds: image | coloured mask | overlay (images alone before segmentation)."""
        seeds = list(range(self.cfg.grid_seeds))
        out = synthesize(G_ema, seeds, st.stage, st.alpha, st.seg_level, device=self.device)
        images = to_uint8_images(out.img)
        zoom = self.cfg.model.resolution[0] // images.shape[1]
        if out.seg is not None:
            level = self.levels[st.seg_level]
            masks = to_class_ids(out.seg)
            tiles = [upscale(triplet(images[i], masks[i], level.palette), zoom) for i in range(len(seeds))]
            picture = with_legend(upscale(grid(tiles, cols=4), 2), level.names, level.palette)
        else:
            tiles = [upscale(images[i], zoom) for i in range(len(seeds))]
            picture = upscale(grid(tiles, cols=8), 2)
        path = self.run / "samples" / f"grid-{images_seen // 1000:06d}kimg.png"
        path.parent.mkdir(exist_ok=True)
        save_png(picture, path)
        return path

    def measurable(self, st: GrowthState, data_factor: int) -> bool:
        """Metrics need the final resolution and class level, where the segmenter's classes and
        resolution match, and a segmenter to measure with."""
        final = st.stage == self.cfg.model.num_stages - 1 and st.seg_level == len(self.levels) - 1
        return bool(self.cfg.eval_segmenter) and final and data_factor == 1

    def _load_reference(self, num_classes: int) -> None:
        from styleseg.metrics.segmenter import embed, load_segmenter

        self.segmenter, _ = load_segmenter(Path(self.cfg.eval_segmenter), self.device)
        real, _ = self.data.load_batch(self.data.indices("train")[: max(self.cfg.eval_samples, 16)])
        self.real_features = embed(self.segmenter, real, self.device)
        # as `evaluate` does: the mean is over the classes real masks show, one never drawn counting 0
        labeled = self.data.indices("train", labeled_only=True)
        shown = class_presence(self.data, labeled, self.data.class_map.num_classes).any(0)
        self.scored_classes = np.zeros(num_classes, bool)
        self.scored_classes[np.asarray(self.levels[-1].fine_to_group)[shown]] = True

    @torch.no_grad()
    def metrics(self, G_ema: Generator, st: GrowthState) -> dict:
        """Agreement of generated masks with the reference segmenter's predictions, and Fréchet
        distance in its features, on `eval_samples` samples."""
        from styleseg.metrics.distribution import frechet_distance
        from styleseg.metrics.segmentation import confusion_matrix, miou_over
        from styleseg.metrics.segmenter import embed, predict

        num_classes = self.levels[-1].num_classes
        if self.segmenter is None:
            self._load_reference(num_classes)
        seeds = list(range(EVAL_SEEDS, EVAL_SEEDS + self.cfg.eval_samples))
        out = synthesize(G_ema, seeds, st.stage, st.alpha, st.seg_level, device=self.device)
        images = torch.from_numpy(to_uint8_images(out.img)).permute(0, 3, 1, 2)
        cm = confusion_matrix(to_class_ids(out.seg), predict(self.segmenter, images, self.device), num_classes)
        agreement = float(miou_over(cm, self.scored_classes))
        fd = frechet_distance(self.real_features, embed(self.segmenter, images, self.device))
        return {"eval_agreement_miou": round(agreement, 5), "eval_fd_segmenter": round(fd, 5)}
