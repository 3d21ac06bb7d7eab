"""The reference segmenter: a compact U-Net in plain torch, trained on real data, used to check that
generated masks match their images and to measure how useful generated pairs are as training data.

Trained segmenters are cached under a fingerprint of (datasets, options), so evaluations reuse them.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from styleseg.data.store import PreparedDataset
from styleseg.errors import CheckpointError, StylesegError
from styleseg.metrics.segmentation import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy


@dataclass
class SegmenterConfig:
    num_classes: int
    width: int = 16
    """Channels of the first level; doubled at each of three down-sampling steps."""
    epochs_equiv: int = 15
    """Training length in passes over 800 images (a fixed budget whatever the dataset size)."""
    batch: int = 32
    lr: float = 2e-3
    seed: int = 0


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        self.enc = nn.ModuleList([_block(3, w[0]), _block(w[0], w[1]), _block(w[1], w[2]), _block(w[2], w[3])])
        self.up = nn.ModuleList([nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in range(3)])
        self.dec = nn.ModuleList([_block(2 * w[i], w[i]) for i in range(3)])
        self.head = nn.Conv2d(w[0], num_classes, 1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            feats.append(x)
        return feats

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 8*width) pooled bottleneck features: the in-domain embedding for Fréchet distances."""
        return self.encode(x)[-1].mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, K, H, W) logits; H and W divisible by 8."""
        feats = self.encode(x)
        y = feats[-1]
        for i in (2, 1, 0):
            y = self.dec[i](torch.cat([self.up[i](y), feats[i]], dim=1))
        return self.head(y)


def _to_input(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1


def _jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mild colour jitter: brightness, contrast, saturation."""
    b = x.shape[0]
    bright = (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.2
    contrast = 1 + (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.3
    sat = 1 + (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.3
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + bright
    luma = x.mean(dim=1, keepdim=True)
    return torch.lerp(luma, x, sat)


def fingerprint(datasets: list[tuple[PreparedDataset, np.ndarray]], cfg: SegmenterConfig) -> str:
    """Content hash of the training samples and the options: the same pixels, labels and classes give the
    same fingerprint wherever and whenever the store was prepared."""
    h = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode())
    for ds, idx in datasets:
        idx = np.sort(np.asarray(idx, np.int64))
        h.update(json.dumps(ds.meta["classes"], sort_keys=True).encode())
        h.update(np.ascontiguousarray(ds.images[idx]).tobytes())
        h.update(np.ascontiguousarray(ds.masks[idx]).tobytes())
    return h.hexdigest()[:16]


def train_segmenter(
    datasets: list[tuple[PreparedDataset, np.ndarray]], cfg: SegmenterConfig, device: torch.device, log=print
) -> UNet:
    """Train on the union of (dataset, sample indices); every dataset must share resolution and classes."""
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
    model = UNet(cfg.num_classes, cfg.width).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps = max(cfg.epochs_equiv * 800 // cfg.batch, 1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps)
    rng = np.random.default_rng(cfg.seed)
    start = time.perf_counter()
    model.train()
    for step in range(steps):
        pick = rng.integers(0, len(pool_idx), cfg.batch)
        images, masks = _gather(datasets, pool_ds[pick], pool_idx[pick], rng.random(cfg.batch) < 0.5)
        x = _jitter(_to_input(images), gen).to(device)
        loss = F.cross_entropy(model(x), masks.long().to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % max(steps // 5, 1) == 0:
            log(f"  segmenter step {step + 1}/{steps}: loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)")
    return model.eval()


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
def predict(model: UNet, images: torch.Tensor, device: torch.device, batch: int = 64) -> np.ndarray:
    """(N, 3, H, W) uint8 -> (N, H, W) uint8 predicted class ids."""
    out = [model(_to_input(images[i : i + batch]).to(device)).argmax(1).cpu() for i in range(0, len(images), batch)]
    return torch.cat(out).to(torch.uint8).numpy()


@torch.no_grad()
def embed(model: UNet, images: torch.Tensor, device: torch.device, batch: int = 64) -> np.ndarray:
    feats = [model.features(_to_input(images[i : i + batch]).to(device)).cpu() for i in range(0, len(images), batch)]
    return torch.cat(feats).double().numpy()


def evaluate_segmenter(model: UNet, ds: PreparedDataset, split: str, device: torch.device) -> dict:
    idx = ds.indices(split, labeled_only=True)
    if len(idx) == 0:
        raise StylesegError(f"{ds.root}: split '{split}' has no labeled samples")
    images, masks = ds.load_batch(idx)
    pred = predict(model, images, device)
    return scores(masks.numpy(), pred, ds.class_map.classes)


def scores(target: np.ndarray, pred: np.ndarray, names) -> dict:
    cm = confusion_matrix(target, pred, len(names))
    ious = iou_per_class(cm)
    return {
        "miou": mean_iou(cm),
        "pixel_accuracy": pixel_accuracy(cm),
        "iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, ious)},
        "n": int(len(target)),
    }


def save_segmenter(model: UNet, cfg: SegmenterConfig, folder: Path, info: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "segmenter.safetensors")
    (folder / "segmenter.json").write_text(json.dumps({"config": asdict(cfg), **info}, indent=2) + "\n")


def load_segmenter(folder: Path, device: torch.device) -> tuple[UNet, dict]:
    meta_path = Path(folder) / "segmenter.json"
    if not meta_path.exists():
        raise CheckpointError(f"{meta_path}: missing; {folder} is not a trained segmenter")
    meta = json.loads(meta_path.read_text())
    cfg = SegmenterConfig(**meta["config"])
    model = UNet(cfg.num_classes, cfg.width)
    try:
        model.load_state_dict(load_file(Path(folder) / "segmenter.safetensors"))
    except (OSError, RuntimeError) as exc:
        raise CheckpointError(f"{folder}/segmenter.safetensors: cannot load ({exc})") from exc
    return model.to(device).eval(), meta


def cached_segmenter(cache: Path, datasets, cfg: SegmenterConfig, device: torch.device, log=print) -> tuple[UNet, Path]:
    """Train once per fingerprint of (datasets, config); later calls load the cached weights."""
    folder = Path(cache) / fingerprint(datasets, cfg)
    if (folder / "segmenter.json").exists():
        model, _ = load_segmenter(folder, device)
        log(f"  reusing cached segmenter {folder}")
        return model, folder
    start = time.perf_counter()
    model = train_segmenter(datasets, cfg, device, log)
    info = {
        "datasets": [str(ds.root) for ds, _ in datasets],
        "train_samples": int(sum(len(i) for _, i in datasets)),
        "seconds": round(time.perf_counter() - start, 1),
    }
    save_segmenter(model, cfg, folder, info)
    return model, folder
