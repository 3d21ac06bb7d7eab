"""Pictures of the latent space: traversals (GIF, MP4, PNG strip), style-mixing grids and
truncation sweeps. Every picture shows the mask beside the image with a legend of class colours."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch

from styleseg.errors import StylesegError
from styleseg.generate import level_class_map
from styleseg.models.load import LoadedGenerator
from styleseg.sampling import seed_latents, to_class_ids, to_uint8_images
from styleseg.viz import colorize, grid, labeled_row, save_png, upscale, with_legend


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation, the natural path between Gaussian latents (z keeps its norm)."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


class Renderer:
    """Synthesises from styles with fixed noise and renders image | coloured mask tiles."""

    def __init__(self, model: LoadedGenerator, device: torch.device, zoom: int = 4):
        self.model, self.device, self.zoom = model, device, zoom
        self.classes = level_class_map(model)
        self.st = model.growth

    def latents(self, seeds: list[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return seed_latents(self.model.G, seeds, self.st.stage, self.device)

    @torch.no_grad()
    def tiles(self, ws: torch.Tensor, noise: list[torch.Tensor]) -> list[np.ndarray]:
        img, seg = self.model.G.synthesis(ws, self.st.stage, self.st.alpha, self.st.seg_level, noise)
        images, masks = to_uint8_images(img), to_class_ids(seg)
        gap = np.full((images.shape[1], 1, 3), 255, np.uint8)
        return [
            upscale(np.concatenate([im, gap, colorize(m, self.classes.palette)], 1), self.zoom)
            for im, m in zip(images, masks)
        ]

    def legend(self, picture: np.ndarray) -> np.ndarray:
        return with_legend(picture, self.classes.classes, self.classes.palette)


def interpolate(
    model: LoadedGenerator,
    seeds: list[int],
    out: Path,
    device: torch.device,
    space: str = "z",
    steps: int = 16,
    psi: float = 1.0,
    fps: int = 12,
    strip_frames: int = 8,
) -> dict[str, Path]:
    """Traverse seed[0] -> seed[1] -> ... in Z (spherical) or W (linear); returns the files written."""
    r = Renderer(model, device)
    G = model.G
    z, noise = r.latents(seeds)
    noise = [n[:1] for n in noise]  # the same noise along the path: only the latent moves
    frames = []
    for i in range(len(seeds) - 1):
        for k in range(steps):
            t = k / steps
            if space == "z":
                ws = G.styles(slerp(z[i : i + 1], z[i + 1 : i + 2], t), psi)
            else:
                w0, w1 = G.styles(z[i : i + 1], psi), G.styles(z[i + 1 : i + 2], psi)
                ws = torch.lerp(w0, w1, t)
            frames.append(r.legend(r.tiles(ws, noise)[0]))
    frames.append(r.legend(r.tiles(G.styles(z[-1:], psi), noise)[0]))
    out.mkdir(parents=True, exist_ok=True)
    written = {"gif": out / f"interpolate-{space}.gif"}
    imageio.mimsave(written["gif"], frames, duration=1000 / fps, loop=0)
    if importlib.util.find_spec("imageio_ffmpeg") is not None:
        written["mp4"] = out / f"interpolate-{space}.mp4"
        even = [f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2] for f in frames]
        imageio.mimsave(written["mp4"], even, fps=fps, macro_block_size=1)
    pick = np.linspace(0, len(frames) - 1, min(strip_frames, len(frames))).round().astype(int)
    written["png"] = out / f"interpolate-{space}.png"
    save_png(grid([frames[i] for i in pick], cols=len(pick)), written["png"])
    return written


def style_mix(
    model: LoadedGenerator,
    col_seeds: list[int],
    row_seeds: list[int],
    out: Path,
    device: torch.device,
    psi: float = 1.0,
) -> Path:
    """Rows take coarse, middle or fine styles from a row seed; everything else from the column seed."""
    r = Renderer(model, device)
    G = model.G
    active = 2 * (r.st.stage + 1)
    thirds = {
        "coarse": (0, max(active // 3, 1)),
        "middle": (active // 3, 2 * active // 3),
        "fine": (2 * active // 3, active),
    }
    z_cols, noise = r.latents(col_seeds)
    z_rows, _ = r.latents(row_seeds)
    w_cols, w_rows = G.styles(z_cols, psi), G.styles(z_rows, psi)
    rows = [labeled_row(r.tiles(w_cols, noise), "source", 70)]
    for j, seed in enumerate(row_seeds):
        rows.append(labeled_row(r.tiles(w_rows[j : j + 1].expand(len(col_seeds), -1, -1), noise), f"seed {seed}", 70))
        for name, (a, b) in thirds.items():
            ws = w_cols.clone()
            ws[:, a:b] = w_rows[j, a:b]
            rows.append(labeled_row(r.tiles(ws, noise), f"+{name}", 70))
    path = out / "style-mix.png"
    out.mkdir(parents=True, exist_ok=True)
    save_png(r.legend(_stack(rows)), path)
    return path


def truncation_sweep(
    model: LoadedGenerator, seeds: list[int], psis: list[float], out: Path, device: torch.device
) -> Path:
    """The same seeds (rows) across a range of ψ (columns)."""
    r = Renderer(model, device)
    z, noise = r.latents(seeds)
    columns = [r.tiles(model.G.styles(z, psi), noise) for psi in psis]
    rows = [labeled_row([col[i] for col in columns], f"seed {s}", 70) for i, s in enumerate(seeds)]
    header = labeled_row([_caption(f"psi {p:g}", columns[0][0].shape[1]) for p in psis], "", 70)
    path = out / "truncation.png"
    out.mkdir(parents=True, exist_ok=True)
    save_png(r.legend(_stack([header] + rows)), path)
    return path


def _caption(text: str, width: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, 14), (255, 255, 255))
    ImageDraw.Draw(img).text((4, 1), text, fill=(0, 0, 0))
    return np.asarray(img)


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(padded, axis=0)


@torch.no_grad()
def sample_grid(
    model: LoadedGenerator,
    seeds: list[int],
    path: Path,
    device: torch.device,
    psi: float = 1.0,
    cols: int = 4,
    zoom: int = 2,
    beside: LoadedGenerator | None = None,
) -> Path:
    """image | mask | overlay for each seed, `cols` triplets a row, with a legend. With `beside`, each
    seed's triplet from that model follows (same seed, same ψ; the smaller of the two enlarged by
    nearest neighbours to the larger's size), so two models compare sample by sample."""
    from styleseg.sampling import synthesize
    from styleseg.viz import triplet

    classes = level_class_map(model)
    models = [model] + ([beside] if beside is not None else [])
    if beside is not None and list(level_class_map(beside).classes) != list(classes.classes):
        raise StylesegError(
            f"{beside.path}: draws other classes than {model.path}; pictures side by side need the same"
        )
    height = max(m.config.model.resolution[0] for m in models)
    rows = []
    for m in models:
        st = m.growth
        out = synthesize(m.G, seeds, st.stage, st.alpha, st.seg_level, psi, device)
        images, masks = to_uint8_images(out.img), to_class_ids(out.seg)
        factor = height // images.shape[1]
        rows.append(
            [triplet(upscale(images[i], factor), upscale(masks[i], factor), classes.palette) for i in range(len(seeds))]
        )
    tiles = [t for group in zip(*rows) for t in group]
    picture = with_legend(upscale(grid(tiles, cols=cols * len(models)), zoom), classes.classes, classes.palette)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(picture, path)
    return path
