"""How much the newest resolution's heads decide while they fade in, per checkpoint.

    python scripts/fade-heads.py runs/v128/00000-viton128/checkpoints/ckpt-000775680 [more checkpoints]

For 32 seeds: the spread of the old (up-sampled) and the new head's mask logits, the share of pixels
where their argmax agrees, and the share where G's faded output takes the new head's argmax (with a
lerp of logits a trained head's ~40x larger logits decide every pixel until alpha is ~1); and the
two heads' images: their contrast (std over pixels and channels), mean colour distance from each
other, and mean absolute difference (a new head that pulls the image to flat grey shows as low
contrast and a colour offset). With residual heads (model.residual_heads_from) the "old head" is
the stage below's output smoothly up-sampled, and |new - old| is what the new stage adds.

--picture PATH draws, for the first 6 seeds of each checkpoint, three rows: the old head's image
(up-sampled), the new head's, and their difference times 4 around grey (what the new stage adds:
detail shows as edges, a repainting stage as coloured regions).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from styleseg.models.layers import upsample2, upsample2_smooth
from styleseg.models.load import load_generator
from styleseg.sampling import seed_latents, to_uint8_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--seeds", type=int, default=32)
    parser.add_argument("--picture", type=Path, default=None, help="PNG of old, new and 4x their difference")
    args = parser.parse_args()
    cpu = torch.device("cpu")
    rows = []
    for ckpt in args.checkpoints:
        model = load_generator(Path(ckpt), cpu)
        G, st = model.G.eval(), model.growth
        if st.stage == 0 or st.seg_level is None:
            raise SystemExit(f"{ckpt}: no lower resolution with a mask to compare with (stage {st.stage})")
        residual = G.cfg.residual_heads_from is not None and G.cfg.residual_heads_from <= st.stage
        up = upsample2_smooth if residual else upsample2
        z, noise = seed_latents(G, list(range(args.seeds)), st.stage, cpu)
        with torch.no_grad():
            ws = G.styles(z)
            # each head alone: the stage below at alpha 1 (up-sampled), this stage at alpha 1, the mix
            old_img, old = (up(t) for t in G.synthesis(ws, st.stage - 1, 1.0, st.seg_level, noise[: 2 * st.stage]))
            new_img, new = G.synthesis(ws, st.stage, 1.0, st.seg_level, noise)
            faded = G.synthesis(ws, st.stage, st.alpha, st.seg_level, noise)[1]
        agree = (old.argmax(1) == new.argmax(1)).float().mean()
        follows = (faded.argmax(1) == new.argmax(1)).float().mean()
        colour_gap = (new_img.mean((0, 2, 3)) - old_img.mean((0, 2, 3))).norm()
        print(
            f"{ckpt}: kimg {model.kimg:.1f}, alpha {st.alpha:.3f}: logit std old {old.std():.2f}, new {new.std():.2f};"
            f" argmax old = new on {agree:.3f} of pixels; the output follows the new head on {follows:.3f};"
            f" image std old {old_img.std():.3f}, new {new_img.std():.3f}; mean colour gap {colour_gap:.3f};"
            f" mean |new - old| {(new_img - old_img).abs().mean():.3f}"
        )
        for img in (old_img, new_img, 4 * (new_img - old_img)):
            rows.append(np.concatenate(list(to_uint8_images(img[:6])), axis=1))
    if args.picture:
        Image.fromarray(np.concatenate(rows, axis=0)).save(args.picture)
        print(f"picture: {args.picture}")


if __name__ == "__main__":
    main()
