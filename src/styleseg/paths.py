"""Where styleseg keeps what it downloads and trains once for reuse: one cache root, honouring
XDG_CACHE_HOME (as pip and torch do), with one folder per kind."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$XDG_CACHE_HOME/styleseg, or ~/.cache/styleseg."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "styleseg"


def models_cache() -> Path:
    """Hosted models, downloaded once (models/zoo.py)."""
    return cache_root() / "models"


def segmenters_cache() -> Path:
    """Trained segmenters, one folder per fingerprint (metrics/segmenter_train.py)."""
    return cache_root() / "segmenters"
