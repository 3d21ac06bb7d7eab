"""Confusion-matrix based segmentation metrics."""

from __future__ import annotations

import numpy as np


def confusion_matrix(target: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts, rows = target class, columns = predicted class."""
    return sample_confusion_matrices(target.reshape(1, -1), pred.reshape(1, -1), num_classes)[0]


def sample_confusion_matrices(target: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, K, K) counts, one confusion matrix per pair of maps (rows = target class)."""
    n, k2 = len(target), num_classes**2
    t, p = target.astype(np.int64).reshape(n, -1), pred.astype(np.int64).reshape(n, -1)
    flat = (t * num_classes + p + k2 * np.arange(n)[:, None]).ravel()
    return np.bincount(flat, minlength=n * k2).reshape(n, num_classes, num_classes)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """IoU per class of a (..., K, K) confusion matrix (or a stack of them); NaN for a class absent
    from both target and prediction (it is not scored)."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(np.float64)
    union = cm.sum(-2) + cm.sum(-1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(cm: np.ndarray) -> float:
    """Mean over the classes present in target or prediction."""
    return float(np.nanmean(iou_per_class(cm)))


def ratio_over_shared_classes(
    scores: dict[str, float | None], ceiling: dict[str, float | None]
) -> tuple[float | None, list[str]]:
    """Mean IoU of `scores` over mean IoU of `ceiling`, both over the classes each one scores (None/NaN
    where a class occurs in neither mask). A plain ratio of two mIoUs compares means over different
    class sets when a rare class drops out of one (e.g. fewer generated samples): it then moves with n."""
    shared = [
        c for c in scores if c in ceiling and all(v is not None and np.isfinite(v) for v in (scores[c], ceiling[c]))
    ]
    if not shared:
        return None, []
    mean_ceiling = float(np.mean([ceiling[c] for c in shared]))
    return float(np.mean([scores[c] for c in shared])) / max(mean_ceiling, 1e-9), shared


def excess_confusions(
    generated: np.ndarray, real: np.ndarray, names, limit: int = 3, min_excess: float = 0.05
) -> list[dict]:
    """Where the masks and the images part ways: for class c and another class j, the share of c's
    generated mask pixels that the reference reads as j, against the same share on real masks (the
    reference's own habit, e.g. its skirt/pants mix-ups). Returns the `limit` largest excesses of at
    least `min_excess`, largest first; a class absent from either mask set is skipped."""
    with np.errstate(invalid="ignore", divide="ignore"):
        gen_share = generated / generated.sum(1, keepdims=True)
        real_share = real / real.sum(1, keepdims=True)
    excess = gen_share - real_share
    np.fill_diagonal(excess, np.nan)
    excess = np.where(np.isfinite(excess), excess, -np.inf)
    found = []
    for flat in np.argsort(-excess, axis=None, kind="stable")[:limit]:
        c, j = np.unravel_index(flat, excess.shape)
        if excess[c, j] < min_excess:
            break
        found.append(
            {
                "class": names[c],
                "read_as": names[j],
                "generated": round(float(gen_share[c, j]), 4),
                "real": round(float(real_share[c, j]), 4),
                "generated_pixels": int(generated[c].sum()),
            }
        )
    return found


def confusion_text(found: list[dict]) -> str:
    """'legs read as arms 42 % (real 6 %; 8015 px); ...' for the printed summary. The pixel count
    says how much to trust a share: a class drawn on a few dozen pixels gives a noisy one."""
    return "; ".join(
        f"{f['class']} read as {f['read_as']} {100 * f['generated']:.0f} % (real {100 * f['real']:.0f} %; "
        f"{f['generated_pixels']} px)"
        for f in found
    )


def pixel_accuracy(cm: np.ndarray) -> float:
    return float(np.diag(cm).sum() / max(cm.sum(), 1))


def per_sample_miou(target: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(N,) mIoU of each pair of (H, W) maps, over the classes present in either map of that pair."""
    return miou_each(sample_confusion_matrices(target, pred, num_classes))


def miou_each(sums: np.ndarray) -> np.ndarray:
    """(D, K, K) confusion matrices -> (D,) mIoU of each, over the classes present in it."""
    return np.nanmean(iou_per_class(sums), axis=-1)


def scored_classes(cm: np.ndarray) -> np.ndarray:
    """(K,) bool: the classes a (K, K) confusion matrix scores (present in its masks or predictions)."""
    return np.isfinite(iou_per_class(cm))


def miou_over(sums: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """(..., K, K) confusion matrices -> mIoU over the classes `scored` (K,) bool marks, a scored
    class found in neither the masks nor the predictions of a matrix counting 0. Agreement is taken
    over the classes the ceiling scores: a generator that stops drawing a class the real data has
    must lose that class's share of the mean, not shed it from the mean (which would raise it)."""
    return np.nan_to_num(iou_per_class(sums), nan=0.0)[..., scored].mean(-1)


def bootstrap_miou(
    samples: np.ndarray, draws: int, rng: np.random.Generator, scored: np.ndarray | None = None
) -> np.ndarray:
    """(draws,) mIoU of the whole set resampled with replacement: `samples` are the (N, K, K)
    confusion matrices of its samples. A dataset-level mIoU is not a mean over samples, so the
    interval comes from resampling samples and re-summing their matrices. With `scored`, the mean
    is `miou_over` those classes; without, over the classes each resample has."""
    n = len(samples)
    counts = rng.multinomial(n, np.full(n, 1 / n), size=draws)  # (draws, N): how often each sample is drawn
    sums = (counts @ samples.reshape(n, -1).astype(np.float64)).reshape(draws, *samples.shape[1:])
    return miou_each(sums) if scored is None else miou_over(sums, scored)


def agreement_interval(
    generated: np.ndarray, real: np.ndarray, draws: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
    """Percentile bootstrap intervals of the agreement mIoU (resampling the generated pairs; over
    the classes the whole real set scores, as `miou_over`), of the ceiling (resampling the real
    validation images) and of their ratio (both at once). With rare classes the ceiling's interval
    is the wide one: a class seen on a few images of the validation split moves its mIoU, and the
    ratio, as much as the background does, and a resample without those images drops the class from
    the mean (so the interval can be lopsided)."""
    rng = np.random.default_rng(seed)
    scored = scored_classes(real.sum(0))
    agreement, ceiling = bootstrap_miou(generated, draws, rng, scored), bootstrap_miou(real, draws, rng)
    tails = [50 * (1 - level), 100 - 50 * (1 - level)]

    def bounds(values):
        return [round(float(v), 4) for v in np.nanpercentile(values, tails)]

    return {
        "miou": bounds(agreement),
        "ceiling": bounds(ceiling),
        "ratio": bounds(agreement / ceiling),
        "level": level,
        "draws": draws,
    }
