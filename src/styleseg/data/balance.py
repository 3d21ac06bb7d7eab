"""Class balance of a prepared dataset: which classes each sample shows, and LVIS repeat factors
that oversample the samples showing rare classes. Shared by GAN training and segmenter training."""

from __future__ import annotations

import numpy as np

from styleseg.data.store import PreparedDataset

CHUNK = 256  # samples per read when streaming a dataset (presence here, scoring and embedding in metrics)


def class_presence(ds: PreparedDataset, idx: np.ndarray, num_classes: int) -> np.ndarray:
    """(len(idx), num_classes) bool: which classes each sample's mask shows, read in chunks."""
    out = np.zeros((len(idx), num_classes), bool)
    idx = np.asarray(idx, np.int64)
    for start in range(0, len(idx), CHUNK):
        masks = np.asarray(ds.masks[idx[start : start + CHUNK]]).reshape(-1, ds.masks.shape[1] * ds.masks.shape[2])
        # one bincount per chunk: the row offset makes each sample's class ids its own bins
        ids = masks.astype(np.int64) + num_classes * np.arange(len(masks))[:, None]
        counts = np.bincount(ids.ravel(), minlength=len(masks) * num_classes)
        out[start : start + len(masks)] = counts.reshape(len(masks), num_classes) > 0
    return out


def repeat_factors(presence: np.ndarray, threshold: float) -> np.ndarray:
    """LVIS repeat factors: per image, the largest max(1, sqrt(t / f_c)) over the classes c it shows,
    f_c the share of images showing c."""
    share = presence.mean(axis=0)
    per_class = np.maximum(1.0, np.sqrt(threshold / np.maximum(share, 1e-12)))
    return np.where(presence, per_class, 1.0).max(axis=1)


def sampler_repeat_factors(
    ds: PreparedDataset, train_photos: np.ndarray, labeled: np.ndarray, num_classes: int, threshold: float
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Repeat factors of a GAN run's photo and pair samplers under a repeat threshold, from the
    labelled samples' class presence (unlabelled photos keep 1), and what to record about them.
    `labeled` must be sorted."""
    pairs = repeat_factors(class_presence(ds, labeled, num_classes), threshold)
    photos = np.ones(len(train_photos))
    is_pair = np.isin(train_photos, labeled)
    photos[is_pair] = pairs[np.searchsorted(labeled, train_photos[is_pair])]
    record = {
        "repeat_threshold": threshold,
        "repeat_factor_max": round(float(pairs.max()), 3),
        "repeated_share": round(float((pairs > 1).mean()), 4),
        "epoch_growth": round(float(pairs.mean()), 4),
    }
    return photos, pairs, record
