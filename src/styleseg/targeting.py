"""Class-targeted sampling: pairs whose masks show chosen classes (a skirt, a coat) at a chosen rate.

The baseline is rejection on the generated mask: draw a pair, look at its mask, keep it if the class
is there. For a class the generator draws in 3 % of its samples that costs ~33 syntheses per pair.
styleseg screens candidates in w-space first: one logistic classifier per class, fit on a bank of
generated pairs, ranks candidate latents by how likely their mask is to show the class, and only the
best of each group of candidates is synthesised. A candidate costs one pass of the mapping network
(a few small matrix products) instead of a synthesis. The generated mask still decides: a pair
counts only if its mask shows the class, so the classifier buys speed and never a wrong label.

A pair *shows* a class when the class covers at least `min_fraction` of its pixels.
Candidates are a pure function of their seeds, so targeted sampling is reproducible.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from styleseg.errors import StylesegError
from styleseg.models.generator import Generator
from styleseg.sampling import seed_z

MIN_FRACTION = 0.005
"""A mask shows a class when the class covers this share of its pixels (15 pixels at 64x48)."""
BANK_SEEDS = 3_000_000_000
"""First seed of the bank a targeter is fit on (far from the seeds pairs are drawn from)."""


def shows(class_ids: torch.Tensor, classes: Sequence[int], min_fraction: float = MIN_FRACTION) -> torch.Tensor:
    """(B, H, W) class ids -> (B, len(classes)) bool: which of `classes` each mask shows."""
    pixels = class_ids.shape[1] * class_ids.shape[2]
    flat = class_ids.reshape(class_ids.shape[0], -1)
    if not len(classes):
        return torch.zeros(flat.shape[0], 0, dtype=torch.bool)
    counts = torch.stack([(flat == c).sum(1) for c in classes], 1)
    return counts >= max(1, round(min_fraction * pixels))


@dataclass
class Candidates:
    """What one targeted draw returns: the kept seeds (one per wanted class, in order), and what it took."""

    seeds: list[int]
    syntheses: int
    screened: int


class ClassTargeter:
    """Per-class logistic classifiers in w-space and the base rates of a generator's classes.

    `psi_of(seeds) -> (n,) tensor` gives each seed's truncation, so that a candidate is screened at
    the truncation it will be drawn with."""

    def __init__(
        self,
        G: Generator,
        synth: Callable[[list[int]], torch.Tensor],
        psi_of: Callable[[list[int]], torch.Tensor],
        classes: Sequence[int],
        names: Sequence[str],
        min_fraction: float = MIN_FRACTION,
    ):
        """synth(seeds) -> (n, H, W) class ids of those seeds' pairs (the caller's growth state and device)."""
        self.G, self.synth, self.psi_of = G, synth, psi_of
        self.classes, self.names, self.min_fraction = list(classes), list(names), min_fraction
        self.weight = torch.zeros(len(self.classes), G.cfg.w_dim)
        self.bias = torch.zeros(len(self.classes))
        self.base_rate = np.zeros(len(self.classes))
        self.any_rate = 0.0
        self.bank_size = 0
        self.fit_seconds = 0.0

    def w_of(self, seeds: Sequence[int]) -> torch.Tensor:
        """(n, w_dim) the truncated w of each seed (float32, on the CPU)."""
        device = self.G.w_avg.device
        with torch.no_grad():
            ws = self.G.styles(seed_z(self.G, seeds, device), self.psi_of(list(seeds)).to(device))
        return ws[:, 0].float().cpu()

    def fit(self, bank: int = 2048, batch: int = 64, min_positives: int = 3, drop_undrawn: bool = False):
        """Draw `bank` pairs, note which classes their masks show, and fit one L2-regularised
        logistic classifier per class on their w (standardised). A class the generator draws fewer
        than `min_positives` times in the bank cannot be asked for: refused, or with `drop_undrawn`
        left out of `classes`."""
        started = time.perf_counter()
        seeds = list(range(BANK_SEEDS, BANK_SEEDS + bank))
        present = torch.cat(
            [shows(self.synth(seeds[i : i + batch]), self.classes, self.min_fraction) for i in range(0, bank, batch)]
        )
        w = self.w_of(seeds)
        positives = present.sum(0)
        if drop_undrawn:
            keep = [k for k in range(len(self.classes)) if positives[k] >= min_positives]
            self.classes, self.names = [self.classes[k] for k in keep], [self.names[k] for k in keep]
            present, positives = present[:, keep], positives[keep]
            self.weight, self.bias = self.weight[keep], self.bias[keep]
        missing = [f"{n} ({int(p)})" for n, p in zip(self.names, positives) if p < min_positives]
        if missing:
            raise StylesegError(
                f"the generator shows {', '.join(missing)} in fewer than {min_positives} of {bank} samples: "
                "it cannot be asked for them (leave them out of --classes)"
            )
        self.base_rate = present.float().mean(0).numpy()
        self.any_rate = float(present.any(1).float().mean())
        self.bank_size = bank
        self.mean, self.std = w.mean(0), w.std(0).clamp_min(1e-6)
        x = (w - self.mean) / self.std
        for k in range(len(self.classes)):
            self.weight[k], self.bias[k] = _logistic_fit(x, present[:, k].float())
        self.fit_seconds = time.perf_counter() - started
        return self

    def scores(self, w: torch.Tensor) -> torch.Tensor:
        """(n, w_dim) -> (n, classes) logits of 'the mask shows the class'."""
        return ((w - self.mean) / self.std) @ self.weight.T + self.bias

    def targeted_share(self, rate: float) -> float:
        """The share of pairs to target so that, with the untargeted rest showing a chosen class at
        the bank's rate, pairs show one at `rate` on average."""
        if self.any_rate >= 1:
            return 0.0
        return float(min(1.0, max(0.0, (rate - self.any_rate) / (1 - self.any_rate))))

    def draw(self, wanted: Sequence[int], seed_blocks: Sequence[int], screen: int = 32, keep: int = 4) -> Candidates:
        """For each wanted class (an index into `classes`), a seed whose pair shows it. Slot j reads
        candidates from seed_blocks[j] on, `screen` per round, synthesises the `keep` that the
        classifier ranks highest, and takes the first (in rank order) whose mask shows the class."""
        found: list[int | None] = [None] * len(wanted)
        syntheses = screened = 0
        for round_ in range(1000):
            open_slots = [j for j, seed in enumerate(found) if seed is None]
            if not open_slots:
                break
            ranked = []
            for j in open_slots:
                first = seed_blocks[j] + round_ * screen
                cands = list(range(first, first + screen))
                order = torch.argsort(self.scores(self.w_of(cands))[:, wanted[j]], descending=True, stable=True)
                ranked.append([cands[i] for i in order[:keep].tolist()])
            flat = [s for r in ranked for s in r]
            screened += screen * len(open_slots)
            syntheses += len(flat)
            hits = shows(self.synth(flat), self.classes, self.min_fraction)
            for slot, (j, cands) in enumerate(zip(open_slots, ranked)):
                for i, seed in enumerate(cands):
                    if hits[slot * keep + i, wanted[j]]:
                        found[j] = seed
                        break
        if any(seed is None for seed in found):
            raise StylesegError("class-targeted sampling found no pair showing the class in 1000 rounds")
        return Candidates([int(s) for s in found], syntheses, screened)

    def describe(self) -> dict:
        """What the targeter is (it keys the segmenter cache, so no timings: see `fit_seconds`)."""
        return {
            "classes": self.names,
            "min_fraction": self.min_fraction,
            "bank": self.bank_size,
            "base_rate": {n: round(float(r), 4) for n, r in zip(self.names, self.base_rate)},
            "any_rate": round(self.any_rate, 4),
        }


def _logistic_fit(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-2, steps: int = 100):
    """Weights and bias of an L2-regularised logistic regression, fit with L-BFGS (full batch)."""
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")
    pos = y.mean().clamp(1e-6, 1 - 1e-6)
    with torch.no_grad():
        b.fill_(float(torch.log(pos / (1 - pos))))

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def targeted_slot(slot: int, share: float, num_classes: int) -> int | None:
    """Which class slot `slot` of a run must show (an index into the targeted classes, in turn), or
    None: a share `share` of all slots is targeted, spread evenly by position, so exactly that share."""
    before = math.floor(slot * share)
    return before % num_classes if math.floor((slot + 1) * share) > before else None


def class_ids_for(names: Sequence[str], classes: Sequence[str]) -> list[int]:
    """Ids of class `names` in a class list, with an error that lists the known names."""
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise StylesegError(f"unknown classes {unknown}; this model's classes are {list(classes)}")
    if "background" in names:
        raise StylesegError("background cannot be targeted: every pair shows it")
    return [list(classes).index(n) for n in names]
