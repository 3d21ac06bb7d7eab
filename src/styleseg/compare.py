"""`styleseg compare`: the key figures of several evaluations side by side, and whether each
difference from the first evaluation exceeds the spread the evaluations themselves measured.

Usefulness: Welch's 95 % interval of the difference of seed means (the runs' segmenters share seeds
but not generated data, so the samples are treated as independent). KID: the difference against
the root sum of squares of the two subset standard deviations. Agreement is shown with its
bootstrap interval where the evaluation measured one; FD and label statistics as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.stats

from styleseg.errors import StylesegError
from styleseg.report import interval_bounds
from styleseg.viz import figure_img_tag


def load_metrics(folder: Path) -> dict:
    path = Path(folder) / "metrics.json"
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise StylesegError(f"{path}: missing; {folder} is not an evaluation folder") from exc
    except ValueError as exc:
        raise StylesegError(f"{path}: corrupt JSON ({exc})") from exc
    if m.get("evaluate_version", 1) < 2:
        raise StylesegError(f"{path}: written by an older `styleseg evaluate` (no seeds); evaluate again")
    return m


def welch_interval(a: list[float], b: list[float], confidence: float = 0.95) -> tuple[float, float, float] | None:
    """(mean(b) - mean(a), low, high), or None with fewer than two values on a side."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(b.mean() - a.mean())
    se = np.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, dof) * se)
    return diff, diff - half, diff + half


def with_interval(value: float, agreement: dict, name: str) -> float | str:
    """'0.493 [0.483, 0.501]' where the evaluation measured a bootstrap interval, the rounded value otherwise."""
    bounds = interval_bounds(agreement, name, 3)
    return f"{value:.3f}{bounds}" if bounds else round(value, 3)


def compare_rows(metrics: list[dict]) -> tuple[list[str], list[list]]:
    """Header and rows: one row per figure, one column per evaluation, then the verdict of each
    evaluation against the first."""
    first = metrics[0]
    rows: list[list] = []

    def plain(label, get):
        rows.append([label] + [get(m) for m in metrics] + ["" for _ in metrics[1:]])

    plain("kimg", lambda m: round(m["kimg"], 1))
    plain("reference segmenter mIoU (ceiling)", lambda m: round(m["segmenter"]["val"]["miou"], 3))
    plain("agreement mIoU", lambda m: with_interval(m["agreement"]["miou"], m["agreement"], "miou"))
    plain("agreement / ceiling", lambda m: with_interval(m["agreement"]["ratio_to_ceiling"], m["agreement"], "ratio"))
    for name in first["usefulness"]:
        if not all(name in m["usefulness"] for m in metrics):
            continue
        cells = [
            f"{m['usefulness'][name]['val']['mean']:.3f} ± {m['usefulness'][name]['val']['std']:.3f}" for m in metrics
        ]
        verdicts = []
        for m in metrics[1:]:
            w = welch_interval(first["usefulness"][name]["val"]["values"], m["usefulness"][name]["val"]["values"])
            if w is None:
                verdicts.append("too few seeds")
            else:
                beyond = w[1] > 0 or w[2] < 0
                verdicts.append(f"{w[0]:+.3f} [{w[1]:+.3f}, {w[2]:+.3f}] {'beyond' if beyond else 'within'} spread")
        rows.append([f"usefulness: {name}"] + cells + verdicts)
    for key, label in (("kid_image", "KID image (held-out)"), ("kid_image_mask", "KID image+mask (held-out)")):
        cells = [f"{m['realism']['held_out'][key]:.4f} ± {m['realism']['held_out'][key + '_std']:.4f}" for m in metrics]
        verdicts = []
        for m in metrics[1:]:
            a, b = first["realism"]["held_out"], m["realism"]["held_out"]
            diff, spread = b[key] - a[key], float(np.hypot(a[key + "_std"], b[key + "_std"]))
            verdicts.append(f"{diff:+.4f} ({'beyond' if abs(diff) > 2 * spread else 'within'} 2x spread {spread:.4f})")
        rows.append([label] + cells + verdicts)
    plain("FD image (held-out)", lambda m: round(m["realism"]["held_out"]["fd_image"], 3))
    plain("FD image+mask (held-out)", lambda m: round(m["realism"]["held_out"]["fd_image_mask"], 3))
    plain("JS class frequencies (bits)", lambda m: round(m["labels"]["js_divergence_bits"], 4))
    plain(
        "person area gen / real",
        lambda m: round(m["labels"]["person_area"]["generated"] / m["labels"]["person_area"]["real"], 3),
    )
    plain(
        "person height gen / real",
        lambda m: round(m["labels"]["person_height"]["generated"] / m["labels"]["person_height"]["real"], 3),
    )
    header = ["figure"] + [f"[{i}]" for i in range(len(metrics))] + [f"[{i}] vs [0]" for i in range(1, len(metrics))]
    return header, rows


def plot_usefulness(metrics: list[dict], labels: list[str]) -> str:
    """An inline PNG of usefulness means and seeds per evaluation, or '' without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ""

    names = [n for n in metrics[0]["usefulness"] if all(n in m["usefulness"] for m in metrics)]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(names)), 3.6))
    width = 0.8 / len(metrics)
    for i, (m, label) in enumerate(zip(metrics, labels)):
        x = np.arange(len(names)) + i * width
        ax.bar(
            x,
            [m["usefulness"][n]["val"]["mean"] for n in names],
            width,
            yerr=[m["usefulness"][n]["val"]["std"] for n in names],
            capsize=3,
            label=label,
        )
    ax.set_xticks(np.arange(len(names)) + width * (len(metrics) - 1) / 2, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("segmenter mIoU (val)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return figure_img_tag(fig, "usefulness")
