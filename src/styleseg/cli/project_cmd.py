"""`styleseg project`: redraw real photos with a generator and read their masks."""

from __future__ import annotations

import json
import time
from pathlib import Path

from styleseg.cli.common import add_device_arg, add_model_args, finite_float, folder_arg, load_model_arg, positive_int
from styleseg.errors import StylesegError
from styleseg.options import ProjectOptions


def register(sub) -> None:
    p = sub.add_parser(
        "project",
        help="fit the latent that redraws a photo; write the reconstruction, its mask and an overlay",
        description="Each photo is fitted to the model's shape as `prepare` fits photos, then a latent is fitted "
        "so that the generator redraws it (pixel distance plus a distance in the discriminator's features, where "
        "the model file carries its discriminator). Give photo files, or --data PREPARED to project a split of a "
        "prepared dataset and score the masks against its labels (and a reference segmenter's, with --reference).",
    )
    add_model_args(p)
    p.add_argument("photos", nargs="*", help="photo files (JPEG, PNG, WebP, ...)")
    p.add_argument("--out", required=True, type=folder_arg, help="output folder")
    p.add_argument("--data", default=None, help="a prepared dataset to project samples of instead of photo files")
    p.add_argument("--split", default="val", choices=["train", "val", "test"], help="with --data (default val)")
    p.add_argument("--n", type=positive_int, default=200, help="with --data: how many samples, evenly spread")
    p.add_argument("--reference", default=None, help="with --data: a segmenter folder to score on the same photos")
    p.add_argument("--steps", type=positive_int, default=ProjectOptions.steps, help="optimisation steps")
    p.add_argument("--lr", type=finite_float, default=ProjectOptions.lr, help="Adam's peak learning rate")
    p.add_argument(
        "--space", choices=["w", "w+"], default=ProjectOptions.space, help="one w, or one per layer (default w+)"
    )
    p.add_argument(
        "--perceptual-weight",
        type=finite_float,
        default=ProjectOptions.perceptual_weight,
        help="weight of the discriminator-feature distance (0: pixels only)",
    )
    p.add_argument("--batch", type=positive_int, default=ProjectOptions.batch, help="photos fitted together")
    add_device_arg(p)
    p.set_defaults(func=cmd_project)


def cmd_project(args) -> int:
    import numpy as np
    import torch

    from styleseg.data.samples import read_image
    from styleseg.device import resolve_device
    from styleseg.generate import level_class_map
    from styleseg.project import discriminator_of, fit_photo, project, to_tensor
    from styleseg.sampling import to_uint8_images

    if bool(args.photos) == bool(args.data):
        raise StylesegError("give photo files or --data PREPARED (one of them)")
    opts = ProjectOptions(
        steps=args.steps, lr=args.lr, space=args.space, perceptual_weight=args.perceptual_weight, batch=args.batch
    )
    device = resolve_device(args.device)
    if args.photos:  # every photo read (and refused, if broken) before any work
        names = [Path(p).stem for p in args.photos]
        if len(set(names)) != len(names):
            raise StylesegError("two photos share a file name; outputs are named after the photos")
        raw = [read_image(Path(p)) for p in args.photos]
        truth = None
    model = load_model_arg(args, device)
    classes = level_class_map(model)
    resolution = tuple(model.config.model.resolution)
    if args.data:
        ds, idx = _samples(args, classes, resolution)
        images, masks = ds.load_batch(idx)
        photos = images.permute(0, 2, 3, 1).numpy()
        truth = masks.numpy()
        names = [ds.ids[i] for i in idx]
    else:
        photos = np.stack([fit_photo(im, resolution) for im in raw])
    D = discriminator_of(model, device) if opts.perceptual_weight > 0 else None
    if opts.perceptual_weight > 0 and D is None:
        print("the model file carries no discriminator: fitting pixels alone")
    out = Path(args.out)
    start = time.perf_counter()
    results, pred_masks, sheet_rows = [], [], []
    for s in range(0, len(photos), opts.batch):
        batch = to_tensor(photos[s : s + opts.batch], device)
        proj = project(model, batch, opts, D)
        masks = proj.seg.argmax(1).to(torch.uint8).cpu().numpy()
        pred_masks.append(masks)
        redrawn = to_uint8_images(proj.img)
        _write(out, names[s : s + opts.batch], redrawn, masks, photos[s : s + opts.batch], classes)
        room = SHEET_ROWS - len(sheet_rows)
        sheet_rows += _sheet_rows(photos[s : s + opts.batch], redrawn, masks, truth, s, classes, room)
        per_photo = proj.seconds / len(batch)
        for name, err in zip(names[s : s + opts.batch], proj.pixel_error):
            results.append({"name": name, "steps": opts.steps, "seconds": round(per_photo, 3), "error": float(err)})
        print(
            f"projected {min(s + opts.batch, len(photos))}/{len(photos)}: {opts.steps} steps, {per_photo:.2f} s per "
            f"photo, mean absolute error {float(proj.pixel_error.mean()):.1f} (of 255)"
        )
    elapsed = time.perf_counter() - start
    summary = {
        "model": str(model.path),
        "options": vars(opts),
        "photos": len(results),
        "seconds_per_photo": round(elapsed / len(results), 3),
        "mean_error": round(float(np.mean([r["error"] for r in results])), 3),
        "threads": torch.get_num_threads(),
    }
    if truth is not None:
        summary.update(_scores(np.concatenate(pred_masks), truth, images, classes, args, device))
    with open(out / "projection.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in results)
    from styleseg.jsonio import write_json

    write_json(out / "summary.json", summary)
    _write_sheet(out / "sheet.png", sheet_rows, truth is not None, classes)
    print(
        f"{len(results)} photos in {elapsed:.1f} s ({summary['seconds_per_photo']} s per photo, {opts.steps} steps, "
        f"{opts.space}); mean absolute error {summary['mean_error']} (of 255); outputs in {out}"
    )
    if "projected_miou" in summary:
        ref = summary.get("reference_miou")
        print(
            f"masks of the projected photos vs their labels: mIoU {summary['projected_miou']:.3f}"
            + (f"; the reference segmenter on the same photos: {ref:.3f}" if ref is not None else "")
        )
    return 0


def _samples(args, classes, resolution):
    import numpy as np

    from styleseg.data.store import PreparedDataset

    ds = PreparedDataset(Path(args.data))
    if list(ds.class_map.classes) != list(classes.classes) or ds.resolution != resolution:
        raise StylesegError(
            f"{ds.root}: {ds.resolution[0]}x{ds.resolution[1]} with classes {list(ds.class_map.classes)}; the model "
            f"draws {resolution[0]}x{resolution[1]} with {list(classes.classes)}"
        )
    pool = ds.indices(args.split, labeled_only=True)
    if not len(pool):
        raise StylesegError(f"{ds.root}: split '{args.split}' has no labelled samples")
    idx = pool[np.linspace(0, len(pool) - 1, min(args.n, len(pool))).round().astype(int)]
    return ds, np.unique(idx)


def _scores(pred, truth, images, classes, args, device) -> dict:
    """mIoU of the projected masks against the labels, per class, and the reference's on the same photos."""
    from styleseg.metrics.segmentation import confusion_matrix, iou_per_class, mean_iou

    k = classes.num_classes
    cm = confusion_matrix(truth, pred, k)
    out = {
        "projected_miou": float(mean_iou(cm)),
        "projected_iou": {n: round(float(v), 4) for n, v in zip(classes.classes, iou_per_class(cm)) if v == v},
    }
    if args.reference:
        from styleseg.metrics.segmenter import load_segmenter, predict

        ref, _ = load_segmenter(Path(args.reference), device)
        ref_cm = confusion_matrix(truth, predict(ref, images, device), k)
        out["reference_miou"] = float(mean_iou(ref_cm))
        out["reference_iou"] = {n: round(float(v), 4) for n, v in zip(classes.classes, iou_per_class(ref_cm)) if v == v}
    return out


def _write(out: Path, names, images, masks, photos, classes) -> None:
    import numpy as np
    from PIL import Image

    from styleseg.viz import overlay

    for sub in ("reconstructions", "masks", "overlays", "photos"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    palette = [c for color in classes.palette for c in color] + [0] * (768 - 3 * len(classes.palette))
    for name, image, mask, photo in zip(names, images, masks, photos):
        Image.fromarray(np.asarray(photo, np.uint8)).save(out / "photos" / f"{name}.png")
        Image.fromarray(image).save(out / "reconstructions" / f"{name}.png")
        pmask = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask).tobytes())
        pmask.putpalette(palette)
        pmask.save(out / "masks" / f"{name}.png")
        Image.fromarray(overlay(np.asarray(photo, np.uint8), mask, classes.palette)).save(
            out / "overlays" / f"{name}.png"
        )


SHEET_ROWS = 8


def _sheet_rows(photos, redrawn, masks, truth, start: int, classes, room: int) -> list:
    """Rows of the contact sheet: photo | redrawn | its mask (| labelled mask when --data gives labels)."""
    import numpy as np

    from styleseg.viz import colorize

    rows = []
    for i, (photo, image, mask) in enumerate(zip(photos[:room], redrawn, masks)):
        row = [np.asarray(photo, np.uint8), image, colorize(mask, classes.palette)]
        if truth is not None:
            row.append(colorize(truth[start + i], classes.palette))
        rows.append(row)
    return rows


def _write_sheet(path: Path, rows: list, labelled: bool, classes) -> None:
    """The first photos with what the model made of them, enlarged, one row each, under the class legend."""
    from styleseg.viz import grid, save_png, upscale, with_legend

    if not rows:
        return
    factor = max(1, 192 // rows[0][0].shape[0])
    tiles = [upscale(tile, factor) for row in rows for tile in row]
    picture = with_legend(grid(tiles, cols=len(rows[0])), classes.classes, classes.palette)
    save_png(picture, path)
    columns = "photo | redrawn | its mask" + (" | labelled mask" if labelled else "")
    print(f"sheet of {len(rows)} photos ({columns}): {path}")
