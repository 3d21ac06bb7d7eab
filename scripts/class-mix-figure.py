"""What `segmenter train --class-mix` shows the segmenter: streamed pairs with half of a real
sample's classes pasted over them (docs/class-mix.png).

    python scripts/class-mix-figure.py --data prepared/viton64 --generator viton64-lip12 --out docs/class-mix.png

Per row: the generated pair (image, mask), the real sample it takes classes from (image, label),
and what the segmenter is taught with (image, target's argmax). The real samples are labelled train
samples from `--first` on; each row's donor is the one `paste_real_classes` drew, as in training.
"""

from __future__ import annotations

import argparse

import torch

from styleseg.cli.common import load_generator_spec
from styleseg.data.pixels import to_signed
from styleseg.data.store import PreparedDataset
from styleseg.metrics.segmenter_train import paste_real_classes
from styleseg.options import StreamOptions
from styleseg.sampling import to_class_ids, to_uint8_images
from styleseg.stream import PairStream
from styleseg.viz import colorize, grid, save_png, upscale, with_legend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a prepared dataset")
    parser.add_argument("--generator", required=True, help="a shipped model's name or a checkpoint")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--rows", type=int, default=6)
    parser.add_argument("--first", type=int, default=100, help="first labelled train sample shown")
    parser.add_argument("--step", type=int, default=3, help="which step's streamed pairs")
    parser.add_argument("--seed", type=int, default=5, help="seed of the draws that pick donors and classes")
    args = parser.parse_args()
    device, n = torch.device("cpu"), args.rows
    ds = PreparedDataset(args.data)
    stream = PairStream(load_generator_spec(args.generator, device), StreamOptions(style_mixing=0.5), device)
    batch = stream.draw(args.step, n)
    idx = ds.indices("train", labeled_only=True)[args.first : args.first + n]
    if len(idx) < n:
        raise SystemExit(f"{args.data}: fewer than {n} labelled train samples from --first {args.first}")
    images, masks = ds.load_batch(idx)
    real, labels = to_signed(images), masks.long()
    x = torch.cat([real, batch.images])
    mix = paste_real_classes(x, labels, batch.probs, 1.0, torch.Generator().manual_seed(args.seed))
    shown, taught = to_uint8_images(x), to_uint8_images(mix.images)
    drawn, targets, real_labels = to_class_ids(batch.probs), to_class_ids(mix.probs), labels.numpy()
    palette = ds.class_map.palette
    tiles = []
    for i in range(n):
        donor = mix.donors[i]
        tiles += [
            shown[n + i],
            colorize(drawn[i], palette),
            shown[donor],
            colorize(real_labels[donor], palette),
            taught[n + i],
            colorize(targets[i], palette),
        ]
    save_png(with_legend(upscale(grid(tiles, cols=6), 2), ds.class_map.classes, palette), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
