"""The reference segmenter: a residual U-Net with atrous context pooling (`segnet.py`), trained on
real data to convergence, used to check that generated masks match their images and to measure how
useful generated pairs are as training data.

Training stops on validation: the labeled validation split is cut in two fixed halves by position,
the *selection* half (even positions) decides when to stop and which weights to keep, and every
reported score uses the other, *report* half, which no choice has seen. Augmentation is strong but
keeps image and mask one picture: flips (left/right classes swapped), scale and translation
(bilinear for images, nearest for masks, the same grid), and colour jitter on the image alone.

This module holds the network's configuration, its files and its scores; training and the cache of
trained segmenters live in `segmenter_train.py`. Everything that reads a dataset streams it in
chunks: memory stays bounded whatever its size.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from styleseg.data.balance import CHUNK
from styleseg.data.pixels import to_signed
from styleseg.data.store import PreparedDataset
from styleseg.errors import CheckpointError, StylesegError
from styleseg.jsonio import write_json
from styleseg.metrics.segmentation import (
    confusion_matrix,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
    sample_confusion_matrices,
)
from styleseg.metrics.segnet import ResUNet
from styleseg.options import SegmenterConfig


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


def validation_halves(ds: PreparedDataset, split: str = "val") -> tuple[np.ndarray, np.ndarray]:
    """(selection, report) halves of a split's labeled samples: even and odd positions."""
    idx = ds.indices(split, labeled_only=True)
    return idx[0::2], idx[1::2]


@torch.no_grad()
def predict(model: ResUNet, images: torch.Tensor, device: torch.device, batch: int = 64, dtype="auto") -> np.ndarray:
    """(N, 3, H, W) uint8 -> (N, H, W) uint8 predicted class ids."""
    model.eval()
    out = []
    with autocast_for(dtype, device):
        for i in range(0, len(images), batch):
            out.append(model(to_signed(images[i : i + batch]).to(device)).float().argmax(1).cpu())
    return torch.cat(out).to(torch.uint8).numpy()


@torch.no_grad()
def embed(model: ResUNet, images: torch.Tensor, device: torch.device, batch: int = 64, dtype="auto") -> np.ndarray:
    """(N, 3, H, W) uint8 -> (N, 8*width) float64 features."""
    model.eval()
    feats = []
    with autocast_for(dtype, device):
        for i in range(0, len(images), batch):
            feats.append(model.features(to_signed(images[i : i + batch]).to(device)).float().cpu())
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
    write_json(folder / "segmenter.json", {"config": asdict(cfg), **info})


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
