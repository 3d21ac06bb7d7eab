"""Readers of source datasets in their original layouts.

Two layouts are understood:
- CCP (Clothing Co-Parsing): photos/NNNN.jpg, annotations/pixel-level/NNNN.mat (`groundtruth`),
  annotations/image-level/NNNN.mat (tags only: an image-only sample), label_list.mat.
- Paired folders: images/<stem>.{png,jpg,...} + masks/<stem>.png (single-channel or palette
  indices) + classes.json; the layout `styleseg generate` writes.
Readers return plain numpy arrays and raise DataError naming the file on any problem.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image, UnidentifiedImageError
from scipy.io.matlab import MatReadError

from styleseg.data.classes import CCP_LABELS, ClassMap
from styleseg.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SourceSample:
    """One photo, its optional mask file, and its split."""

    id: str
    image_path: Path
    mask_path: Path | None
    split: str


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, or DataError naming the file."""
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: image file is missing") from exc
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: corrupt or unreadable image ({exc})") from exc


class CCPReader:
    """The Clothing Co-Parsing layout, read in place."""

    name = "ccp"
    default_class_map = "ccp-12"
    # CCP's own split of labeled ids; photos with image-level tags only are training images without masks.
    VAL_IDS = range(805, 905)
    TEST_IDS = range(905, 1005)

    def __init__(self, root: Path):
        self.root = Path(root)
        photos = self.root / "photos"
        pixel = self.root / "annotations" / "pixel-level"
        image_level = self.root / "annotations" / "image-level"
        for required in (photos, pixel, self.root / "label_list.mat"):
            if not required.exists():
                raise DataError(f"{required}: missing; {self.root} is not a complete CCP dataset")
        self.source_labels = self._read_label_list(self.root / "label_list.mat")
        photo_ids = {p.stem: p for p in photos.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"}}
        if not photo_ids:
            raise DataError(f"{photos}: no photos found")
        mask_ids = {p.stem: p for p in pixel.glob("*.mat")}
        tag_ids = {p.stem for p in image_level.glob("*.mat")} if image_level.is_dir() else set()
        orphans = sorted(set(mask_ids) - set(photo_ids))
        if orphans:
            raise DataError(f"{mask_ids[orphans[0]]}: annotation has no photo ({len(orphans)} such files)")
        self.samples: list[SourceSample] = []
        for sid in sorted(photo_ids):
            mask = mask_ids.get(sid)
            if mask is None and sid not in tag_ids:
                raise DataError(
                    f"{photo_ids[sid]}: labeled photo has no pixel-level annotation "
                    f"({pixel / (sid + '.mat')} is missing) and no image-level tags"
                )
            self.samples.append(SourceSample(sid, photo_ids[sid], mask, self._split(sid, mask is not None)))

    @staticmethod
    def _read_label_list(path: Path) -> tuple[str, ...]:
        try:
            cells = scipy.io.loadmat(path)["label_list"].ravel()
            labels = tuple(str(c[0]) if len(c) else "" for c in cells)
        except (OSError, KeyError, ValueError, IndexError, MatReadError) as exc:
            raise DataError(f"{path}: cannot read variable 'label_list' ({exc})") from exc
        if labels[0] != "null":
            raise DataError(f"{path}: label 0 should be 'null' (background), found '{labels[0]}'")
        return labels

    def _split(self, sid: str, labeled: bool) -> str:
        if not labeled or not sid.isdigit():
            return "train"
        n = int(sid)
        return "val" if n in self.VAL_IDS else "test" if n in self.TEST_IDS else "train"

    def read_mask(self, sample: SourceSample) -> np.ndarray | None:
        """(H, W) uint8 source label ids, or None for an image-only sample."""
        if sample.mask_path is None:
            return None
        try:
            mask = scipy.io.loadmat(sample.mask_path)["groundtruth"]
        except KeyError as exc:
            raise DataError(f"{sample.mask_path}: no variable 'groundtruth'") from exc
        except (OSError, ValueError, TypeError, MatReadError) as exc:
            raise DataError(f"{sample.mask_path}: corrupt or unreadable annotation ({exc})") from exc
        if mask.ndim != 2:
            raise DataError(f"{sample.mask_path}: 'groundtruth' must be 2-D, has shape {mask.shape}")
        return np.asarray(mask, dtype=np.uint8)


class PairedFolderReader:
    """images/ + masks/ with matching stems, class names and colours from classes.json."""

    name = "paired"
    default_class_map = "source"

    def __init__(self, root: Path):
        self.root = Path(root)
        images, masks, classes = self.root / "images", self.root / "masks", self.root / "classes.json"
        for required in (images, masks, classes):
            if not required.exists():
                raise DataError(f"{required}: missing; a paired dataset has images/, masks/ and classes.json")
        try:
            self.own_class_map = ClassMap.from_json(json.loads(classes.read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{classes}: not a valid classes.json ({exc})") from exc
        self.source_labels = self.own_class_map.classes
        image_files = {p.stem: p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        if not image_files:
            raise DataError(f"{images}: no images found")
        mask_files = {p.stem: p for p in masks.iterdir() if p.suffix.lower() == ".png"}
        orphans = sorted(set(mask_files) - set(image_files))
        if orphans:
            raise DataError(f"{mask_files[orphans[0]]}: mask has no image ({len(orphans)} such files)")
        split_of = self._split_files()
        self.samples = [
            SourceSample(stem, image_files[stem], mask_files.get(stem), split_of.get(stem) or self._hash_split(stem))
            for stem in sorted(image_files)
        ]

    def _split_files(self) -> dict[str, str]:
        split_of: dict[str, str] = {}
        for split in SPLITS:
            path = self.root / "splits" / f"{split}.txt"
            if path.is_file():
                for line in path.read_text().split():
                    split_of[Path(line).stem] = split
        return split_of

    @staticmethod
    def _hash_split(stem: str) -> str:
        """A deterministic 90/10 train/val split by name, stable as files are added."""
        return "val" if int(hashlib.sha1(stem.encode()).hexdigest()[:8], 16) % 10 == 0 else "train"

    def read_mask(self, sample: SourceSample) -> np.ndarray | None:
        if sample.mask_path is None:
            return None
        try:
            with Image.open(sample.mask_path) as im:
                if im.mode not in {"L", "P"}:
                    raise DataError(
                        f"{sample.mask_path}: mask must be a single-channel or palette PNG of class ids, "
                        f"not mode {im.mode}"
                    )
                return np.asarray(im).astype(np.uint8)
        except FileNotFoundError as exc:
            raise DataError(f"{sample.mask_path}: mask file is missing") from exc
        except (OSError, UnidentifiedImageError, SyntaxError) as exc:
            raise DataError(f"{sample.mask_path}: corrupt or unreadable mask ({exc})") from exc


def open_source(root: Path) -> CCPReader | PairedFolderReader:
    """Detect the layout of a source dataset folder."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    if (root / "photos").is_dir() or (root / "label_list.mat").exists():
        return CCPReader(root)
    if (root / "images").is_dir() or (root / "classes.json").exists():
        return PairedFolderReader(root)
    if not any(root.iterdir()):
        raise DataError(f"{root}: folder is empty")
    raise DataError(f"{root}: neither a CCP layout (photos/, annotations/) nor paired folders (images/, masks/)")


__all__ = ["CCP_LABELS", "CCPReader", "PairedFolderReader", "SourceSample", "open_source", "read_image"]
