"""Statistics of label maps: class frequencies, classes per image, fragmentation, person extent."""

from __future__ import annotations

import numpy as np
import scipy.ndimage


def class_frequencies(masks: np.ndarray, num_classes: int) -> np.ndarray:
    """Fraction of all pixels per class over a set of (N, H, W) masks."""
    counts = np.bincount(masks.ravel(), minlength=num_classes).astype(np.float64)
    return counts / max(counts.sum(), 1)


def classes_per_image(masks: np.ndarray, num_classes: int) -> np.ndarray:
    """Number of distinct non-background classes in each mask."""
    return np.array([len(set(np.unique(m).tolist()) - {0}) for m in masks])


def components_per_class(masks: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean number of 4-connected components of each class over the masks where it appears
    (fragmentation: 1 is a single blob; NaN where the class never appears)."""
    totals, seen = np.zeros(num_classes), np.zeros(num_classes)
    for m in masks:
        for c in np.unique(m):
            _, n = scipy.ndimage.label(m == c)
            totals[c] += n
            seen[c] += 1
    with np.errstate(invalid="ignore"):
        return np.where(seen > 0, totals / np.maximum(seen, 1), np.nan)


def person_extent(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per mask: person (non-background) area fraction, and height of the person's bounding rows as
    a fraction of the image height (0 where there is no person)."""
    person = masks != 0
    area = person.mean(axis=(1, 2))
    rows = person.any(axis=2)
    heights = np.array([(np.flatnonzero(r)[-1] - np.flatnonzero(r)[0] + 1) / len(r) if r.any() else 0.0 for r in rows])
    return area, heights
