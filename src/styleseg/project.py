"""Reading a real photo through the generator: find the latent whose image redraws the photo, and its
mask comes with it (the reason to model images and masks jointly, as SemanticGAN does).

The photo is fitted to the model's shape by `prepare`'s rule (pad-edge). The latent starts at the
average w and is fitted with Adam to a pixel distance plus a distance in the discriminator's
features (a perceptual space learned on this very data, available wherever the model file carries its
discriminator); the noise inputs stay at a fixed draw. 'w+' gives every layer its own w.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from styleseg.data.geometry import letterbox_image
from styleseg.data.pixels import to_signed
from styleseg.models.discriminator import Discriminator
from styleseg.models.load import LoadedGenerator
from styleseg.options import ProjectOptions


@dataclass
class Projection:
    ws: torch.Tensor  # (B, num_ws, w_dim) the fitted styles
    img: torch.Tensor  # (B, 3, H, W) the redrawn photos, [-1, 1]
    seg: torch.Tensor  # (B, K, H, W) the generator's class logits for them
    pixel_error: np.ndarray  # (B,) mean absolute error per pixel value, 0-255 scale
    seconds: float


def fit_photo(image: np.ndarray, resolution: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 photo of any size -> the model's shape, as `prepare` fits photos."""
    return letterbox_image(image, resolution)


def to_tensor(images: np.ndarray, device) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [-1, 1]."""
    return to_signed(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)).to(device)


def _d_distance(D: Discriminator | None, stage: int, a: torch.Tensor, b_feats: list[torch.Tensor]) -> torch.Tensor:
    """(B,) mean squared distance between D's features of `a` and the given ones, layer by layer."""
    if D is None:
        return a.new_zeros(a.shape[0])
    feats = D.features(a, stage)
    return sum((fa - fb).square().mean(dim=(1, 2, 3)) for fa, fb in zip(feats, b_feats)) / len(feats)


def fixed_noise(G, stage: int, b: int, device) -> list[torch.Tensor]:
    """The noise inputs latents are fitted under: one draw from seed 0, shared by the batch."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    noise = G.make_noise(1, stage, generator=gen, device=torch.device("cpu"))
    return [n.to(device).expand(b, -1, -1, -1) for n in noise]


def project(
    model: LoadedGenerator,
    photos: torch.Tensor,
    opts: ProjectOptions,
    D: Discriminator | None = None,
    log=None,
) -> Projection:
    """Fit latents to `photos` (B, 3, H, W) in [-1, 1] at the model's resolution."""
    G, st = model.G, model.growth
    device = photos.device
    start = time.perf_counter()
    b = photos.shape[0]
    layers = G.num_ws if opts.space == "w+" else 1
    w = G.w_avg.detach().clone().repeat(b, layers, 1).requires_grad_(True)  # (B, layers, w_dim)
    noise = fixed_noise(G, st.stage, b, device)
    opt = torch.optim.Adam([w], lr=opts.lr, betas=(0.9, 0.999))
    warmup = max(1, opts.steps // 10)
    weight = opts.perceptual_weight if D is not None else 0.0
    with torch.no_grad():
        target_feats = D.features(photos, st.stage) if weight else []
    G.requires_grad_(False)
    if D is not None:
        D.requires_grad_(False)
    for step in range(opts.steps):
        lr = opts.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / opts.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        ws = w.expand(-1, G.num_ws, -1) if layers == 1 else w
        img, _ = G.synthesis(ws, st.stage, st.alpha, st.seg_level, noise)
        loss = (img - photos).square().mean(dim=(1, 2, 3))
        if weight:
            loss = loss + weight * _d_distance(D, st.stage, img, target_feats)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        if log and (step + 1) % max(1, opts.steps // 4) == 0:
            log(f"  step {step + 1}/{opts.steps}: loss {float(loss.mean()):.4f}")
    with torch.no_grad():
        ws = (w.expand(-1, G.num_ws, -1) if layers == 1 else w).detach()
        img, seg = G.synthesis(ws, st.stage, st.alpha, st.seg_level, noise)
        error = ((img.clamp(-1, 1) - photos).abs() * 127.5).mean(dim=(1, 2, 3)).cpu().numpy()
    return Projection(ws, img, seg, error, time.perf_counter() - start)


def discriminator_of(model: LoadedGenerator, device) -> Discriminator | None:
    """The model's discriminator where its file carries one (exported --with-discriminator, or a
    checkpoint), else None."""
    from styleseg.models.weights import read_safetensors
    from styleseg.models.zoo import load_exported_for_training

    path = model.path
    if path.is_file():
        _, d_state, _ = load_exported_for_training(path, torch.device("cpu"))
    elif (path / "D.safetensors").exists():
        d_state = read_safetensors(path / "D.safetensors")
    else:
        d_state = None
    if not d_state:
        return None
    sizes = [lvl.num_classes for lvl in model.class_map.levels()]
    pair_head = any(k.startswith("final.pair_") for k in d_state)
    D = Discriminator(model.config.model, sizes, pair_head=pair_head)
    D.load_state_dict({k: v.float() for k, v in d_state.items()})
    return D.to(device).eval()


def upsample_like(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="nearest")
