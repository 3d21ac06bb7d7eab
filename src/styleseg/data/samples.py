"""What every source reader returns: samples (a photo, its optional mask file, its split), the photo
decoding they share, and the deterministic split rule for datasets without their own splits."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

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


def hash_split(stem: str) -> str:
    """A deterministic 90/10 train/val split by name (first 8 hex digits of SHA-1 mod 10 == 0 -> val),
    stable as files are added."""
    return "val" if int(hashlib.sha1(stem.encode()).hexdigest()[:8], 16) % 10 == 0 else "train"
