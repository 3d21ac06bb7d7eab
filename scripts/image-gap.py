"""Is the gap between generated and real photos in their pixel statistics? Three checks for
docs/synthetic-data.md, "Images or masks?":

1. the radial power spectrum of generated against real photos, in ten bands of spatial frequency
   (grey level, mean removed), and their mean gradient magnitude and pixel spread;
2. AdaBN: a segmenter's batch-norm statistics re-estimated on unlabelled real training photos (no
   labels used), scored on the validation report half before and after; a segmenter trained on
   generated images normalises real photos with the generated images' statistics otherwise;
3. real validation photos blurred before the segmenter reads them (Gaussian, sigma in pixels): if
   generated images were smoother than photos, a segmenter taught on them would read blurred photos
   better.

    python scripts/image-gap.py --model viton64-lip12 --data prepared/viton64 seg/c seg/f
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from styleseg.cli.common import load_generator_spec
from styleseg.data.pixels import to_signed
from styleseg.data.store import PreparedDataset
from styleseg.metrics.segmenter import autocast_for, load_segmenter, predict, scores, validation_halves
from styleseg.options import StreamOptions
from styleseg.stream import PairStream

BANDS = 10


def radial_power(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) pixel values -> (BANDS,) mean power of the grey image's spectrum in equal bands of
    radial frequency from 0 to 0.5 cycles per pixel (each axis scaled by its own length)."""
    grey = images.float().mean(1)
    grey = grey - grey.mean((1, 2), keepdim=True)
    power = torch.fft.fft2(grey).abs().pow(2).mean(0)
    h, w = power.shape
    fy, fx = torch.meshgrid(torch.fft.fftfreq(h), torch.fft.fftfreq(w), indexing="ij")
    radius = (fy**2 + fx**2).sqrt()
    edges = torch.linspace(0, 0.5, BANDS + 1)
    return np.array([power[(radius >= a) & (radius < b)].mean().item() for a, b in zip(edges[:-1], edges[1:])])


def gradient_magnitude(images: torch.Tensor) -> float:
    grey = images.float().mean(1)
    dy, dx = grey[:, 1:, :-1] - grey[:, :-1, :-1], grey[:, :-1, 1:] - grey[:, :-1, :-1]
    return (dy**2 + dx**2).sqrt().mean().item()


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, C, H, W) float, separable 5-tap Gaussian with replicated borders; sigma 0 returns the input."""
    if sigma == 0:
        return images
    taps = torch.arange(-2, 3, dtype=torch.float32)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(images.dtype)
    c = images.shape[1]
    x = F.conv2d(F.pad(images, (2, 2, 0, 0), mode="replicate"), kernel.view(1, 1, 1, 5).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), kernel.view(1, 1, 5, 1).repeat(c, 1, 1, 1), groups=c)


@torch.no_grad()
def reestimate_batch_norm(model: torch.nn.Module, batches, autocast) -> None:
    """AdaBN: every batch-norm layer's running statistics replaced by the plain average over `batches`
    (signed images) in training mode; weights untouched."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average, not an exponential one
    model.train()
    with autocast:
        for x in batches:
            model(x)
    model.eval()


def report_scores(model, images: torch.Tensor, masks: np.ndarray, names, sigma: float = 0.0) -> dict:
    """The project's scores of `model` on uint8 `images`, blurred by `sigma` pixels first."""
    blurred = gaussian_blur(images.float(), sigma).round().clamp(0, 255).to(torch.uint8)
    return scores(masks, predict(model, blurred, torch.device("cpu")), names)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="generator: a shipped model's name, an export or a checkpoint")
    p.add_argument("--data", required=True, help="prepared dataset the segmenters were trained and scored on")
    p.add_argument("--n", type=int, default=512, help="photos of each kind for the spectrum")
    p.add_argument("--n-adabn", type=int, default=2048, help="unlabelled real train photos for AdaBN")
    p.add_argument("--sigmas", default="0.5,0.7,1", help="blur of the real photos, in pixels")
    p.add_argument("segmenters", nargs="*", help="trained segmenter folders")
    args = p.parse_args()
    device = torch.device("cpu")
    autocast = autocast_for("auto", device)
    ds = PreparedDataset(Path(args.data))
    train = ds.indices("train")
    rng = np.random.default_rng(0)
    real = ds.load_batch(rng.choice(train, min(args.n, len(train)), replace=False), masks=False)[0].float()
    stream = PairStream(load_generator_spec(args.model, device), StreamOptions(), device)
    fake = torch.cat([stream.draw(t, min(64, args.n)).images for t in range(-(-args.n // 64))])[: args.n]
    fake = (fake.float() + 1) * 127.5  # the stream's images are signed, quantised to 8 bits
    ratio = radial_power(real) / radial_power(fake)
    print(f"{len(real)} real train photos, {len(fake)} generated pairs ({args.model}, psi in [0.7, 1])")
    print(
        "power real / generated by band (cycles per pixel): "
        + ", ".join(f"{0.5 * i / BANDS:.2f}-{0.5 * (i + 1) / BANDS:.2f} {r:.2f}" for i, r in enumerate(ratio))
    )
    print(f"mean gradient magnitude real {gradient_magnitude(real):.2f}, generated {gradient_magnitude(fake):.2f}")
    print(f"pixel std real {real.std().item():.1f}, generated {fake.std().item():.1f}")
    report = validation_halves(ds)[1]
    images, masks = ds.load_batch(report)
    masks = masks.numpy()
    names = ds.class_map.classes
    sigmas = [float(s) for s in args.sigmas.split(",") if s]
    adabn = rng.choice(train, min(args.n_adabn, len(train)), replace=False)
    for folder in args.segmenters:
        model = load_segmenter(Path(folder), device)[0]
        stored = report_scores(model, images, masks, names)
        blurred = [report_scores(model, images, masks, names, s)["miou"] for s in sigmas]
        reestimate_batch_norm(
            model,
            (to_signed(ds.load_batch(adabn[s : s + 64], masks=False)[0]) for s in range(0, len(adabn), 64)),
            autocast,
        )
        after = report_scores(model, images, masks, names)
        print(
            f"{folder}: report mIoU {stored['miou']:.4f} ({len(report)} photos); AdaBN on {len(adabn)} unlabelled "
            f"real photos {after['miou']:.4f} ({after['miou'] - stored['miou']:+.4f}); blurred "
            + ", ".join(f"sigma {s:g} {m:.4f}" for s, m in zip(sigmas, blurred))
        )


if __name__ == "__main__":
    main()
