"""Where pictures carry their fine detail: on the boundaries of their masks, or inside the regions.

    python scripts/detail-placement.py --data prepared/viton128 [CKPT ...]

Detail is |x - up(down(x))| (the finest Laplacian-pyramid level: what a 2x-up-sampled picture of
half the resolution lacks), averaged over colour channels; a boundary pixel is one whose 3x3
neighbourhood holds another class of its own mask. Prints the mean detail on boundaries and off them
for --n real validation photos (their labels) and for --n generated pairs of each checkpoint (their
masks, seeds 0..n-1). A real photo's detail sits mostly on its boundaries (garment against skin,
person against background); a stage that adds detail inside the regions (halos, false texture) shows
a lower ratio and a higher off-boundary figure than the photos.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from styleseg.data.pixels import to_signed
from styleseg.data.store import PreparedDataset
from styleseg.models.layers import downsample2, upsample2_smooth
from styleseg.models.load import load_generator
from styleseg.sampling import seed_latents


def finest_detail(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W): |x - up(down(x))|, mean over channels."""
    return (images - upsample2_smooth(downsample2(images))).abs().mean(1)


def mask_boundaries(masks: torch.Tensor) -> torch.Tensor:
    """(B, H, W) class ids -> (B, H, W) bool: another class within the pixel's 3x3 neighbourhood."""
    m = masks.float().unsqueeze(1)
    highest, lowest = F.max_pool2d(m, 3, 1, 1), -F.max_pool2d(-m, 3, 1, 1)
    return (highest != lowest).squeeze(1)


def detail_placement(images: torch.Tensor, masks: torch.Tensor) -> tuple[float, float, float]:
    """Mean finest detail on mask boundaries, off them, and the boundaries' share of pixels."""
    detail, on = finest_detail(images.float()), mask_boundaries(masks)
    if not on.any() or on.all():
        raise SystemExit("every pixel is on a boundary, or none is: no placement to compare")
    return detail[on].mean().item(), detail[~on].mean().item(), on.float().mean().item()


def line(name: str, images: torch.Tensor, masks: torch.Tensor) -> str:
    on, off, share = detail_placement(images, masks)
    figures = f"detail on boundaries {on:.4f}, off them {off:.4f}, ratio {on / off:.2f}"
    return f"{name}: {figures} (boundaries {share:.3f} of pixels)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*", help="checkpoint folders or exported generators")
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset at the checkpoints' resolution")
    parser.add_argument("--n", type=int, default=128, help="photos and generated pairs (default 128)")
    args = parser.parse_args()
    cpu = torch.device("cpu")
    ds = PreparedDataset(args.data)
    idx = ds.indices("val", labeled_only=True)[: args.n]
    if not len(idx):
        raise SystemExit(f"{args.data}: no labelled validation photos")
    photos, masks = ds.load_batch(idx)
    photos = to_signed(photos)
    print(line(f"{len(idx)} real validation photos", photos, masks.long()))
    for ckpt in args.checkpoints:
        model = load_generator(Path(ckpt), cpu)
        G, st = model.G.eval(), model.growth
        if st.seg_level is None:
            raise SystemExit(f"{ckpt}: the generator draws no masks yet")
        z, noise = seed_latents(G, list(range(args.n)), st.stage, cpu)
        with torch.no_grad():
            images, seg = G.synthesis(G.styles(z), st.stage, st.alpha, st.seg_level, noise)
        if images.shape[-2:] != photos.shape[-2:]:
            raise SystemExit(f"{ckpt}: draws {tuple(images.shape[-2:])}, the data is {tuple(photos.shape[-2:])}")
        print(line(f"{ckpt} (kimg {model.kimg:.1f}, alpha {st.alpha:.2f})", images, seg.argmax(1)))


if __name__ == "__main__":
    main()
