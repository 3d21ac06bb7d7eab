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
    totals, seen = component_counts(masks, num_classes)
    return _mean_where_seen(totals, seen)


def component_counts(masks: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class: total 4-connected components over the masks, and the number of masks showing it."""
    totals, seen = np.zeros(num_classes), np.zeros(num_classes)
    for m in masks:
        for c in np.unique(m):
            totals[c] += scipy.ndimage.label(m == c)[1]
            seen[c] += 1
    return totals, seen


def _mean_where_seen(totals: np.ndarray, seen: np.ndarray) -> np.ndarray:
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


class LabelStatistics:
    """The statistics above accumulated over chunks of masks, so any number of masks fits in memory."""

    def __init__(self, num_classes: int):
        self.k = num_classes
        self.pixels = np.zeros(num_classes, np.int64)
        self.components = np.zeros(num_classes)
        self.appearances = np.zeros(num_classes)
        self.classes, self.areas, self.heights = [], [], []

    def update(self, masks: np.ndarray) -> None:
        self.pixels += np.bincount(masks.ravel(), minlength=self.k)
        self.classes.append(classes_per_image(masks, self.k))
        totals, seen = component_counts(masks, self.k)
        self.components += totals
        self.appearances += seen
        area, height = person_extent(masks)
        self.areas.append(area)
        self.heights.append(height)

    @property
    def frequencies(self) -> np.ndarray:
        return self.pixels / max(self.pixels.sum(), 1)

    @property
    def components_per_class(self) -> np.ndarray:
        return _mean_where_seen(self.components, self.appearances)

    def per_image(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(classes per image, person area, person height), one value per mask."""
        return np.concatenate(self.classes), np.concatenate(self.areas), np.concatenate(self.heights)
