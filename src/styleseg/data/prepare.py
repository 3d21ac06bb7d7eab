"""`styleseg prepare`: read a source dataset once and write a prepared store for training (read
back by rows with positioned reads, see rows.py and store.py).

The store holds uint8 images (N, H, W, 3), uint8 class-id masks (N, H, W), a labeled flag and a
split per sample, plus dataset.json. It is written into a temporary folder and renamed at the end,
so an interrupted run never leaves something that looks complete.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import shutil
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from styleseg import __version__
from styleseg.data.classes import ClassMap, get_class_map
from styleseg.data.geometry import letterbox_image, letterbox_mask
from styleseg.data.readers import open_source
from styleseg.data.rows import RowWriter
from styleseg.data.samples import SourceSample, read_image
from styleseg.data.store import SPLIT_CODES, write_store_index
from styleseg.errors import DataError

# Per-worker state, set once by _init_worker so samples travel as small records.
_WORKER: dict = {}


def resolve_class_map(reader, classes: str | None) -> ClassMap:
    """The class map to prepare with: --classes, else the reader's default (its own class file, or
    the built-in map of its layout)."""
    name = classes or reader.default_class_map
    if name == "source":
        if getattr(reader, "own_class_map", None) is None:
            raise DataError(
                f"{reader.root}: no classes.json or classes.txt, and this layout has no label list of its own; "
                "add one (a list of class names in id order is enough) or pass --classes"
            )
        return reader.own_class_map
    return get_class_map(name)


def source_lut(reader, class_map: ClassMap) -> np.ndarray:
    """Source label id -> class id. A dataset without label names of its own takes the ids of the
    class map's classes as they are."""
    if reader.source_labels is None:
        if class_map.source_to_class and any(k != v for k, v in class_map.source_to_class.items()):
            raise DataError(
                f"{reader.root}: has no label names of its own, so class map '{class_map.name}' must name "
                "its classes in id order (a merging map needs source label names)"
            )
        return np.arange(class_map.num_classes, dtype=np.uint8)
    return class_map.source_lut(reader.source_labels, where=f"{reader.root} ({reader.name} labels)")


def _init_worker(
    reader, lut: np.ndarray, num_classes: int, out_hw: tuple[int, int], fit: str, threads: int = 0
) -> None:
    if threads:
        torch.set_num_threads(threads)  # one thread per worker process: the processes are the parallelism
    _WORKER.update(reader=reader, lut=lut, num_classes=num_classes, out_hw=out_hw, fit=fit)


def bounded_map(pool, fn, items: list, chunk: int, ahead: int):
    """fn over items in order, like pool.map with chunksize, but with at most `ahead` chunks submitted
    and not yet consumed: pool.map submits everything at once and keeps finished results until the
    consumer reaches them, which held 1.7 GiB when preparing 14,221 VITON samples at 256x192."""
    chunks = (items[i : i + chunk] for i in range(0, len(items), chunk))
    pending = deque(pool.submit(_map_chunk, fn, c) for c in itertools.islice(chunks, ahead))
    while pending:
        done = pending.popleft().result()
        for c in itertools.islice(chunks, 1):
            pending.append(pool.submit(_map_chunk, fn, c))
        yield from done


def _map_chunk(fn, chunk: list) -> list:
    return [fn(item) for item in chunk]


def _process(sample: SourceSample) -> tuple[np.ndarray, np.ndarray | None]:
    reader, lut, out_hw, fit = _WORKER["reader"], _WORKER["lut"], _WORKER["out_hw"], _WORKER["fit"]
    image = read_image(sample.image_path)
    source_mask = reader.read_mask(sample)
    if source_mask is None:
        return letterbox_image(image, out_hw, fit), None
    if source_mask.shape != image.shape[:2]:
        raise DataError(
            f"{sample.mask_path}: mask is {source_mask.shape[0]}x{source_mask.shape[1]} (HxW) but its photo "
            f"{sample.image_path.name} is {image.shape[0]}x{image.shape[1]}"
        )
    top = int(source_mask.max())
    if top >= len(lut):
        raise DataError(
            f"{sample.mask_path}: label id {top} is outside the {len(lut)} labels of this dataset (0..{len(lut) - 1})"
        )
    classes = lut[source_mask]
    return letterbox_image(image, out_hw, fit), letterbox_mask(classes, out_hw, _WORKER["num_classes"], fit)


def mip_factors(resolution: tuple[int, int]) -> list[int]:
    """Downsampling factors 2, 4, ... that divide the resolution and leave at least 2x2 pixels."""
    h, w, f, out = *resolution, 2, []
    while h % f == 0 and w % f == 0 and min(h, w) // f >= 2:
        out.append(f)
        f *= 2
    return out


def area_downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (H/f, W/f, 3) uint8, the mean of each f x f block, rounded."""
    h, w, c = image.shape
    blocks = image.reshape(h // factor, factor, w // factor, factor, c).astype(np.float32)
    return np.round(blocks.mean(axis=(1, 3))).astype(np.uint8)


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


# Aspects (H:W) a prepared store can take: each a base shape the generator starts from (config.py).
BASE_SHAPES = ((4, 3), (3, 2), (4, 4), (3, 4), (2, 3))
MAX_PIXELS = 96 * 64
"""Default size: the largest shape of the chosen aspect with at most this many pixels (96x64, the
largest that trains on a 2-core CPU in hours) and no taller than the median photo (no up-sampling)."""
ASPECT_SAMPLE = 200
"""Photos whose sizes (read from their headers) decide the default shape."""


@dataclass(frozen=True)
class ShapeChoice:
    resolution: tuple[int, int]
    median_aspect: float
    """Median H / W of the photos looked at."""
    padded_share: float
    """Share of the median photo's frame that fitting it to `resolution` pads (or crops)."""
    photos_over_10pct: float
    """Share of the photos looked at that lose or gain more than 10 % of their frame."""
    looked_at: int


def choose_resolution(reader, sample: int = ASPECT_SAMPLE) -> ShapeChoice:
    """The default prepared shape: the base aspect nearest (in log ratio) to the photos' median H/W,
    at the largest power-of-two multiple within MAX_PIXELS and the median photo's height (VITON's
    256x192 photos: 64x48; CCP's 825x550: 96x64)."""
    samples = reader.samples
    if not samples:
        raise DataError(f"{reader.root}: no photos to prepare")
    pick = [samples[i] for i in np.linspace(0, len(samples) - 1, min(sample, len(samples))).round().astype(int)]
    sizes = np.array([_photo_size(s.image_path) for s in pick], np.float64)
    aspects = sizes[:, 0] / sizes[:, 1]
    median = float(np.median(aspects))
    bh, bw = min(BASE_SHAPES, key=lambda b: abs(math.log(median / (b[0] / b[1]))))
    k = int(math.floor(math.log2(math.sqrt(MAX_PIXELS / (bh * bw)))))
    while k > 0 and bh << k > np.median(sizes[:, 0]):
        k -= 1
    resolution = (bh << k, bw << k)
    target = bh / bw

    def padded(a):
        return 1 - np.minimum(a / target, target / a)

    return ShapeChoice(resolution, median, float(padded(median)), float((padded(aspects) > 0.1).mean()), len(pick))


def _photo_size(path: Path) -> tuple[int, int]:
    """(H, W) from the image header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except FileNotFoundError as exc:
        raise DataError(f"{path}: image file is missing") from exc
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"{path}: corrupt or unreadable image ({exc})") from exc


def prepare_dataset(
    source: Path,
    out: Path,
    resolution: tuple[int, int],
    classes: str | None = None,
    workers: int | None = None,
    force: bool = False,
    progress=None,
    image_dir: str | None = None,
    mask_dir: str | None = None,
    fit: str = "pad-edge",
) -> dict:
    """Prepare `source` into the store `out`; returns the dataset.json contents."""
    out = Path(out)
    if out.exists() and not force:
        raise DataError(
            f"{out}: already exists; pass --force to replace it (the old one is kept until the new one is complete)"
        )
    reader = open_source(Path(source), image_dir, mask_dir)
    class_map = resolve_class_map(reader, classes)
    lut = source_lut(reader, class_map)
    samples = reader.samples
    n, (h, w) = len(samples), resolution
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    start = time.perf_counter()
    factors = mip_factors((h, w))
    writers: list[RowWriter] = []
    try:
        # Written row by row with plain file I/O: memory stays at one sample whatever n is (rows.py).
        images = RowWriter(tmp / "images.npy", (n, h, w, 3))
        masks = RowWriter(tmp / "masks.npy", (n, h, w))
        mips = {f: RowWriter(tmp / f"images-x{f}.npy", (n, h // f, w // f, 3)) for f in factors}
        writers = [images, masks, *mips.values()]
        train_pixels = np.zeros(class_map.num_classes, np.int64)
        labeled = np.zeros(n, dtype=bool)
        split = np.array([SPLIT_CODES[s.split] for s in samples], dtype=np.uint8)
        workers = workers or len(os.sched_getaffinity(0))
        init = (reader, lut, class_map.num_classes, (h, w), fit)
        if workers > 1:
            # spawn, not fork: a forked child of a process that already ran torch ops can deadlock in OpenMP.
            pool = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(*init, 1)
            )
            results = bounded_map(pool, _process, samples, chunk=16, ahead=4 * workers)
        else:
            pool = None
            _init_worker(*init)
            results = map(_process, samples)
        try:
            for i, (image, mask) in enumerate(results):
                images.write(i, image)
                for f, writer in mips.items():
                    writer.write(i, area_downsample(image, f))
                if mask is not None:
                    masks.write(i, mask)
                    labeled[i] = True
                    if split[i] == SPLIT_CODES["train"]:
                        train_pixels += np.bincount(mask.ravel(), minlength=class_map.num_classes)
                if progress:
                    progress(i + 1, n)
        finally:
            if pool:
                pool.shutdown(cancel_futures=True)
        for writer in writers:
            writer.close()
        meta = _metadata(reader, class_map, resolution, train_pixels, labeled, split)
        meta.update(fit=fit, image_mips=factors, workers=workers)
        meta["prepare_seconds"] = round(time.perf_counter() - start, 1)
        meta = write_store_index(tmp, labeled, split, [s.id for s in samples], meta)
        _fsync_tree(tmp)
        _replace(tmp, out)
    except BaseException:
        for writer in writers:
            writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished store into place; an old store is removed only after the rename."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)


def _metadata(reader, class_map: ClassMap, resolution, pixels: np.ndarray, labeled, split) -> dict:
    counts = {}
    for name, code in SPLIT_CODES.items():
        in_split = split == code
        counts[name] = {"labeled": int((in_split & labeled).sum()), "unlabeled": int((in_split & ~labeled).sum())}
    freq = pixels / max(pixels.sum(), 1)
    return {
        "styleseg_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {"path": str(Path(reader.root).resolve()), "layout": reader.name},
        "resolution": list(resolution),
        "counts": counts,
        "classes": class_map.to_json(),
        "class_pixel_frequency": {c: float(f) for c, f in zip(class_map.classes, freq)},
    }
