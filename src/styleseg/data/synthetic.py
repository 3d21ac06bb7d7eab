"""Synthetic human-parsing data: crude drawn people with LIP labels, in VITON's layout (image/ +
image-parse/). For scale benchmarks and tests: any number of samples, no download, deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# (LIP label id, top, bottom, left, right): rows as fractions of the height, columns as offsets
# from the centre in fractions of the width. Left/right are the person's own sides.
_PARTS = [
    (2, 0.05, 0.15, -0.1, 0.1),  # hair
    (13, 0.15, 0.25, -0.08, 0.08),  # face
    (5, 0.25, 0.55, -0.18, 0.18),  # upper-clothes
    (15, 0.25, 0.5, -0.28, -0.18),  # right arm (image left)
    (14, 0.25, 0.5, 0.18, 0.28),  # left arm (image right)
    (9, 0.55, 0.8, -0.15, 0.15),  # pants
    (17, 0.8, 0.95, -0.15, 0.0),  # right leg
    (16, 0.8, 0.95, 0.0, 0.15),  # left leg
]


def draw_lip_person(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 photo and (H, W) uint8 LIP label map of one drawn person on a light background."""
    img = np.full((h, w, 3), 235, np.uint8)
    mask = np.zeros((h, w), np.uint8)
    cx = w // 2 + int(rng.integers(-2, 3))
    shade = rng.integers(-30, 31, 3)
    for lid, top, bottom, a, b in _PARTS:
        y0, y1 = int(top * h), int(bottom * h)
        x0, x1 = cx + int(a * w), cx + int(b * w)
        mask[y0:y1, x0:x1] = lid
        img[y0:y1, x0:x1] = np.clip(np.array([lid * 37 % 255, lid * 91 % 255, lid * 53 % 255]) + shade, 0, 255)
    return img, mask


def write_synthetic_parsing(
    root: Path, n: int, size: tuple[int, int] = (64, 48), seed: int = 0, start: int = 0
) -> Path:
    """Write n samples (stems NNNNNNN_0) into root/image/*.jpg and root/image-parse/*.png (palette)."""
    root = Path(root)
    (root / "image").mkdir(parents=True, exist_ok=True)
    (root / "image-parse").mkdir(parents=True, exist_ok=True)
    palette = [v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)]
    for i in range(start, start + n):
        img, mask = draw_lip_person(*size, np.random.default_rng([seed, i]))
        Image.fromarray(img).save(root / "image" / f"{i:07d}_0.jpg", quality=90)
        label = Image.frombytes("P", (size[1], size[0]), mask.tobytes())
        label.putpalette(palette)
        label.save(root / "image-parse" / f"{i:07d}_0.png")
    return root
