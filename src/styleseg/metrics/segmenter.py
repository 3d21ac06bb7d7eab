"""The reference segmenter: a residual U-Net with atrous context pooling (`segnet.py`), trained on
real data to convergence, used to check that generated masks match their images and to measure how
useful generated pairs are as training data.

Training stops on validation: the labeled validation split is cut in two fixed halves by position,
the *selection* half (even positions) decides when to stop and which weights to keep, and every
reported score uses the other, *report* half, which no choice has seen. Augmentation is strong but
keeps image and mask one picture: flips (left/right classes swapped), scale and translation
(bilinear for images, nearest for masks, the same grid), and colour jitter on the image alone.

Trained segmenters are cached under a fingerprint of (datasets, options), so evaluations reuse them.
Everything that reads a dataset streams it in chunks: memory stays bounded whatever its size.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from styleseg.data.balance import CHUNK, class_presence, repeat_factors
from styleseg.data.store import PreparedDataset
from styleseg.errors import CheckpointError, StylesegError
from styleseg.metrics.segmentation import (
    confusion_matrix,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
    sample_confusion_matrices,
)
from styleseg.metrics.segnet import ResUNet

_ADDED_LATER = ("dice_weight", "repeat_threshold", "weight_ema")  # options whose "off" value is 0


@dataclass
class SegmenterConfig:
    num_classes: int
    width: int = 24
    """Channels of the first level; doubled at each of three down-sampling steps."""
    max_steps: int = 3000
    """Upper bound on optimiser steps; training usually stops earlier, on validation."""
    eval_every: int = 100
    """Score the selection half of validation every N steps."""
    patience: int = 4
    """Stop after this many scores without a new best (the best weights are kept)."""
    batch: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    dice_weight: float = 0.0
    """Weight of a soft Dice term beside cross-entropy: pixel-frequency-blind, so rare classes (a coat
    covering 0.1% of pixels) count as much as the background, as mIoU counts them."""
    weight_ema: float = 0.0
    """Score and keep an exponential moving average of the weights and batch-norm statistics with this
    decay per step (e.g. 0.99: a horizon of ~100 steps) instead of the raw weights, which swing from
    one score to the next; 0: the raw weights."""
    repeat_threshold: float = 0.0
    """Rare-class oversampling (LVIS's repeat factor sampling, Gupta et al. 2019): an image is drawn
    max(1, sqrt(t / f)) times as often, f the share of training images showing its rarest class and t
    this threshold; 0 draws every image equally."""
    augment: bool = True
    """Flips, scale/translation and colour jitter (mask-consistent)."""
    dtype: str = "auto"
    """fp32 | bf16 | auto (bf16 on GPUs and on CPUs with bf16 instructions)."""
    seed: int = 0


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPUs where bf16 convolutions are faster than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_for(dtype: str, device: torch.device):
    use = dtype == "bf16" or (dtype == "auto" and (device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())))
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use)


def _to_input(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1


def _augment(x: torch.Tensor, masks: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random scale (0.8-1.25) and translation (10%), the same grid for image (bilinear) and mask
    (nearest); then brightness, contrast and saturation on the image."""
    b = x.shape[0]
    scale = torch.exp(torch.empty(b).uniform_(math.log(0.8), math.log(1.25), generator=gen))
    shift = torch.empty(b, 2).uniform_(-0.1, 0.1, generator=gen)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = shift * 2
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    masks = F.grid_sample(masks[:, None].float(), grid, mode="nearest", padding_mode="border", align_corners=False)
    bright = (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.4
    contrast = 1 + (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.6
    sat = 1 + (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.6
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + bright
    luma = x.mean(dim=1, keepdim=True)
    return torch.lerp(luma, x, sat), masks[:, 0].round().long()


def fingerprint(
    datasets: list[tuple[PreparedDataset, np.ndarray]], cfg: SegmenterConfig, extra=None, select=None
) -> str:
    """Content hash of the training samples, the options, `extra` and the selection samples (a
    dataset and indices): the same pixels, labels and classes give the same fingerprint wherever the
    stores were prepared and whatever their folders are called. Hashed in chunks: memory stays bounded."""
    options = asdict(cfg)
    for name in _ADDED_LATER:  # left out when off, so caches made before they existed stay valid
        if options[name] == 0:
            del options[name]
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


def validation_halves(ds: PreparedDataset, split: str = "val") -> tuple[np.ndarray, np.ndarray]:
    """(selection, report) halves of a split's labeled samples: even and odd positions."""
    idx = ds.indices(split, labeled_only=True)
    return idx[0::2], idx[1::2]


def train_segmenter(
    datasets: list[tuple[PreparedDataset, np.ndarray]],
    cfg: SegmenterConfig,
    device: torch.device,
    select: tuple[PreparedDataset, np.ndarray] | None,
    log=print,
    weights: list[float] | None = None,
    init: dict | None = None,
) -> tuple[ResUNet, dict]:
    """Train on the union of (dataset, sample indices), all of one resolution and class map; stop on
    the mIoU of `select` (a dataset and indices), keeping the best weights. `weights` gives each
    dataset's share of every batch (default: in proportion to its size); `init` a state dict to start
    from (fine-tuning). Returns the model and its budget: steps run, best step, selection mIoU, seconds."""
    res = {ds.resolution for ds, _ in datasets}
    if len(res) != 1:
        raise StylesegError(f"segmenter training sets differ in resolution: {sorted(res)}")
    # The pool of samples as two parallel arrays: which dataset, which index in it.
    pool_ds = np.concatenate([np.full(len(idx), d) for d, (_, idx) in enumerate(datasets)])
    pool_idx = np.concatenate([np.asarray(idx, np.int64) for _, idx in datasets])
    if not len(pool_idx):
        raise StylesegError("segmenter training set is empty")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = ResUNet(cfg.num_classes, cfg.width).to(device)
    if init is not None:
        model.load_state_dict(init)
    pool_p = sampling_probabilities(datasets, pool_ds, cfg, weights, log)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = min(100, cfg.max_steps // 10)

    def lr_at(step: int) -> float:  # linear warm-up, then cosine decay over max_steps
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(cfg.max_steps - warmup, 1)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    rng = np.random.default_rng(cfg.seed)
    autocast = autocast_for(cfg.dtype, device)
    start = time.perf_counter()
    best = {"miou": -1.0, "step": 0, "state": None}
    # torch's own weight averaging; use_buffers averages batch-norm statistics along with the weights
    averaged = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.weight_ema), use_buffers=True)
        if cfg.weight_ema
        else None
    )
    scored = model if averaged is None else averaged.module
    stale, step = 0, 0
    for step in range(1, cfg.max_steps + 1):
        model.train()
        pick = (
            rng.choice(len(pool_idx), cfg.batch, p=pool_p)
            if pool_p is not None
            else rng.integers(0, len(pool_idx), cfg.batch)
        )
        images, masks = _gather(datasets, pool_ds[pick], pool_idx[pick], rng.random(cfg.batch) < 0.5)
        x, y = _to_input(images), masks.long()
        if cfg.augment:
            x, y = _augment(x, y, gen)
        with autocast:
            logits = model(x.to(device))
        loss = F.cross_entropy(logits.float(), y.to(device))
        if cfg.dice_weight:
            loss = loss + cfg.dice_weight * soft_dice_loss(logits.float(), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if averaged is not None:
            averaged.update_parameters(model)
        if select is not None and (step % cfg.eval_every == 0 or step == cfg.max_steps):
            miou = score_segmenter(scored, select[0], select[1], device, cfg.dtype)["miou"]
            if miou > best["miou"]:
                best, stale = {"miou": miou, "step": step, "state": copy.deepcopy(scored.state_dict())}, 0
            else:
                stale += 1
            log(
                f"  segmenter step {step}: loss {loss.item():.3f}, selection mIoU {miou:.3f} "
                f"(best {best['miou']:.3f} at {best['step']}; {time.perf_counter() - start:.0f} s)"
            )
            if stale >= cfg.patience:
                break
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    elif averaged is not None:  # no validation to choose by: the average at the end
        model.load_state_dict(scored.state_dict())
    budget = {
        "steps": step,
        "best_step": best["step"] if select is not None else step,
        "selection_miou": best["miou"] if select is not None else None,
        "seconds": round(time.perf_counter() - start, 1),
        "images_seen": step * cfg.batch,
    }
    return model.eval(), budget


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


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice over the classes present in the batch's targets (absent classes are left
    out: their Dice is undefined and rewarding empty predictions would say nothing)."""
    probs = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    total = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    present = onehot.sum(dim=(0, 2, 3)) > 0
    dice = 2 * inter[present] / total[present].clamp_min(1e-6)
    return 1 - dice.mean()


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


@torch.no_grad()
def predict(model: ResUNet, images: torch.Tensor, device: torch.device, batch: int = 64, dtype="auto") -> np.ndarray:
    """(N, 3, H, W) uint8 -> (N, H, W) uint8 predicted class ids."""
    model.eval()
    out = []
    with autocast_for(dtype, device):
        for i in range(0, len(images), batch):
            out.append(model(_to_input(images[i : i + batch]).to(device)).float().argmax(1).cpu())
    return torch.cat(out).to(torch.uint8).numpy()


@torch.no_grad()
def embed(model: ResUNet, images: torch.Tensor, device: torch.device, batch: int = 64, dtype="auto") -> np.ndarray:
    """(N, 3, H, W) uint8 -> (N, 8*width) float64 features."""
    model.eval()
    feats = []
    with autocast_for(dtype, device):
        for i in range(0, len(images), batch):
            feats.append(model.features(_to_input(images[i : i + batch]).to(device)).float().cpu())
    return torch.cat(feats).double().numpy()


def embed_store(model: ResUNet, ds: PreparedDataset, idx: np.ndarray, device: torch.device, dtype="auto") -> np.ndarray:
    """Features of ds[idx], read in chunks."""
    parts = [
        embed(model, ds.load_batch(idx[s : s + CHUNK], masks=False)[0], device, dtype=dtype)
        for s in range(0, len(idx), CHUNK)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, model.head.in_channels * 8))


def sample_confusions(
    model: ResUNet, ds: PreparedDataset, idx: np.ndarray, device: torch.device, dtype="auto"
) -> np.ndarray:
    """(len(idx), K, K) confusion of the model's prediction on each of ds[idx] against its stored mask
    (rows: the mask's class), predicted in chunks."""
    if len(idx) == 0:
        raise StylesegError(f"{ds.root}: nothing to score")
    parts = []
    for s in range(0, len(idx), CHUNK):
        images, masks = ds.load_batch(idx[s : s + CHUNK])
        pred = predict(model, images, device, dtype=dtype)
        parts.append(sample_confusion_matrices(masks.numpy(), pred, ds.class_map.num_classes).astype(np.int32))
    return np.concatenate(parts)


def score_segmenter(model: ResUNet, ds: PreparedDataset, idx: np.ndarray, device: torch.device, dtype="auto") -> dict:
    """mIoU, pixel accuracy and per-class IoU of the model's predictions on ds[idx]."""
    cm = sample_confusions(model, ds, idx, device, dtype).sum(0, dtype=np.int64)
    return scores_from_confusion(cm, ds.class_map.classes, len(idx))


def evaluate_segmenter_samples(
    model: ResUNet, ds: PreparedDataset, split: str, device: torch.device, half: str = "report"
) -> tuple[dict, np.ndarray]:
    """Scores on a split (its report half for validation: the selection half chose the weights; the
    whole split otherwise), and the per-sample confusion matrices they sum, for intervals."""
    idx = ds.indices(split, labeled_only=True)
    if split == "val" and half in {"report", "selection"}:
        idx = validation_halves(ds, split)[1 if half == "report" else 0]
    if len(idx) == 0:
        raise StylesegError(f"{ds.root}: split '{split}' has no labeled samples")
    samples = sample_confusions(model, ds, idx, device)
    scores = scores_from_confusion(samples.sum(0, dtype=np.int64), ds.class_map.classes, len(idx))
    return {**scores, "split": split if split != "val" else f"val ({half} half)"}, samples


def evaluate_segmenter(
    model: ResUNet, ds: PreparedDataset, split: str, device: torch.device, half: str = "report"
) -> dict:
    return evaluate_segmenter_samples(model, ds, split, device, half)[0]


def scores_from_confusion(cm: np.ndarray, names, n: int) -> dict:
    ious = iou_per_class(cm)
    return {
        "miou": mean_iou(cm),
        "pixel_accuracy": pixel_accuracy(cm),
        "iou": {name: (None if np.isnan(v) else float(v)) for name, v in zip(names, ious)},
        "n": int(n),
        "confusion": cm.tolist(),  # pixel counts, rows: the mask's class, columns: the prediction
    }


def scores(target: np.ndarray, pred: np.ndarray, names) -> dict:
    return scores_from_confusion(confusion_matrix(target, pred, len(names)), names, len(target))


def save_segmenter(model: ResUNet, cfg: SegmenterConfig, folder: Path, info: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "segmenter.safetensors")
    (folder / "segmenter.json").write_text(json.dumps({"config": asdict(cfg), **info}, indent=2) + "\n")


def load_segmenter(folder: Path, device: torch.device) -> tuple[ResUNet, dict]:
    meta_path = Path(folder) / "segmenter.json"
    if not meta_path.exists():
        raise CheckpointError(f"{meta_path}: missing; {folder} is not a trained segmenter")
    meta = json.loads(meta_path.read_text())
    meta["config"].setdefault("dice_weight", 0.0)  # segmenters from before the Dice term: trained without it
    try:
        cfg = SegmenterConfig(**meta["config"])
    except TypeError as exc:
        raise CheckpointError(f"{meta_path}: written by another version of styleseg's segmenter ({exc})") from exc
    model = ResUNet(cfg.num_classes, cfg.width)
    weights = Path(folder) / "segmenter.safetensors"
    try:
        model.load_state_dict(load_safetensors(weights.read_bytes()))
    except (OSError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"{weights}: cannot load ({exc})") from exc
    return model.to(device).eval(), meta


def segmenter_digest(folder: Path) -> str:
    """sha256 of a trained segmenter's weights file: names it in the cache keys of what starts from it."""
    weights = Path(folder) / "segmenter.safetensors"
    try:
        return hashlib.sha256(weights.read_bytes()).hexdigest()
    except OSError as exc:
        raise CheckpointError(f"{weights}: cannot read ({exc})") from exc


def load_matching_segmenter(
    folder: Path, device: torch.device, num_classes: int, width: int | None = None, use: str = "use"
) -> tuple[ResUNet, dict, SegmenterConfig]:
    """A trained segmenter that must predict `num_classes` classes (and have `width`, when given);
    a clear error naming the folder otherwise. Returns the model, its metadata and its config."""
    model, meta = load_segmenter(folder, device)
    theirs = meta["config"]  # as recorded on disk
    if theirs["num_classes"] != num_classes or (width is not None and theirs["width"] != width):
        wanted = f"{num_classes} classes" + ("" if width is None else f" and width {width}")
        raise StylesegError(
            f"{folder}: a segmenter of {theirs['num_classes']} classes and width {theirs['width']} "
            f"cannot {use} (needed: {wanted})"
        )
    return model, meta, SegmenterConfig(**theirs)


def cached_segmenter(
    cache: Path,
    datasets,
    cfg: SegmenterConfig,
    device: torch.device,
    select=None,
    log=print,
    weights: list[float] | None = None,
    init: tuple[dict, str] | None = None,
) -> tuple[ResUNet, Path, dict]:
    """Train once per fingerprint of (datasets, config, selection set, batch shares, starting point);
    later calls load the cached weights. `init` is (state dict, the cache key it came from).
    Returns the model, its folder and its training budget."""
    extra = {
        "weights": weights,
        "init": None if init is None else init[1],
    }
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
        init_state = None if init is None else init[0]
        model, budget = train_segmenter(datasets, cfg, device, select, log, weights, init_state)
        info = {
            "datasets": [str(ds.root) for ds, _ in datasets],
            "train_samples": int(sum(len(i) for _, i in datasets)),
            "budget": budget,
        }
        save_segmenter(model, cfg, folder, info)
    return model, folder, budget
