"""Shared fixtures: tiny synthetic datasets in the CCP and paired layouts, tiny configs."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from styleseg.data.classes import CCP_LABELS, get_class_map
from styleseg.data.synthetic import draw_lip_person

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "tests" / "training" / "tiny.yaml")
"""A tiny configuration that passes through every growth event in a few dozen steps."""


def tiny_config(*overrides: str):
    """The tiny training config (TINY) with `--set`-style overrides."""
    from styleseg.config import build_config

    return build_config(TINY, list(overrides))


def tiny_model_config(**changes):
    """The tiny config's networks (24x16 from 3x2, 16-d latents, 32 channels), with changes."""
    return dataclasses.replace(tiny_config().model, **changes)


LEVELS = get_class_map("ccp-12").levels()  # 2 -> 5 -> 12 classes
SIZES = [lvl.num_classes for lvl in LEVELS]


def latents(G, batch, stage, seed=0):
    """float64 z and noise for a network in double precision."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, G.cfg.z_dim, generator=gen, dtype=torch.float64)
    noise = [n.double() for n in G.make_noise(batch, stage, generator=gen)]
    return z, noise


def draw_person(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A photo and CCP label map of a crude 'person': hair, skin, a top, jeans, shoes."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(100, 200, 3)
    mask = np.zeros((h, w), np.uint8)
    cx = w // 2 + int(rng.integers(-w // 8, w // 8 + 1))
    parts = [
        ("hair", 0.05, 0.12, 0.10),
        ("skin", 0.12, 0.22, 0.08),
        ("t-shirt", 0.22, 0.50, 0.18),
        ("jeans", 0.50, 0.85, 0.14),
        ("shoes", 0.85, 0.92, 0.12),
    ]
    for label, top, bottom, half in parts:
        lid = CCP_LABELS.index(label)
        y0, y1 = int(top * h), int(bottom * h)
        x0, x1 = max(cx - int(half * w), 0), min(cx + int(half * w), w)
        mask[y0:y1, x0:x1] = lid
        img[y0:y1, x0:x1] = (lid * 37 % 255, lid * 91 % 255, lid * 53 % 255)
    return img, mask


def make_ccp(root: Path, labeled: list[int], unlabeled: list[int], size=(66, 44), seed: int = 0) -> Path:
    """A CCP-layout dataset: photos, pixel-level and image-level .mat files, label_list.mat."""
    rng = np.random.default_rng(seed)
    (root / "photos").mkdir(parents=True)
    (root / "annotations" / "pixel-level").mkdir(parents=True)
    (root / "annotations" / "image-level").mkdir(parents=True)
    labels = np.empty((1, len(CCP_LABELS)), dtype=object)
    for i, name in enumerate(CCP_LABELS):
        labels[0, i] = np.array([name])
    scipy.io.savemat(root / "label_list.mat", {"label_list": labels})
    for n in labeled + unlabeled:
        img, mask = draw_person(*size, rng)
        Image.fromarray(img).save(root / "photos" / f"{n:04d}.jpg", quality=95)
        if n in labeled:
            scipy.io.savemat(root / "annotations" / "pixel-level" / f"{n:04d}.mat", {"groundtruth": mask})
        else:
            scipy.io.savemat(root / "annotations" / "image-level" / f"{n:04d}.mat", {"tags": np.array([[19, 41]])})
    return root


def make_paired(root: Path, n: int, size=(48, 32), seed: int = 0, palette_masks: bool = True) -> Path:
    """Paired folders with a 3-class classes.json (background, person, bag)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    classes = {
        "name": "tiny",
        "classes": [
            {"id": 0, "name": "background", "color": [0, 0, 0]},
            {"id": 1, "name": "person", "color": [230, 25, 75]},
            {"id": 2, "name": "bag", "color": [60, 180, 75]},
        ],
    }
    (root / "classes.json").write_text(json.dumps(classes))
    for i in range(n):
        img, ccp_mask = draw_person(*size, rng)
        mask = (ccp_mask > 0).astype(np.uint8)
        mask[: size[0] // 6, : size[1] // 6] = 2
        Image.fromarray(img).save(root / "images" / f"s{i:03d}.png")
        m = Image.fromarray(mask)  # uint8 2-D: mode L
        if palette_masks:
            m = Image.frombytes("P", m.size, mask.tobytes())
            m.putpalette([0, 0, 0, 230, 25, 75, 60, 180, 75] + [0] * 759)
        m.save(root / "masks" / f"s{i:03d}.png")
    return root


def make_coco(root: Path, annotations=None, categories=None) -> Path:
    """A COCO dataset: two 40x30 photos, a dress polygon with a belt on it, and an RLE dress."""
    from pycocotools import mask as mask_utils

    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    Image.fromarray(np.full((40, 30, 3), 128, np.uint8)).save(root / "images" / "a.jpg")
    Image.fromarray(np.full((40, 30, 3), 90, np.uint8)).save(root / "images" / "b.jpg")
    # an RLE of rows 30..39 (the bottom quarter) for image b
    bottom = np.zeros((40, 30), np.uint8, order="F")
    bottom[30:] = 1
    rle = mask_utils.encode(bottom)
    rle["counts"] = rle["counts"].decode()
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "height": 40, "width": 30},
            {"id": 2, "file_name": "b.jpg", "height": 40, "width": 30},
        ],
        "categories": categories or [{"id": 3, "name": "dress"}, {"id": 7, "name": "belt"}],
        "annotations": annotations
        or [
            # a large dress polygon and a small belt inside it; the belt (smaller) must win
            {
                "id": 1,
                "image_id": 1,
                "category_id": 3,
                "area": 400.0,
                "iscrowd": 0,
                "segmentation": [[5, 5, 25, 5, 25, 35, 5, 35]],
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 7,
                "area": 40.0,
                "iscrowd": 0,
                "segmentation": [[5, 18, 25, 18, 25, 20, 5, 20]],
            },
            {"id": 3, "image_id": 2, "category_id": 3, "area": 300.0, "iscrowd": 1, "segmentation": rle},
        ],
    }
    (root / "annotations" / "instances_train.json").write_text(json.dumps(data))
    return root


def save_label_png(mask: np.ndarray, path: Path, palette: bool = True) -> None:
    """A single-channel ('L') or palette ('P') PNG of label ids."""
    im = Image.fromarray(mask)
    if palette:
        im = Image.frombytes("P", im.size, mask.tobytes())
        im.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)])
    im.save(path)


def make_parsing(root: Path, image_dir: str, mask_dir: str, n: int, size=(32, 24), seed: int = 0) -> Path:
    """Photos beside LIP-labelled palette PNGs under the given folder names (VITON: image/ + image-parse/)."""
    rng = np.random.default_rng(seed)
    (root / image_dir).mkdir(parents=True, exist_ok=True)
    (root / mask_dir).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, mask = draw_lip_person(*size, rng)
        Image.fromarray(img).save(root / image_dir / f"{i:06d}_0.jpg", quality=95)
        save_label_png(mask, root / mask_dir / f"{i:06d}_0.png")
    return root


@pytest.fixture
def tiny_viton(tmp_path) -> Path:
    return make_parsing(tmp_path / "viton", "image", "image-parse", 20)


def viton_root() -> Path | None:
    for candidate in (os.environ.get("STYLESEG_VITON"), REPO.parent / "shared" / "datasets" / "viton"):
        if candidate and (Path(candidate) / "image").is_dir():
            return Path(candidate)
    return None


@pytest.fixture
def real_viton() -> Path:
    root = viton_root()
    if root is None:
        pytest.skip("VITON not found: set STYLESEG_VITON or place it at ../shared/datasets/viton")
    return root


@pytest.fixture
def tiny_ccp(tmp_path) -> Path:
    return make_ccp(tmp_path / "ccp", labeled=list(range(1, 13)) + [805, 806, 807], unlabeled=[1005, 1006, 1007, 1008])


@pytest.fixture
def tiny_paired(tmp_path) -> Path:
    return make_paired(tmp_path / "paired", 12)


@pytest.fixture(scope="session")
def prepared_tiny(tmp_path_factory) -> Path:
    """A prepared 24x16 ccp-12 store of a tiny synthetic CCP dataset (shared by training tests)."""
    from styleseg.data.prepare import prepare_dataset

    root = tmp_path_factory.mktemp("prep")
    src = make_ccp(root / "ccp", labeled=list(range(1, 25)) + [805, 806], unlabeled=[1005, 1006, 1007, 1008])
    prepare_dataset(src, root / "prepared", (24, 16), "ccp-12", workers=1)
    return root / "prepared"


def ccp_root() -> Path | None:
    for candidate in (os.environ.get("STYLESEG_CCP"), REPO.parent / "shared" / "datasets" / "clothing-co-parsing"):
        if candidate and (Path(candidate) / "photos").is_dir():
            return Path(candidate)
    return None


@pytest.fixture
def real_ccp() -> Path:
    root = ccp_root()
    if root is None:
        pytest.skip(
            "Clothing Co-Parsing not found: set STYLESEG_CCP or place it at ../shared/datasets/clothing-co-parsing"
        )
    return root


@pytest.fixture(scope="session")
def checkpoint(prepared_tiny, tmp_path_factory) -> Path:
    """The last checkpoint of a tiny run through every growth event (kimg 0.32). Full-size output
    heads: after a few dozen steps their random projections still give varied masks (some with a
    person, some without), which the filter tests need. Read it, never write into it."""
    from styleseg.cli.main import main
    from styleseg.models.weights import list_checkpoints

    out = tmp_path_factory.mktemp("trained")
    argv = ["train", "--data", str(prepared_tiny), "--out", str(out), "--preset", TINY, "--no-progress"]
    argv += ["--set", "model.head_init_scale=1.0"]
    assert main(argv) == 0
    (run,) = out.iterdir()
    return list_checkpoints(run / "checkpoints")[-1]
