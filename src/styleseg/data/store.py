"""The prepared store: its format (written here, by `write_store_index` for every writer and
`write_store` for small in-memory stores), read by rows with positioned reads (bounded memory, see
rows.py), and a resumable sampler over it.

A store is a folder: images.npy (N, H, W, 3) uint8, masks.npy (N, H, W) uint8, images-xF.npy
(area-averaged copies at 1/F of the resolution, F in dataset.json's image_mips), labeled.npy (N,)
bool, split.npy (N,) uint8 codes of SPLITS, ids.json (the source's sample ids) and dataset.json
(format version, resolution, classes, counts, source, ...)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from styleseg.data.classes import ClassMap
from styleseg.data.rows import RowFile
from styleseg.data.samples import SPLITS
from styleseg.errors import DataError
from styleseg.jsonio import write_json

FORMAT_VERSION = 1
SPLIT_CODES = {name: i for i, name in enumerate(SPLITS)}


def write_store_index(folder: Path, labeled: np.ndarray, split: np.ndarray, ids: list[str], meta: dict) -> dict:
    """Everything of a store but its image and mask rows: flags, splits, ids and dataset.json (with
    the format version and sample count filled in). Returns dataset.json's content."""
    np.save(folder / "labeled.npy", np.asarray(labeled, bool))
    np.save(folder / "split.npy", np.asarray(split, np.uint8))
    write_json(folder / "ids.json", [str(i) for i in ids])
    meta = {"format_version": FORMAT_VERSION, "num_samples": len(labeled), **meta}
    write_json(folder / "dataset.json", meta)
    return meta


def write_store(
    folder: Path,
    images: np.ndarray,
    masks: np.ndarray,
    class_map: ClassMap,
    split: np.ndarray | None = None,
    labeled: np.ndarray | None = None,
    **meta,
) -> PreparedDataset:
    """A small store from arrays in memory (benchmarks, tests): images (N, H, W, 3) and masks (N, H, W)
    uint8; every sample labelled and in train unless told otherwise."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = len(images)
    np.save(folder / "images.npy", np.asarray(images, np.uint8))
    np.save(folder / "masks.npy", np.asarray(masks, np.uint8))
    meta = {"resolution": list(images.shape[1:3]), "classes": class_map.to_json(), **meta}
    write_store_index(
        folder,
        np.ones(n, bool) if labeled is None else labeled,
        np.zeros(n, np.uint8) if split is None else split,
        [str(i) for i in range(n)],
        meta,
    )
    return PreparedDataset(folder)


class PreparedDataset:
    """A prepared dataset folder (see `styleseg prepare`)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        meta_path = self.root / "dataset.json"
        if not meta_path.is_file():
            raise DataError(f"{meta_path}: missing; {self.root} is not a prepared dataset (run `styleseg prepare`)")
        try:
            self.meta = json.loads(meta_path.read_text())
        except ValueError as exc:
            raise DataError(f"{meta_path}: not valid JSON ({exc})") from exc
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{meta_path}: format version {self.meta.get('format_version')}, expected {FORMAT_VERSION}")
        try:
            # Read by rows with positioned reads, not memory maps: memory stays at the batch (rows.py).
            self.images = RowFile(self.root / "images.npy")  # (N, H, W, 3) uint8
            self.masks = RowFile(self.root / "masks.npy")  # (N, H, W) uint8
            self.labeled = np.load(self.root / "labeled.npy")
            self.split = np.load(self.root / "split.npy")
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.root}: prepared store is incomplete or corrupt ({exc})") from exc
        self.class_map = ClassMap.from_json(self.meta["classes"])
        self.mirror_lut = self.class_map.mirror_lut().astype(np.uint8)  # class id -> id after a flip
        self.resolution = tuple(self.meta["resolution"])
        # Downsampled image copies (factor -> row file); stores from before they existed have none.
        self.image_mips = {1: self.images}
        for f in self.meta.get("image_mips", []):
            try:
                self.image_mips[int(f)] = RowFile(self.root / f"images-x{f}.npy")
            except DataError as exc:
                raise DataError(
                    f"{self.root / f'images-x{f}.npy'}: listed in dataset.json but unreadable ({exc})"
                ) from exc
        if self.images.shape[1:3] != self.resolution or len(self.images) != len(self.labeled):
            raise DataError(f"{self.root}: arrays do not match dataset.json")

    def __len__(self) -> int:
        return len(self.labeled)

    @property
    def ids(self) -> list[str]:
        return json.loads((self.root / "ids.json").read_text())

    def indices(self, split: str = "train", labeled_only: bool = False) -> np.ndarray:
        keep = self.split == SPLIT_CODES[split]
        if labeled_only:
            keep &= self.labeled
        return np.flatnonzero(keep)

    def mip_factor(self, factor: int) -> int:
        """The largest stored image downsampling factor that divides `factor`."""
        return max(f for f in self.image_mips if factor % f == 0)

    def load_batch(
        self, idx: np.ndarray, flip: np.ndarray | None = None, image_factor: int = 1, masks: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images (B, 3, H/f, W/f) uint8, f = image_factor (a stored factor, see `mip_factor`), and
        full-resolution masks (B, H, W) uint8 (or None) for sample indices, optionally flipped: a
        flipped mask also swaps left and right classes."""
        images = self.image_mips[image_factor].read(idx)
        mask_arr = self.masks.read(idx) if masks else None
        if flip is not None and flip.any():
            images[flip] = images[flip, :, ::-1]
            if mask_arr is not None:
                mask_arr[flip] = self.mirror_lut[mask_arr[flip, :, ::-1]]
        return torch.from_numpy(images).permute(0, 3, 1, 2), (torch.from_numpy(mask_arr) if masks else None)


@dataclass
class SamplerState:
    epoch: int = 0
    position: int = 0


class EpochSampler:
    """Shuffles `indices` each epoch from (seed, epoch) alone, so its state is two integers and a
    resumed run sees exactly the data order it would have seen. Each global batch is cut into
    per-rank slices, so N ranks with batch b see the same samples as one rank with batch N*b.
    `repeats` (one factor >= 1 per index, e.g. LVIS repeat factors) makes each epoch hold index i
    floor(r_i) times plus once more with probability frac(r_i), as LVIS's repeat-factor sampler does."""

    def __init__(
        self,
        indices: np.ndarray,
        seed: int,
        flip: bool = True,
        rank: int = 0,
        world_size: int = 1,
        repeats: np.ndarray | None = None,
    ):
        if len(indices) == 0:
            raise DataError("no samples to train on in this split")
        if repeats is not None and (len(repeats) != len(indices) or np.min(repeats) < 1):
            raise DataError(f"repeat factors must be >= 1, one per sample ({len(repeats)} for {len(indices)})")
        self.indices, self.seed, self.flip = np.asarray(indices), seed, flip
        self.repeats = None if repeats is None else np.asarray(repeats, np.float64)
        self.rank, self.world_size = rank, world_size
        self.state = SamplerState()
        self._epoch_cache: tuple[int, np.ndarray, np.ndarray] | None = None

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            epoch_indices = self.indices
            if self.repeats is not None:
                whole = np.floor(self.repeats)
                counts = (whole + (rng.random(len(self.repeats)) < self.repeats - whole)).astype(np.int64)
                epoch_indices = np.repeat(self.indices, counts)
            perm = epoch_indices[rng.permutation(len(epoch_indices))]
            flips = rng.random(len(perm)) < 0.5 if self.flip else np.zeros(len(perm), bool)
            self._epoch_cache = (epoch, perm, flips)
        return self._epoch_cache[1], self._epoch_cache[2]

    def next_global(self, global_batch: int) -> tuple[np.ndarray, np.ndarray]:
        """The next `global_batch` (index, flip) pairs, continuing across epoch ends."""
        idx, flips = [], []
        need = global_batch
        while need:
            perm, flip = self._epoch(self.state.epoch)
            if self.state.position >= len(perm):
                # a run resumed with shorter epochs (repeat factors changed or turned off) whose
                # recorded position lies past this epoch's end: that epoch is over
                self.state = SamplerState(self.state.epoch + 1, 0)
                continue
            take = min(need, len(perm) - self.state.position)
            idx.append(perm[self.state.position : self.state.position + take])
            flips.append(flip[self.state.position : self.state.position + take])
            self.state.position += take
            need -= take
            if self.state.position == len(perm):
                self.state = SamplerState(self.state.epoch + 1, 0)
        return np.concatenate(idx), np.concatenate(flips)

    def next(self, batch_per_rank: int) -> tuple[np.ndarray, np.ndarray]:
        idx, flips = self.next_global(batch_per_rank * self.world_size)
        part = slice(self.rank * batch_per_rank, (self.rank + 1) * batch_per_rank)
        return idx[part], flips[part]
