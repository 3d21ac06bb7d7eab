"""Training the reference segmenter (`segmenter.py`) on real labels, on pairs streamed from a
generator, or both; and the cache of trained segmenters.

A batch holds real samples (drawn from the pool of (dataset, index) pairs, rare classes favoured
under `repeat_threshold`) and, with a `SyntheticSource`, `synthetic_share` of fresh generated pairs
(taken from the batch, or added on top of a full real one under `synthetic_on_top`):
a new pair at every step, never repeated. A generated pair teaches through its mask as
`synthetic_target` says: the generator's own class probabilities (soft targets), their argmax, or
the argmax weighted by (or cut at) the generator's confidence.

A run can be stopped at any point and resumed: with a `checkpoint` file, the state (weights,
optimiser, schedule, weight average, best weights so far, and the two random generators that pick
real samples and augmentations) is written every `checkpoint_every` steps; the synthetic pairs of a
step are a function of the step alone, so a resumed run ends with the weights an uninterrupted one
ends with. The cache (`cached_segmenter`) keeps such a checkpoint beside each segmenter it is
training, so running the same command again after an interruption picks up where it stopped.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from styleseg.data.balance import CHUNK, class_presence, repeat_factors
from styleseg.data.pixels import to_signed
from styleseg.data.store import PreparedDataset
from styleseg.errors import CheckpointError, StylesegError
from styleseg.metrics.segmenter import autocast_for, load_segmenter, save_segmenter, score_segmenter
from styleseg.metrics.segnet import ResUNet
from styleseg.options import STREAM_ONLY, SegmenterConfig

# options whose "off" value is 0, False or empty
_ADDED_LATER = ("dice_weight", "repeat_threshold", "weight_ema", "synthetic_on_top", "synthetic_blind", "class_mix")


@dataclass
class SyntheticBatch:
    """Generated pairs for one step, on the training device."""

    images: torch.Tensor  # (n, 3, H, W) float in [-1, 1], quantised as an 8-bit PNG would be
    probs: torch.Tensor  # (n, K, H, W) the generator's class probabilities
    seeds: list[int] = field(default_factory=list)  # the generator seed of each pair


class SyntheticSource(Protocol):
    """Where synthetic pairs come from (`styleseg.stream.PairStream`): pairs that are a function of
    the step and the position in it, so that a resumed run draws what an uninterrupted one drew."""

    def draw(self, step: int, n: int) -> SyntheticBatch: ...

    def describe(self) -> dict:
        """What identifies the pairs (generator digest, options): part of the cache key."""
        ...


def _augment_params(b: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Per sample: a scale (0.8-1.25) and translation (10 %) as an affine matrix, and brightness,
    contrast and saturation factors."""
    scale = torch.exp(torch.empty(b).uniform_(math.log(0.8), math.log(1.25), generator=gen))
    shift = torch.empty(b, 2).uniform_(-0.1, 0.1, generator=gen)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = shift * 2
    bright = (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.4
    contrast = 1 + (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.6
    sat = 1 + (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.6
    return {"theta": theta, "bright": bright, "contrast": contrast, "sat": sat}


def _augment(x: torch.Tensor, masks: torch.Tensor | None, probs: torch.Tensor | None, gen: torch.Generator):
    """One grid per sample for image (bilinear), label masks (nearest) and soft targets (bilinear);
    then brightness, contrast and saturation on the image. masks covers the first rows of x, probs
    the last ones (real samples, then synthetic ones)."""
    p = {k: v.to(x.device) for k, v in _augment_params(x.shape[0], gen).items()}
    grid = F.affine_grid(p["theta"], list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if masks is not None:
        n = masks.shape[0]
        masks = F.grid_sample(
            masks[:, None].float(), grid[:n], mode="nearest", padding_mode="border", align_corners=False
        )[:, 0]
        masks = masks.round().long()
    if probs is not None:
        n = probs.shape[0]
        probs = F.grid_sample(probs, grid[-n:], mode="bilinear", padding_mode="border", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * p["contrast"] + mean + p["bright"]
    luma = x.mean(dim=1, keepdim=True)
    return torch.lerp(luma, x, p["sat"]), masks, probs


class ClassMix(NamedTuple):
    """What `paste_real_classes` returns: the batch's images and the generated rows' targets after
    pasting, each generated row's donor (its real row, or None), and which generated pixels now
    carry a real label (n_syn, H, W)."""

    images: torch.Tensor
    probs: torch.Tensor
    donors: list[int | None]
    pasted: torch.Tensor


def paste_real_classes(
    x: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor, share: float, gen: torch.Generator
) -> ClassMix:
    """ClassMix across domains (`SegmenterConfig.class_mix`): x holds the real rows (class ids
    `labels`) and then the generated ones (class probabilities `probs`). Each generated row, with
    probability `share`, takes a real row of the batch (drawn uniformly) and half of the classes its
    label shows, rounded up, background aside (so the generated person keeps its place and the real
    one's parts land on it rather than a real backdrop over it): those pixels' image and target
    become the real row's (its label as a one-hot target). The inputs are left as they were."""
    n_real, n_syn, k = labels.shape[0], probs.shape[0], probs.shape[1]
    chosen = (torch.rand(n_syn, generator=gen) < share).tolist()
    donors = torch.randint(0, n_real, (n_syn,), generator=gen).tolist()
    keys = torch.rand(n_syn, k, generator=gen)  # a random order of the classes, per row
    x, probs, used = x.clone(), probs.clone(), [None] * n_syn
    real_pixels = torch.zeros(n_syn, *probs.shape[2:], dtype=torch.bool, device=probs.device)
    for i in (i for i in range(n_syn) if chosen[i]):
        label = labels[donors[i]]
        shown = [c for c in label.unique().tolist() if c != 0]
        if not shown:
            continue
        order = sorted(shown, key=lambda c: float(keys[i, c]))
        pasted = torch.isin(label, torch.tensor(order[: (len(shown) + 1) // 2], device=label.device))
        x[n_real + i][:, pasted] = x[donors[i]][:, pasted]
        probs[i][:, pasted] = F.one_hot(label[pasted], k).T.to(probs.dtype)
        used[i], real_pixels[i] = donors[i], pasted
    return ClassMix(x, probs, used, real_pixels)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """1 - mean soft Dice over the classes present in the batch's targets (absent classes are left
    out: their Dice is undefined and rewarding empty predictions would say nothing). target: (B, H, W)
    class ids, or (B, K, H, W) probabilities (soft targets; a class is present where it is the most
    likely one somewhere); weight: (B, H, W) per-pixel weights."""
    probs = logits.softmax(1)
    k = logits.shape[1]
    hard = target if target.dtype == torch.long else target.argmax(1)
    onehot = F.one_hot(hard, k).permute(0, 3, 1, 2).to(probs.dtype)
    soft = onehot if target.dtype == torch.long else target.to(probs.dtype)
    if weight is not None:
        probs, soft, onehot = probs * weight[:, None], soft * weight[:, None], onehot * weight[:, None]
    inter = (probs * soft).sum(dim=(0, 2, 3))
    total = probs.sum(dim=(0, 2, 3)) + soft.sum(dim=(0, 2, 3))
    present = onehot.sum(dim=(0, 2, 3)) > 0
    dice = 2 * inter[present] / total[present].clamp_min(1e-6)
    return 1 - dice.mean()


def synthetic_targets(probs: torch.Tensor, mode: str, min_confidence: float):
    """(target, weight) of generated pairs: the probabilities themselves ('soft'), or their argmax
    with a per-pixel weight: 1 ('hard'), the top probability ('weighted'), or whether it reaches
    min_confidence ('confident')."""
    if mode == "soft":
        return probs, None
    top, labels = probs.max(1)
    if mode == "hard":
        return labels, None
    if mode == "weighted":
        return labels, top
    return labels, (top >= min_confidence).to(probs.dtype)


def segmentation_loss(
    logits,
    labels,
    syn_target=None,
    syn_weight=None,
    dice_weight: float = 0.0,
    blind: Sequence[int] = (),
    syn_real: torch.Tensor | None = None,
):
    """Cross-entropy (+ dice_weight x soft Dice) of a batch whose first rows have class ids `labels`
    and whose last rows have synthetic targets (class ids or probabilities) with optional weights.
    `blind`: classes the generated pixels say nothing about: their logits are left out of those
    pixels' softmax (no gradient either way), so a class the generator never draws is not taught as
    absent, and a pixel counts as much as its target is not a blind class. `syn_real` (n_syn, H, W):
    the synthetic rows' pixels that carry a real label (`paste_real_classes`), which the blind
    classes' rule spares: a pasted coat is a coat."""
    logits = logits.float()
    if syn_target is None:
        loss = F.cross_entropy(logits, labels)
        return loss + dice_weight * soft_dice_loss(logits, labels) if dice_weight else loss
    k = logits.shape[1]
    parts = []
    if labels is not None and len(labels):
        parts.append(F.one_hot(labels, k).permute(0, 3, 1, 2).float())
    n_syn = syn_target.shape[0]
    soft = syn_target if syn_target.dtype != torch.long else F.one_hot(syn_target, k).permute(0, 3, 1, 2).float()
    if blind:  # a generated pixel says nothing about the blind classes, and counts as much as it is not one
        blind_idx = torch.as_tensor(list(blind), device=soft.device)
        generated = torch.ones_like(soft[:, 0], dtype=torch.bool) if syn_real is None else ~syn_real
        seen = torch.where(generated, 1 - soft.index_select(1, blind_idx).sum(1), 1.0)  # (n_syn, H, W)
        syn_weight = seen if syn_weight is None else syn_weight * seen
        without = soft.index_fill(1, blind_idx, 0.0)
        soft = torch.where(generated[:, None], without / without.sum(1, keepdim=True).clamp_min(1e-12), soft)
        # out of the generated pixels' softmax, so out of their cross-entropy and Dice alike
        hidden = torch.zeros(len(logits), k, *logits.shape[2:], dtype=torch.bool, device=logits.device)
        hidden[-n_syn:, list(blind)] = generated[:, None]
        logits = logits.masked_fill(hidden, float("-inf"))
    target = torch.cat(parts + [soft]) if parts else soft
    weight = torch.ones(target.shape[0], *target.shape[2:], device=logits.device)
    if syn_weight is not None:
        weight[-n_syn:] = syn_weight
    log_probs = logits.log_softmax(1).clamp_min(torch.finfo(torch.float32).min)  # -inf only where target is 0
    ce = -(target * log_probs).sum(1)  # (B, H, W)
    loss = (ce * weight).sum() / weight.sum().clamp_min(1e-6)
    return loss + dice_weight * soft_dice_loss(logits, target, weight) if dice_weight else loss


def _gather(datasets, which: np.ndarray, idx: np.ndarray, flips: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples idx[k] of datasets[which[k]], in order, read with one batched load per dataset."""
    images = masks = None
    for d, (ds, _) in enumerate(datasets):
        slots = np.flatnonzero(which == d)
        if not len(slots):
            continue
        im, m = ds.load_batch(idx[slots], flips[slots])
        if images is None:
            images = im.new_empty((len(idx), *im.shape[1:]))
            masks = m.new_empty((len(idx), *m.shape[1:]))
        images[slots], masks[slots] = im, m
    return images, masks


def sampling_probabilities(datasets, pool_ds: np.ndarray, cfg: SegmenterConfig, weights, log=print):
    """Each pool entry's chance of being drawn, or None for uniform draws. `weights` gives each
    dataset's share (spread over its samples); `cfg.repeat_threshold` then favours, within each
    dataset, the images that show rare classes."""
    if weights is None and not cfg.repeat_threshold:
        return None
    if weights is None:
        weights = [len(idx) for _, idx in datasets]
    if len(weights) != len(datasets) or min(weights) < 0 or sum(weights) <= 0:
        raise StylesegError(f"segmenter batch shares {weights} do not fit {len(datasets)} training sets")
    share = np.asarray(weights, np.float64) / sum(weights)
    pool_p = np.zeros(len(pool_ds))
    for d, (ds, idx) in enumerate(datasets):
        if cfg.repeat_threshold:
            factors = repeat_factors(class_presence(ds, idx, cfg.num_classes), cfg.repeat_threshold)
            log(
                f"  rare-class oversampling on {ds.root.name}: repeat factors 1 to {factors.max():.2f}, "
                f"{(factors > 1).mean():.1%} of images above 1"
            )
        else:
            factors = np.ones(len(idx))
        pool_p[pool_ds == d] = share[d] * factors / max(factors.sum(), 1e-12)
    return pool_p / pool_p.sum()


class _Progress:
    """A training run's state between steps, written to and read from one checkpoint file."""

    def __init__(self, model, opt, sched, averaged, rng: np.random.Generator, gen: torch.Generator):
        self.model, self.opt, self.sched, self.averaged, self.rng, self.gen = model, opt, sched, averaged, rng, gen
        self.step, self.stale, self.seconds, self.synthetic_seconds = 0, 0, 0.0, 0.0
        self.best = {"miou": -1.0, "step": 0, "state": None}

    def save(self, path: Path) -> None:
        state = {
            "step": self.step,
            "stale": self.stale,
            "seconds": self.seconds,
            "synthetic_seconds": self.synthetic_seconds,
            "best_miou": self.best["miou"],
            "best_step": self.best["step"],
            "best_state": self.best["state"],
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "averaged": None if self.averaged is None else self.averaged.state_dict(),
            "rng": json.dumps(self.rng.bit_generator.state),
            "gen": self.gen.get_state(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(state, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["opt"])
            self.sched.load_state_dict(state["sched"])
            if self.averaged is not None:
                self.averaged.load_state_dict(state["averaged"])
            self.rng.bit_generator.state = json.loads(state["rng"])
            self.gen.set_state(state["gen"])
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: cannot resume segmenter training from it ({exc})") from exc
        self.step, self.stale = int(state["step"]), int(state["stale"])
        self.seconds, self.synthetic_seconds = float(state["seconds"]), float(state["synthetic_seconds"])
        self.best = {"miou": state["best_miou"], "step": state["best_step"], "state": state["best_state"]}


def batch_split(cfg: SegmenterConfig, has_real: bool, has_synthetic: bool) -> tuple[int, int]:
    """Real and generated samples per step: `cfg.batch` of one kind when there is only one; with
    both, the generated share taken from the batch, or added on top of a full real batch
    (`synthetic_on_top`) so that it is the same share of a larger one."""
    if not has_synthetic:
        return cfg.batch, 0
    if not has_real:
        return 0, cfg.batch
    if cfg.synthetic_on_top:
        return cfg.batch, round(cfg.synthetic_share / (1 - cfg.synthetic_share) * cfg.batch)
    n_syn = round(cfg.synthetic_share * cfg.batch)
    return cfg.batch - n_syn, n_syn


def train_segmenter(
    datasets: list[tuple[PreparedDataset, np.ndarray]],
    cfg: SegmenterConfig,
    device: torch.device,
    select: tuple[PreparedDataset, np.ndarray] | None,
    log=print,
    weights: list[float] | None = None,
    init: dict | None = None,
    synthetic: SyntheticSource | None = None,
    checkpoint: Path | None = None,
    checkpoint_every: int = 100,
) -> tuple[ResUNet, dict]:
    """Train on the union of (dataset, sample indices), all of one resolution and class map, and on
    pairs from `synthetic` (a share `cfg.synthetic_share` of each batch, or all of it without real
    samples); stop on the mIoU of `select` (a dataset and indices), keeping the best weights.
    `weights` gives each dataset's share of the real part of every batch (default: in proportion to
    its size); `init` a state dict to start from (fine-tuning); `checkpoint` a file to write the
    state to every `checkpoint_every` steps and to resume from when it exists. Returns the model and
    its budget: steps run, best step, selection mIoU, seconds (and the generator's share of them)."""
    res = {ds.resolution for ds, _ in datasets}
    if len(res) > 1:
        raise StylesegError(f"segmenter training sets differ in resolution: {sorted(res)}")
    # The pool of real samples as two parallel arrays: which dataset, which index in it.
    pool_ds = np.concatenate([np.full(len(idx), d) for d, (_, idx) in enumerate(datasets)] + [np.zeros(0, int)])
    pool_idx = np.concatenate([np.asarray(idx, np.int64) for _, idx in datasets] + [np.zeros(0, np.int64)])
    if not len(pool_idx) and synthetic is None:
        raise StylesegError("segmenter training set is empty")
    n_real, n_syn = batch_split(cfg, bool(len(pool_idx)), synthetic is not None)
    torch.manual_seed(cfg.seed)
    model = ResUNet(cfg.num_classes, cfg.width).to(device)
    if init is not None:
        model.load_state_dict(init)
    pool_p = sampling_probabilities(datasets, pool_ds, cfg, weights, log) if n_real else None
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = min(100, cfg.max_steps // 10)

    def lr_at(step: int) -> float:  # linear warm-up, then cosine decay over max_steps
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(cfg.max_steps - warmup, 1)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    # torch's own weight averaging; use_buffers averages batch-norm statistics along with the weights
    averaged = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.weight_ema), use_buffers=True)
        if cfg.weight_ema
        else None
    )
    run = _Progress(
        model, opt, sched, averaged, np.random.default_rng(cfg.seed), torch.Generator().manual_seed(cfg.seed)
    )
    if checkpoint is not None and checkpoint.exists():
        run.load(checkpoint)
        log(f"  resumed segmenter training at step {run.step} from {checkpoint}")
    autocast = autocast_for(cfg.dtype, device)
    scored = model if averaged is None else averaged.module
    session_start, seconds_before = time.perf_counter(), run.seconds
    done = cfg.out_of_patience(run.stale)
    while run.step < cfg.max_steps and not done:
        step = run.step + 1
        model.train()
        x = y = None
        if n_real:
            pick = (
                run.rng.choice(len(pool_idx), n_real, p=pool_p)
                if pool_p is not None
                else run.rng.integers(0, len(pool_idx), n_real)
            )
            images, masks = _gather(datasets, pool_ds[pick], pool_idx[pick], run.rng.random(n_real) < 0.5)
            x, y = to_signed(images).to(device), masks.long().to(device)
        syn_target = syn_weight = probs = syn_real = None
        if n_syn:
            started = time.perf_counter()
            batch = synthetic.draw(step, n_syn)
            run.synthetic_seconds += time.perf_counter() - started
            x = batch.images if x is None else torch.cat([x, batch.images.to(device)])
            probs = batch.probs.to(device)
        if cfg.augment:
            x, y, probs = _augment(x, y, probs, run.gen)
        if cfg.class_mix and n_real and probs is not None:
            x, probs, _, syn_real = paste_real_classes(x, y, probs, cfg.class_mix, run.gen)
        if probs is not None:
            syn_target, syn_weight = synthetic_targets(probs, cfg.synthetic_target, cfg.min_confidence)
        with autocast:
            logits = model(x)
        loss = segmentation_loss(logits, y, syn_target, syn_weight, cfg.dice_weight, cfg.synthetic_blind, syn_real)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if averaged is not None:
            averaged.update_parameters(model)
        run.step = step
        run.seconds = seconds_before + time.perf_counter() - session_start
        if select is not None and (step % cfg.eval_every == 0 or step == cfg.max_steps):
            miou = score_segmenter(scored, select[0], select[1], device, cfg.dtype)["miou"]
            if miou > run.best["miou"]:
                run.best, run.stale = {"miou": miou, "step": step, "state": copy.deepcopy(scored.state_dict())}, 0
            else:
                run.stale += 1
            generator_note = (
                f"; generator {run.synthetic_seconds / step:.2f} of {run.seconds / step:.2f} s per step"
                if n_syn
                else ""
            )
            log(
                f"  segmenter step {step}: loss {loss.item():.3f}, selection mIoU {miou:.3f} "
                f"(best {run.best['miou']:.3f} at {run.best['step']}; {run.seconds:.0f} s{generator_note})"
            )
            done = cfg.out_of_patience(run.stale)
        if checkpoint is not None and (step % checkpoint_every == 0 or done or step == cfg.max_steps):
            run.save(checkpoint)
    if run.best["state"] is not None:
        model.load_state_dict(run.best["state"])
    elif averaged is not None:  # no validation to choose by: the average at the end
        model.load_state_dict(scored.state_dict())
    budget = {
        "steps": run.step,
        "best_step": run.best["step"] if select is not None else run.step,
        "selection_miou": run.best["miou"] if select is not None else None,
        "seconds": round(run.seconds, 1),
        "images_seen": run.step * (n_real + n_syn),
    }
    if n_syn:
        budget.update(
            synthetic_per_batch=n_syn,
            synthetic_pairs_seen=run.step * n_syn,
            generator_seconds=round(run.synthetic_seconds, 1),
            generator_share_of_time=round(run.synthetic_seconds / max(run.seconds, 1e-9), 3),
        )
    return model.eval(), budget


def fingerprint(
    datasets: list[tuple[PreparedDataset, np.ndarray]], cfg: SegmenterConfig, extra=None, select=None
) -> str:
    """Content hash of the training samples, the options, `extra` and the selection samples (a
    dataset and indices): the same pixels, labels and classes give the same fingerprint wherever the
    stores were prepared and whatever their folders are called. Hashed in chunks: memory stays bounded."""
    options = asdict(cfg)
    for name in _ADDED_LATER:  # left out when off, so caches made before they existed stay valid
        if not options[name]:
            del options[name]
    if not (extra or {}).get("synthetic"):
        for name in STREAM_ONLY:
            options.pop(name, None)  # synthetic_on_top may be gone already (off)
    h = hashlib.sha256(json.dumps([options, extra], sort_keys=True, default=str).encode())
    for ds, idx in datasets:
        _hash_samples(h, ds, np.sort(np.asarray(idx, np.int64)))
    if select is not None:
        h.update(b"selection")
        _hash_samples(h, select[0], np.asarray(select[1], np.int64))
    return h.hexdigest()[:16]


def _hash_samples(h, ds: PreparedDataset, idx: np.ndarray) -> None:
    h.update(json.dumps(ds.meta["classes"], sort_keys=True).encode())
    for start in range(0, len(idx), CHUNK):
        part = idx[start : start + CHUNK]
        h.update(np.ascontiguousarray(ds.images[part]).tobytes())
        h.update(np.ascontiguousarray(ds.masks[part]).tobytes())


def cached_segmenter(
    cache: Path,
    datasets,
    cfg: SegmenterConfig,
    device: torch.device,
    select=None,
    log=print,
    weights: list[float] | None = None,
    init: tuple[dict, str] | None = None,
    synthetic: SyntheticSource | None = None,
) -> tuple[ResUNet, Path, dict]:
    """Train once per fingerprint of (datasets, config, selection set, batch shares, starting point,
    synthetic source); later calls load the cached weights. `init` is (state dict, the cache key it
    came from). An interrupted training resumes from `<fingerprint>.partial/` when called again.
    Returns the model, its folder and its training budget."""
    extra = {
        "weights": weights,
        "init": None if init is None else init[1],
    }
    if synthetic is not None:
        extra["synthetic"] = synthetic.describe()
    folder = Path(cache) / fingerprint(datasets, cfg, extra, select)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # One trainer per fingerprint: evaluations sharing a cache wait for each other's segmenter
    # instead of training the same one twice.
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / "segmenter.json").exists():
            model, meta = load_segmenter(folder, device)
            log(f"  reusing cached segmenter {folder}")
            return model, folder, meta.get("budget", {})
        partial = folder.with_name(f"{folder.name}.partial")
        init_state = None if init is None else init[0]
        model, budget = train_segmenter(
            datasets, cfg, device, select, log, weights, init_state, synthetic, checkpoint=partial / "state.pt"
        )
        info = {
            "datasets": [str(ds.root) for ds, _ in datasets],
            "train_samples": int(sum(len(i) for _, i in datasets)),
            "budget": budget,
        }
        if synthetic is not None:
            info["synthetic"] = synthetic.describe()
        save_segmenter(model, cfg, folder, info)
        shutil.rmtree(partial, ignore_errors=True)
    return model, folder, budget
