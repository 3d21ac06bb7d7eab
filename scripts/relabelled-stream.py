"""Streamed pairs with masks from somewhere other than the generator's own head: the two
measurements of docs/synthetic-data.md, "Relabelled streams".

1. DatasetGAN's lever: can a few real labels, read through the generator, give its pairs better
   masks than its own output head draws?

    python scripts/relabelled-stream.py project --split train --labels 100 --seed 0 --out FL  # `--labels 100`'s
    python scripts/relabelled-stream.py project --split val --n 64 --out FL    # held-out photos, evenly spread
    python scripts/relabelled-stream.py fit --out FL --epochs 8 --balance 0.5  # head on train, scored on val
    python scripts/relabelled-stream.py train --out FL --balance 0.5 -- SEGMENTER-TRAIN-OPTIONS  # its masks

   `project` fits a W+ latent to each photo (`styleseg project`'s defaults) and keeps it with the
   photo's label. `fit` takes the generator's synthesis features at those latents (every block's
   output, up-sampled to the output size and stacked: DatasetGAN's pixel representation), teaches a
   per-pixel MLP the real labels of the projected training photos, and scores it against the labels
   of the projected validation photos, beside the generator's own mask head on the same redrawings.

2. Images or masks? A strong segmenter as the teacher of the generated images (`--teacher FOLDER`):
   a segmenter trained on generated images with the teacher's masks shows what the images alone
   can teach; the gap to one trained on the generator's own masks is what its masks cost.

    python scripts/relabelled-stream.py train --out FL --teacher seg/f-all-real -- SEGMENTER-TRAIN-OPTIONS

`train` runs `styleseg segmenter train` with the stream's targets replaced (`--mix m`: m x the new
probabilities + (1 - m) x the generator's own) and the replacement recorded in the stream's
description, so the segmenter cache keeps such runs apart from plain streamed ones.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from styleseg.data.budget import segmenter_labels
from styleseg.data.store import PreparedDataset
from styleseg.metrics.segmentation import confusion_matrix, iou_per_class
from styleseg.models.zoo import load_model
from styleseg.options import ProjectOptions
from styleseg.project import discriminator_of, fixed_noise, project, to_tensor


def stacked(feats: list[torch.Tensor], size) -> torch.Tensor:
    """(B, C, H, W): the blocks' outputs up-sampled to the output size and stacked (in fp32)."""
    up = [
        F.interpolate(f.float(), size=size, mode="bilinear", align_corners=False) if f.shape[-2:] != size else f.float()
        for f in feats
    ]
    return torch.cat(up, 1)


def synthesis_features(G, ws, stage, seg_level, noise) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(img, seg logits, features (B, C, H, W)): every block's output up-sampled to the output size."""
    feats = []
    hooks = [blk.register_forward_hook(lambda m, i, o: feats.append(o)) for blk in G.blocks[: stage + 1]]
    try:
        img, seg = G.synthesis(ws, stage, 1.0, seg_level, noise)
    finally:
        for h in hooks:
            h.remove()
    return img, seg, stacked(feats, img.shape[-2:])


def cmd_project(args) -> None:
    model = load_model(args.model, torch.device("cpu"))
    ds = PreparedDataset(Path(args.data))
    pool = ds.indices(args.split, labeled_only=True)
    if args.labels:  # the photos `segmenter train --labels N --seed S` trains on
        idx = segmenter_labels(pool, args.labels, args.seed)
    else:
        idx = np.unique(pool[np.linspace(0, len(pool) - 1, min(args.n, len(pool))).round().astype(int)])
    images, masks = ds.load_batch(idx)
    D = discriminator_of(model, torch.device("cpu"))
    opts = ProjectOptions()
    ws, start = [], time.perf_counter()
    for s in range(0, len(idx), opts.batch):
        photos = to_tensor(images[s : s + opts.batch].permute(0, 2, 3, 1).numpy(), torch.device("cpu"))
        proj = project(model, photos, opts, D)
        ws.append(proj.ws)
        print(f"projected {min(s + opts.batch, len(idx))}/{len(idx)}, error {proj.pixel_error.mean():.1f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"idx": idx, "ws": torch.cat(ws), "masks": masks, "images": images}, out / f"{args.split}.pt")
    print(f"{len(idx)} photos in {time.perf_counter() - start:.0f} s -> {out / f'{args.split}.pt'}")


class PixelMLP(torch.nn.Module):
    """DatasetGAN's pixel classifier, as 1x1 convolutions."""

    def __init__(self, c_in: int, k: int, hidden: int = 256):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(c_in, hidden, 1),
            torch.nn.ReLU(),
            torch.nn.BatchNorm2d(hidden),
            torch.nn.Conv2d(hidden, hidden // 2, 1),
            torch.nn.ReLU(),
            torch.nn.BatchNorm2d(hidden // 2),
            torch.nn.Conv2d(hidden // 2, k, 1),
        )

    def forward(self, x):
        return self.net(x)


def features_of(G, st, data):
    noise = fixed_noise(G, st.stage, len(data["ws"]), torch.device("cpu"))
    with torch.no_grad():
        img, seg, f = synthesis_features(G, data["ws"], st.stage, st.seg_level, noise)
    return img, seg, f


def scores(pred: torch.Tensor, truth: torch.Tensor, k: int) -> np.ndarray:
    return iou_per_class(confusion_matrix(truth.numpy(), pred.numpy(), k))


def cmd_fit(args) -> None:
    torch.manual_seed(args.seed)
    model = load_model(args.model, torch.device("cpu"))
    G, st = model.G.eval(), model.growth
    out = Path(args.out)
    train, val = torch.load(out / "train.pt", weights_only=False), torch.load(out / "val.pt", weights_only=False)
    _, _, f_train = features_of(G, st, train)
    _, seg_val, f_val = features_of(G, st, val)
    mean, std = f_train.mean((0, 2, 3), keepdim=True), f_train.std((0, 2, 3), keepdim=True) + 1e-6
    f_train, f_val = (f_train - mean) / std, (f_val - mean) / std
    y = train["masks"].long()
    k = seg_val.shape[1]
    names = list(model.class_map.classes)
    counts = torch.bincount(y.flatten(), minlength=k).float()
    weight = (counts.sum() / (k * counts.clamp(min=1))) ** args.balance if args.balance else None
    head = PixelMLP(f_train.shape[1], k)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    n = len(f_train)
    start = time.perf_counter()
    for _epoch in range(args.epochs):
        head.train()
        for b in torch.randperm(n).split(args.batch):
            x, t = f_train[b], y[b]
            if torch.rand(()) < 0.5:  # flip, as the segmenters' training does
                x, t = x.flip(-1), t.flip(-1)
            loss = F.cross_entropy(head(x), t, weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
    head.eval()
    with torch.no_grad():
        pred_head = torch.cat([head(f_val[i : i + 16]).argmax(1) for i in range(0, len(f_val), 16)])
        pred_train = torch.cat([head(f_train[i : i + 16]).argmax(1) for i in range(0, n, 16)])
    truth = val["masks"].long()
    own = scores(seg_val.argmax(1), truth, k)
    mlp = scores(pred_head, truth, k)
    fit = scores(pred_train, y, k)
    present = ~np.isnan(own)
    took = time.perf_counter() - start
    print(f"fit in {took:.0f} s; {f_train.shape[1]} features, {args.epochs} epochs, balance {args.balance}")
    print(f"{'class':<16}{'own head':>10}{'MLP':>8}{'MLP on train':>14}")
    for c in range(k):
        print(f"{names[c]:<16}{own[c]:>10.3f}{mlp[c]:>8.3f}{fit[c]:>14.3f}")
    print(f"{'mean':<16}{np.nanmean(own):>10.3f}{np.nanmean(mlp[present]):>8.3f}{np.nanmean(fit):>14.3f}")
    torch.save({"state": head.state_dict(), "mean": mean, "std": std}, out / f"head-b{args.balance}.pt")


def cmd_train(args, rest: list[str]) -> None:
    """`styleseg segmenter train REST` with the streamed pairs' targets from the fitted head or the
    teacher (`--mix m`: probabilities m x those + (1 - m) x the generator's own)."""
    from styleseg.cli.main import main as styleseg_main
    from styleseg.data.pixels import quantize
    from styleseg.metrics.segmenter import load_segmenter
    from styleseg.stream import PairStream

    if args.teacher:
        teacher = load_segmenter(Path(args.teacher), torch.device("cpu"))[0].eval()
        source = {"teacher": str(args.teacher)}
    else:
        saved = torch.load(Path(args.out) / f"head-b{args.balance}.pt", weights_only=False)
        # read from the pass that drew the pairs (under the stream's dtype), not a second fp32 pass
        source = {"label_head": f"head-b{args.balance}", "features": "drawing pass"}
    heads = {}

    class RelabelledStream(PairStream):
        """The stream's pairs (latents, ψ, style mixing, targeting alike), read by the teacher or the head."""

        def __init__(self, model, *rest, **kw):
            self.features: list[torch.Tensor] = []
            if not args.teacher:  # the head reads the features of the very pass that drew the pairs
                blocks = model.G.blocks[: model.growth.stage + 1]
                blocks[0].register_forward_pre_hook(lambda m, i: self.features.clear())
                for blk in blocks:
                    blk.register_forward_hook(lambda m, i, o: self.features.append(o))
            super().__init__(model, *rest, **kw)  # fits the targeter, if any, through relabel

        def relabel(self, img, seg, ws, noise):
            if args.teacher:  # the teacher reads the image as the segmenter will see it (8-bit)
                with self.autocast:
                    new = teacher.to(img.device)(quantize(img)).float().softmax(1)
            else:
                f = stacked(self.features, img.shape[-2:])
                if "h" not in heads:
                    h = PixelMLP(f.shape[1], seg.shape[1])
                    h.load_state_dict(saved["state"])
                    heads["h"] = h.eval()
                new = heads["h"]((f - saved["mean"]) / saved["std"]).softmax(1)
            probs = new * args.mix + seg.softmax(1) * (1 - args.mix)
            return probs.clamp_min(1e-8).log()

        def describe(self):  # a cache key of its own: never mistaken for the generator's own masks
            return {**super().describe(), **source, "mix": args.mix}

    raise SystemExit(styleseg_main(["segmenter", "train", *rest], overrides={"stream_type": RelabelledStream}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("phase", choices=["project", "fit", "train"])
    p.add_argument("--mix", type=float, default=1.0, help="train: share of the new masks in the targets")
    p.add_argument("--teacher", default=None, help="train: a segmenter folder whose reading of the images is the mask")
    p.add_argument("--model", default="viton64-lip12")
    p.add_argument("--data", default="prepared/viton64")
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--labels", type=int, default=0)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--balance", type=float, default=0.0, help="class weight (inverse frequency) ** balance")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, rest = p.parse_args(argv[:cut]), argv[cut + 1 :]  # after --: `styleseg segmenter train`'s options
    if args.phase == "train":
        cmd_train(args, rest)
    cmd_project(args) if args.phase == "project" else cmd_fit(args)


if __name__ == "__main__":
    main()
