"""Readers of source datasets in their original layouts.

- CCP (Clothing Co-Parsing): photos/NNNN.jpg, annotations/pixel-level/NNNN.mat (`groundtruth`),
  annotations/image-level/NNNN.mat (tags only: an image-only sample), label_list.mat.
- Parsing folders: photos beside label PNGs (single-channel or palette indices) with matching stems:
  images/ + masks/ (the layout `styleseg generate` writes), VITON's image/ + image-parse/, LIP's
  {train,val}_images/ + {train,val}_segmentations/, CIHP's {Training,Validation}/Images/ +
  Category_ids/, ATR's JPEGImages/ + SegmentationClassAug/, or any two folders named by the user.
- COCO-format JSON (polygons or RLE) in `coco.py`.
What every reader returns (SourceSample) and the split rule they share live in `samples.py`.
Readers return plain numpy arrays and raise DataError naming the file on any problem.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image, UnidentifiedImageError
from scipy.io.matlab import MatReadError

from styleseg.data.classes import ATR_LABELS, LIP_LABELS, ClassMap
from styleseg.data.coco import CocoReader, find_coco_files
from styleseg.data.samples import IMAGE_SUFFIXES, SPLITS, SourceSample, hash_split
from styleseg.errors import DataError


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


@dataclass(frozen=True)
class FolderPair:
    """Where one split of a parsing dataset keeps its photos and its label maps."""

    images: str
    masks: str
    split: str | None = None  # None: split by splits/*.txt, else by a hash of the name


@dataclass(frozen=True)
class ParsingLayout:
    """A known folder layout of photos beside label PNGs, and the labels its maps use."""

    name: str
    pairs: tuple[FolderPair, ...]
    source_labels: tuple[str, ...] | None  # None: from the dataset's class file
    default_class_map: str


PARSING_LAYOUTS = (
    ParsingLayout("paired", (FolderPair("images", "masks"),), None, "source"),
    ParsingLayout("viton", (FolderPair("image", "image-parse"),), tuple(LIP_LABELS), "lip-12"),
    ParsingLayout(
        "lip",
        (
            FolderPair("train_images", "train_segmentations", "train"),
            FolderPair("val_images", "val_segmentations", "val"),
        ),
        tuple(LIP_LABELS),
        "lip-12",
    ),
    ParsingLayout(
        "cihp",
        (
            FolderPair("Training/Images", "Training/Category_ids", "train"),
            FolderPair("Validation/Images", "Validation/Category_ids", "val"),
        ),
        tuple(LIP_LABELS),
        "lip-12",
    ),
    ParsingLayout("atr", (FolderPair("JPEGImages", "SegmentationClassAug"),), tuple(ATR_LABELS), "atr-18"),
)
CLASS_FILES = ("classes.json", "classes.txt")


def read_class_file(path: Path) -> ClassMap:
    """classes.json (a list of names, {"classes": [...]}, or styleseg's class table) or classes.txt."""
    try:
        if path.suffix == ".txt":
            return ClassMap.from_names(path.read_text().split(), path.parent.name)
        return ClassMap.from_json(json.loads(path.read_text()))
    except (DataError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: not a valid class list ({exc})") from exc


def read_label_png(path: Path) -> np.ndarray:
    """(H, W) uint8 label ids from a single-channel or palette PNG, or DataError naming the file."""
    try:
        with Image.open(path) as im:
            if im.mode not in {"L", "P"}:
                raise DataError(
                    f"{path}: mask must be a single-channel or palette PNG of class ids, not mode {im.mode}"
                )
            return np.asarray(im).astype(np.uint8)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: mask file is missing") from exc
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise DataError(f"{path}: corrupt or unreadable mask ({exc})") from exc


class ParsingFolderReader:
    """Photos beside label PNGs with matching stems: styleseg's images/+masks/, VITON, LIP, CIHP, ATR,
    or any pair of folders named with `image_dir`/`mask_dir`. Labels come from classes.json or
    classes.txt in the root when present, else from the layout's own label list."""

    def __init__(self, root: Path, layout: ParsingLayout):
        self.root, self.layout = Path(root), layout
        self.name, self.default_class_map = layout.name, layout.default_class_map
        class_file = next((self.root / f for f in CLASS_FILES if (self.root / f).is_file()), None)
        # Without a class file and without labels of the layout's own, the class map given with --classes
        # names the ids (see prepare.resolve_class_map).
        self.own_class_map = read_class_file(class_file) if class_file is not None else None
        if class_file is not None:
            self.default_class_map = "source"
        self.source_labels = self.own_class_map.classes if self.own_class_map else layout.source_labels
        split_of = self._split_files()
        self.samples: list[SourceSample] = []
        for pair in layout.pairs:
            images, masks = self.root / pair.images, self.root / pair.masks
            if not images.is_dir():
                continue
            image_files = {p.stem: p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
            if not image_files:
                raise DataError(f"{images}: no images found")
            mask_files = {p.stem: p for p in masks.iterdir() if p.suffix.lower() == ".png"} if masks.is_dir() else {}
            orphans = sorted(set(mask_files) - set(image_files))
            if orphans:
                raise DataError(f"{mask_files[orphans[0]]}: mask has no image ({len(orphans)} such files)")
            self.samples += [
                SourceSample(
                    stem, image_files[stem], mask_files.get(stem), pair.split or split_of.get(stem) or hash_split(stem)
                )
                for stem in sorted(image_files)
            ]
        if not self.samples:
            raise DataError(f"{self.root}: no images in {', '.join(p.images + '/' for p in layout.pairs)}")

    def _split_files(self) -> dict[str, str]:
        split_of: dict[str, str] = {}
        for split in SPLITS:
            path = self.root / "splits" / f"{split}.txt"
            if path.is_file():
                for line in path.read_text().split():
                    split_of[Path(line).stem] = split
        return split_of

    def read_mask(self, sample: SourceSample) -> np.ndarray | None:
        return None if sample.mask_path is None else read_label_png(sample.mask_path)


def custom_layout(image_dir: str, mask_dir: str) -> ParsingLayout:
    """A layout of two named folders (split by splits/*.txt or name hash), labels from a class file."""
    return ParsingLayout("folders", (FolderPair(image_dir, mask_dir),), None, "source")


def open_source(root: Path, image_dir: str | None = None, mask_dir: str | None = None):
    """Detect the layout of a source dataset folder (or use the named image and mask folders)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    if image_dir or mask_dir:
        if not (image_dir and mask_dir):
            raise DataError("name both the image folder and the mask folder (--image-dir and --mask-dir)")
        if not (root / image_dir).is_dir():
            raise DataError(f"{root / image_dir}: image folder not found")
        return ParsingFolderReader(root, custom_layout(image_dir, mask_dir))
    if (root / "photos").is_dir() or (root / "label_list.mat").exists():
        return CCPReader(root)
    if find_coco_files(root):
        return CocoReader(root)
    for layout in PARSING_LAYOUTS:
        if any((root / pair.images).is_dir() for pair in layout.pairs):
            return ParsingFolderReader(root, layout)
    if not any(root.iterdir()):
        raise DataError(f"{root}: folder is empty")
    looked_for = ["photos/ + annotations/pixel-level/ (CCP)", "annotations/*.json (COCO)"]
    looked_for += [
        " + ".join(f"{p.images}/ & {p.masks}/" for p in lay.pairs) + f" ({lay.name})" for lay in PARSING_LAYOUTS
    ]
    raise DataError(f"{root}: not a known dataset layout; looked for " + "; ".join(looked_for))
