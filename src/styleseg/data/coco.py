"""COCO-format annotations (ModaNet, Fashionpedia, DeepFashion2 converted, ...) as semantic masks.

Layout: `annotations/*.json` (or `*.json` in the root) in COCO's instances format, photos under
`images/` (or the root) at each image record's `file_name`. Every image listed in a JSON file is a
labeled sample; its split comes from the file name (`train`, `val`, `test` in it), else from a hash
of the photo's name.

Overlaps: annotations are painted largest first, so where two overlap the smaller one wins (a belt
stays visible on a dress, a bag on a coat); equal areas keep the JSON order. Crowd annotations are
painted like any other. Polygons and RLE (compressed or not) are decoded by pycocotools.

Source labels are "background" followed by the category names in category-id order; the class map
(`--classes`, default: those labels as they are) turns names into training classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from styleseg.data.classes import ClassMap
from styleseg.data.samples import SPLITS, SourceSample, hash_split
from styleseg.errors import DataError

NOT_COCO = {"classes.json", "dataset.json", "generation.json", "ids.json"}
"""JSON files styleseg itself writes beside datasets: never COCO annotations."""


def find_coco_files(root: Path) -> list[Path]:
    """COCO instance JSON files of a dataset folder: annotations/*.json, else *.json in the root."""
    root = Path(root)
    files = sorted((root / "annotations").glob("*.json")) if (root / "annotations").is_dir() else []
    return files or sorted(p for p in root.glob("*.json") if p.name not in NOT_COCO)


def _split_of_file(path: Path) -> str | None:
    name = path.stem.lower()
    found = [s for s in SPLITS if s in name]
    return found[0] if len(found) == 1 else None


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read COCO annotations ({exc})") from exc
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise DataError(f"{path}: not a COCO instances file (no {', '.join(missing)} list)")
    return data


def check_polygons(path: Path, ann: dict) -> None:
    """A polygon segmentation is a list of flat lists x1, y1, x2, y2, ... of at least three points;
    pycocotools' own errors on anything else ("input type is not supported", "Argument 'bb' has
    incorrect type") name neither the file nor the annotation."""
    seg = ann.get("segmentation")
    if not isinstance(seg, list):
        return
    for k, poly in enumerate(seg):
        where = f"{path}: annotation {ann.get('id')}, polygon {k}"
        if not isinstance(poly, list) or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in poly):
            raise DataError(f"{where}: a polygon is a flat list of numbers x1, y1, x2, y2, ..., not {str(poly)[:40]}")
        if len(poly) % 2:
            raise DataError(f"{where}: {len(poly)} coordinates, an odd number (x, y pairs expected)")
        if len(poly) < 6:
            raise DataError(f"{where}: {len(poly) // 2} point(s); a polygon needs at least 3")


class CocoReader:
    """One or more COCO instance files turned into semantic masks (see the module doc)."""

    name = "coco"
    default_class_map = "source"

    def __init__(self, root: Path, files: list[Path] | None = None):
        try:
            import pycocotools.mask  # noqa: F401
        except ImportError as exc:
            raise DataError("reading COCO annotations needs pycocotools: pip install 'styleseg[coco]'") from exc
        self.root = Path(root)
        files = files or find_coco_files(self.root)
        if not files:
            raise DataError(f"{self.root}: no COCO JSON files in annotations/ or the root")
        image_root = self.root / "images" if (self.root / "images").is_dir() else self.root
        categories: dict[int, str] | None = None
        self.samples: list[SourceSample] = []
        self._records: dict[str, tuple[int, int, list]] = {}  # sample id -> (height, width, annotations)
        for path in files:
            data = _load_json(path)
            cats = {int(c["id"]): str(c["name"]) for c in data["categories"]}
            if categories is None:
                categories = cats
            elif cats != categories:
                raise DataError(f"{path}: its categories differ from those of {files[0].name}")
            split = _split_of_file(path)
            images = {}
            for im in data["images"]:
                stem = Path(im["file_name"]).stem
                if stem in self._records:
                    raise DataError(f"{path}: image '{im['file_name']}' is listed twice")
                images[im["id"]] = stem
                self._records[stem] = (int(im["height"]), int(im["width"]), [])
                self.samples.append(SourceSample(stem, image_root / im["file_name"], path, split or hash_split(stem)))
            for ann in data["annotations"]:
                if ann.get("category_id") not in cats:
                    raise DataError(
                        f"{path}: annotation {ann.get('id')} has category id {ann.get('category_id')}, "
                        f"which is not among the file's categories {sorted(cats)}"
                    )
                if ann.get("image_id") not in images:
                    raise DataError(f"{path}: annotation {ann.get('id')} refers to unknown image {ann.get('image_id')}")
                check_polygons(path, ann)
                self._records[images[ann["image_id"]]][2].append(ann)
        self.category_ids = sorted(categories)
        self.source_labels = ("background",) + tuple(categories[c] for c in self.category_ids)
        # Category id -> source label id (1..C in category-id order; 0 is background).
        self._label_of = {cid: i + 1 for i, cid in enumerate(self.category_ids)}
        self.own_class_map = ClassMap.from_names(self.source_labels, self.root.name)
        self.samples.sort(key=lambda s: s.id)

    def read_mask(self, sample: SourceSample) -> np.ndarray:
        """(H, W) uint8 source label ids, painted largest annotation first."""
        from pycocotools import mask as mask_utils

        h, w, anns = self._records[sample.id]
        out = np.zeros((h, w), np.uint8)
        for ann in sorted(anns, key=lambda a: -float(a.get("area", 0))):
            seg = ann.get("segmentation")
            try:
                if isinstance(seg, list):  # polygons
                    if not seg:
                        continue
                    rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
                elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):  # uncompressed RLE
                    rle = mask_utils.frPyObjects(seg, h, w)
                elif isinstance(seg, dict):  # compressed RLE
                    rle = dict(seg, counts=seg["counts"].encode() if isinstance(seg["counts"], str) else seg["counts"])
                else:
                    raise TypeError(f"segmentation of type {type(seg).__name__}")
                region = mask_utils.decode(rle).astype(bool)
            except (TypeError, ValueError, KeyError, IndexError) as exc:
                raise DataError(f"{sample.mask_path}: annotation {ann.get('id')} cannot be decoded ({exc})") from exc
            if region.shape != (h, w):
                raise DataError(
                    f"{sample.mask_path}: annotation {ann.get('id')} is {region.shape[0]}x{region.shape[1]} but "
                    f"its image record says {h}x{w}"
                )
            out[region] = self._label_of[ann["category_id"]]
        return out
