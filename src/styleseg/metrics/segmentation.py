"""Confusion-matrix based segmentation metrics."""

from __future__ import annotations

import numpy as np


def confusion_matrix(target: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts, rows = target class, columns = predicted class."""
    t, p = target.astype(np.int64).ravel(), pred.astype(np.int64).ravel()
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """IoU per class; NaN for a class absent from both target and prediction (it is not scored)."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(cm: np.ndarray) -> float:
    """Mean over the classes present in target or prediction."""
    return float(np.nanmean(iou_per_class(cm)))


def pixel_accuracy(cm: np.ndarray) -> float:
    return float(np.diag(cm).sum() / max(cm.sum(), 1))


def per_sample_miou(target: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(N,) mIoU of each pair of (H, W) maps, over the classes present in either map of that pair."""
    return np.array([mean_iou(confusion_matrix(t, p, num_classes)) for t, p in zip(target, pred)])
