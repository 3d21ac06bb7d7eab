"""Usefulness of generated pairs: which training sets to compare, and paired statistics over seeds.

Each regime trains the same segmenter (architecture, budget rule, augmentation) on a different
training set, once per seed; a regime is compared with its real-only baseline seed by seed (same
seed, same real samples), and the mean paired difference gets a 95 % Student-t interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.stats


@dataclass(frozen=True)
class Regime:
    name: str
    real: str | int | None
    """'all' (the whole labeled train split), N (N real samples, drawn per seed), or None."""
    generated: bool
    """Whether generated pairs are part of the training set."""
    finetune: bool = False
    """Pre-train on generated pairs alone, then fine-tune on the real part."""
    baseline: str | None = None
    """Regime this one is compared with, seed by seed."""
    streamed: bool = False
    """The generated pairs are drawn fresh at every step from the generator (styleseg.stream), not
    read from a fixed set of written pairs."""


def regimes(low_labels: list[int], with_generated: bool = True, with_stream: bool = False) -> list[Regime]:
    """The standard set: real, generated, real+generated, and for each N: N real, N real+generated,
    generated -> N real (pre-train, fine-tune); with a stream, the same with 'streamed' pairs, and
    streamed -> real."""
    kinds = (["generated"] if with_generated else []) + (["streamed"] if with_stream else [])
    out = [Regime("real", "all", False)]
    for kind in kinds:
        streamed = kind == "streamed"
        out += [
            Regime(kind, None, True, baseline="real", streamed=streamed),
            Regime(f"real+{kind}", "all", True, baseline="real", streamed=streamed),
        ]
        if streamed:  # pre-training costs nothing extra once the 'streamed' segmenter exists
            out.append(Regime(f"{kind}->real", "all", True, True, baseline="real", streamed=True))
    for n in low_labels:
        out.append(Regime(f"{n} real", n, False))
        for kind in kinds:
            streamed = kind == "streamed"
            out.append(Regime(f"{n} real+{kind}", n, True, baseline=f"{n} real", streamed=streamed))
            out.append(Regime(f"{kind}->{n} real", n, True, True, baseline=f"{n} real", streamed=streamed))
    return out


def summarize(values: list[float]) -> dict:
    v = np.asarray(values, np.float64)
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
        "n_seeds": len(v),
        "values": [float(x) for x in v],
    }


def paired_difference(values: list[float], baseline: list[float], confidence: float = 0.95) -> dict:
    """Mean of (value - baseline) over paired seeds with its Student-t interval. With one seed the
    interval is undefined (None)."""
    d = np.asarray(values, np.float64) - np.asarray(baseline, np.float64)
    k = len(d)
    mean = float(d.mean())
    if k < 2:
        return {"mean": mean, "low": None, "high": None, "n_seeds": k}
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, k - 1) * d.std(ddof=1) / np.sqrt(k))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n_seeds": k, "confidence": confidence}


def verdict(diff: dict) -> str:
    """'helps', 'hurts' or 'no clear difference', from whether the interval excludes zero."""
    if diff.get("low") is None:
        return "one seed: no interval"
    if diff["low"] > 0:
        return "helps"
    if diff["high"] < 0:
        return "hurts"
    return "no clear difference"
