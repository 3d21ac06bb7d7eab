"""Pictures: coloured masks, overlays, labelled grids and class legends (numpy + Pillow)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def colorize(mask: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 colours."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return lut[mask]


def overlay(image: np.ndarray, mask: np.ndarray, palette, opacity: float = 0.55) -> np.ndarray:
    """Blend mask colours over an image, leaving background pixels untouched."""
    colored = colorize(mask, palette).astype(np.float32)
    out = image.astype(np.float32)
    person = (mask != 0)[..., None]
    out = np.where(person, (1 - opacity) * out + opacity * colored, out)
    return out.round().astype(np.uint8)


def triplet(image: np.ndarray, mask: np.ndarray, palette) -> np.ndarray:
    """image | coloured mask | overlay, side by side with a 1-pixel gap."""
    gap = np.full((image.shape[0], 1, 3), 255, np.uint8)
    return np.concatenate([image, gap, colorize(mask, palette), gap, overlay(image, mask, palette)], axis=1)


def grid(tiles: Sequence[np.ndarray], cols: int, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Arrange equally sized (H, W, 3) tiles in rows of `cols`."""
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + cols - 1) // cols
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), fill, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = tile
    return out


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement, so small samples stay crisp when looked at."""
    return image.repeat(factor, 0).repeat(factor, 1) if factor > 1 else image


def legend(names: Sequence[str], palette, width: int, swatch: int = 12) -> np.ndarray:
    """A strip naming each class beside its colour, wrapped to `width` pixels."""
    font = ImageFont.load_default()
    entries = []
    for name, color in zip(names, palette):
        text_w = int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(name, font=font))
        entries.append((name, tuple(int(c) for c in color), swatch + 4 + text_w + 10))
    rows, x = [[]], 0
    for entry in entries:
        if x + entry[2] > width and rows[-1]:
            rows.append([])
            x = 0
        rows[-1].append(entry)
        x += entry[2]
    line_h = swatch + 6
    img = Image.new("RGB", (width, line_h * len(rows) + 4), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for r, row in enumerate(rows):
        x = 4
        for name, color, w in row:
            y = 3 + r * line_h
            draw.rectangle([x, y, x + swatch, y + swatch], fill=color, outline=(90, 90, 90))
            draw.text((x + swatch + 4, y), name, fill=(0, 0, 0), font=font)
            x += w
    return np.asarray(img)


def with_legend(picture: np.ndarray, names: Sequence[str], palette) -> np.ndarray:
    strip = legend(names, palette, picture.shape[1])
    return np.concatenate([picture, strip], axis=0)


def labeled_row(tiles: Sequence[np.ndarray], label: str, label_width: int = 60) -> np.ndarray:
    """Prefix a row of tiles with a text label (for ψ values, style sources and such)."""
    row = np.concatenate(list(tiles), axis=1)
    img = Image.new("RGB", (label_width, row.shape[0]), (255, 255, 255))
    ImageDraw.Draw(img).text((4, row.shape[0] // 2 - 5), label, fill=(0, 0, 0), font=ImageFont.load_default())
    return np.concatenate([np.asarray(img), row], axis=1)


def save_png(array: np.ndarray, path) -> None:
    Image.fromarray(array).save(path)


def figure_img_tag(fig, alt: str, dpi: int = 90) -> str:
    """A matplotlib figure as a self-contained HTML <img> (PNG, base64); the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'
