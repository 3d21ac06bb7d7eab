"""The label budget: which labelled samples a run keeps (`data.max_labeled`), and which ones a
low-label segmenter trains on."""

from __future__ import annotations

import numpy as np

from styleseg.errors import StylesegError


def labels_to_keep(labeled: np.ndarray, max_labeled: float | None, seed: int) -> np.ndarray:
    """The sorted subset of `labeled` (sample indices) a run keeps: all of them (None), a count
    (>= 1), or a fraction (0 < f < 1, rounded, at least one). A pure function of its arguments, so
    the same run configuration keeps the same samples on every machine and at every resume."""
    labeled = np.sort(np.asarray(labeled, np.int64))
    if max_labeled is None:
        return labeled
    n = int(max_labeled) if max_labeled >= 1 else max(1, round(max_labeled * len(labeled)))
    if n > len(labeled):
        raise StylesegError(f"data.max_labeled={max_labeled:g} asks for more labels than the {len(labeled)} there are")
    order = np.random.default_rng([seed, 0x1ABE1]).permutation(len(labeled))
    return np.sort(labeled[order[:n]])


def segmenter_labels(train_idx: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The sorted n (at most all) of `train_idx` that a segmenter of `seed` trains on under a budget of
    n labels (`segmenter train --labels`, `evaluate`'s low-label regimes): one rule, so the same seed
    and budget give the same photos in both."""
    pick = np.random.default_rng([seed, int(n)]).choice(train_idx, min(int(n), len(train_idx)), False)
    return np.sort(pick)
