"""Export (image, mask) pairs from a trained generator in the paired-folder layout:

    images/NNNNNN.png   RGB
    masks/NNNNNN.png    palette PNG: pixel values are class ids, the palette is the class palette
    overlays/NNNNNN.png optional
    classes.json        the class table (the layout `styleseg prepare` reads back)
    manifest.jsonl      one line per seed: name, seed, psi, kept, per-class pixel fractions
    generation.json     what decides which pairs the folder holds: the generator (its weights'
                        digest), seed, truncation, filters and class targeting

NNNNNN is the sample's seed; each sample is a pure function of (checkpoint, seed, psi), so a run can
be interrupted and continued, and any sample regenerated alone. Continuing a folder made with other
options would mix two generations: it is refused (`force` starts the folder over). PNG encoding happens on writer
threads while the next batch is generated.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from styleseg.data.classes import ClassMap, write_classes_json
from styleseg.errors import StylesegError
from styleseg.jsonio import write_json
from styleseg.models.load import LoadedGenerator, generator_digest
from styleseg.options import GenerateOptions
from styleseg.sampling import synthesize, to_class_ids, to_uint8_images, upsample_pair
from styleseg.targeting import ClassTargeter, class_ids_for, targeted_slot
from styleseg.viz import overlay


def level_class_map(model: LoadedGenerator) -> ClassMap:
    """The class table of the level the model emits (the full class map at the finest level)."""
    levels = model.class_map.levels()
    if model.growth.seg_level is None:
        raise StylesegError(f"{model.path}: this model has no segmentation channels yet (trained on images only)")
    if model.growth.seg_level == len(levels) - 1:
        return model.class_map
    level = levels[model.growth.seg_level]
    return ClassMap(f"{model.class_map.name}-level{model.growth.seg_level}", level.names, level.palette)


def _save_png_atomic(image: Image.Image, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


def _read_manifest(path: Path) -> dict[int, dict]:
    """Seeds already done; a partial last line (interrupted write) is dropped."""
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            done[int(record["seed"])] = record
    return done


GENERATED = ("images", "masks", "overlays", "manifest.jsonl", "classes.json", "generation.json")
"""What a generation writes into its folder (and `force` removes)."""


def check_continuation(out: Path, record: dict, force: bool = False) -> None:
    """Refuse to add to a folder that holds another generation (other options, or files without a
    record of how they were made); with `force`, remove what a generation wrote there instead."""
    out = Path(out)
    present = [name for name in GENERATED if (out / name).exists()]
    if not present:
        return
    if force:
        for name in present:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        return
    path = out / "generation.json"
    if not path.exists():
        raise StylesegError(
            f"{out}: holds {', '.join(present)} but no generation.json (not written by this version of "
            "`styleseg generate`): choose a new --out, or pass --force to start the folder over"
        )
    try:
        before = json.loads(path.read_text())
    except ValueError as exc:
        raise StylesegError(f"{path}: corrupt ({exc}); pass --force to start the folder over") from exc
    before.setdefault("upsample", 0)  # written before --upsample existed
    changed = [f"{k} {before.get(k)!r} there, {v!r} now" for k, v in record.items() if before.get(k) != v]
    if changed:
        raise StylesegError(
            f"{out}: holds pairs generated with other options ({'; '.join(changed)}): continuing would mix two "
            "generations; choose a new --out, or pass --force to start the folder over"
        )


def generate_dataset(
    model: LoadedGenerator,
    out: Path,
    opts: GenerateOptions,
    device: torch.device,
    progress: Callable[[int, int], None] | None = None,
    force: bool = False,
) -> dict:
    """Generate until `opts.n` samples are kept; returns counts. Continues an interrupted run in `out`
    made with the same options; refuses one made with others (or, with `force`, starts over)."""
    class_map = level_class_map(model)
    palette = [c for color in class_map.palette for c in color] + [0] * (768 - 3 * len(class_map.palette))
    overlay_palette = class_map.palette if opts.overlays else None
    out = Path(out)
    record = {"model": str(model.path), "generator_sha256_16": generator_digest(model), **opts.record()}
    targeter = _targeter(model, class_map, opts, device)
    if opts.write:
        check_continuation(out, record, force)
        for sub in ["images", "masks"] + (["overlays"] if opts.overlays else []):
            (out / sub).mkdir(parents=True, exist_ok=True)
        classes_path = out / "classes.json"
        if classes_path.exists() and json.loads(classes_path.read_text()) != class_map.to_json():
            raise StylesegError(f"{classes_path}: {out} holds samples of another class map; choose a new --out")
        write_classes_json(class_map, classes_path)
        write_json(out / "generation.json", record)
    manifest_path = out / "manifest.jsonl"
    done = _read_manifest(manifest_path) if opts.write else {}
    for seed, record in done.items():
        if record["kept"] and not (out / "masks" / f"{record['name']}.png").exists():
            raise StylesegError(f"{manifest_path}: lists seed {seed} but masks/{record['name']}.png is missing")
    kept = sum(r["kept"] for r in done.values())
    dropped = len(done) - kept
    resumed = len(done)
    st = model.growth
    next_seed = opts.seed
    manifest = open(manifest_path, "a") if opts.write else None
    pool = ThreadPoolExecutor(opts.threads) if opts.write else None
    try:
        while kept < opts.n:
            if dropped > 10 * opts.n + 100:
                raise StylesegError(
                    f"the filters dropped {dropped} samples for {kept} kept; relax --min-person-fraction, "
                    f"--require-person, --min-confidence or --min-agreement (or check the model)"
                )
            seeds, targets = [], []
            while len(seeds) < min(opts.batch, opts.n - kept):
                slot = kept + dropped + len(seeds)  # the slot's position in the generation
                wanted = targeted_slot(slot, targeter[1], len(opts.classes)) if targeter else None
                if wanted is not None:  # a seed whose mask shows the class, from the slot's own block
                    found = targeter[0].draw([wanted], [opts.seed + TARGETED_SEEDS + (slot << 20)])
                    seeds.append(found.seeds[0])
                    targets.append(opts.classes[wanted])
                    continue
                if next_seed not in done:
                    seeds.append(next_seed)
                    targets.append(None)
                next_seed += 1
            with torch.no_grad():
                out_t = synthesize(model.G, seeds, st.stage, st.alpha, st.seg_level, opts.psi, device)
            img, seg = upsample_pair(out_t.img, out_t.seg, opts.upsample)
            images, masks = to_uint8_images(img), to_class_ids(seg)
            confidence = seg.float().softmax(1).amax(1).mean(dim=(1, 2)).cpu().numpy()  # (B,)
            agreement = _agreement(opts, images, masks, class_map.num_classes, device)
            records, writes = [], []
            for i, seed in enumerate(seeds):
                counts = np.bincount(masks[i].ravel(), minlength=class_map.num_classes) / masks[i].size
                person = 1.0 - counts[0]
                # seeds never outnumber the pairs still wanted, so kept cannot pass opts.n here
                keep = not (opts.require_person and person == 0) and person >= opts.min_person_fraction
                keep = keep and confidence[i] >= opts.min_confidence
                keep = keep and (agreement is None or agreement[i] >= opts.min_agreement)
                name = f"{seed:06d}"
                records.append(
                    {
                        "name": name,
                        "seed": seed,
                        "psi": opts.psi,
                        "kept": bool(keep),
                        **({"targeted": targets[i]} if targets[i] else {}),
                        "person_fraction": round(float(person), 6),
                        "confidence": round(float(confidence[i]), 6),
                        **({"agreement": round(float(agreement[i]), 6)} if agreement is not None else {}),
                        "class_fractions": {c: round(float(f), 6) for c, f in zip(class_map.classes, counts)},
                    }
                )
                kept, dropped = kept + keep, dropped + (not keep)
                if opts.write and keep:
                    writes.append(pool.submit(_write_sample, out, name, images[i], masks[i], palette, overlay_palette))
            if opts.write:
                for future in writes:  # manifest lines only after the files are complete
                    future.result()
                manifest.writelines(json.dumps(r) + "\n" for r in records)
            if manifest:
                manifest.flush()
            if progress:
                progress(kept, opts.n)
    finally:
        if pool:
            pool.shutdown()
        if manifest:
            manifest.close()
    return {"kept": kept, "dropped": dropped, "resumed": resumed, "next_seed": next_seed}


TARGETED_SEEDS = 1 << 32
"""Class-targeted slots draw their candidates from seeds seed + 2**32 + slot * 2**20 onwards."""


def _targeter(model: LoadedGenerator, class_map: ClassMap, opts: GenerateOptions, device):
    """(ClassTargeter, share of slots to target) for class-targeted generation, or None."""
    if not opts.classes or opts.class_rate <= 0:
        return None
    st = model.growth

    def class_ids(seeds):
        with torch.no_grad():
            return synthesize(model.G, seeds, st.stage, st.alpha, st.seg_level, opts.psi, device).seg.argmax(1)

    ids = class_ids_for(opts.classes, class_map.classes)
    targeter = ClassTargeter(model.G, class_ids, lambda seeds: torch.full((len(seeds),), opts.psi), ids, opts.classes)
    targeter.fit()
    return targeter, targeter.targeted_share(opts.class_rate)


def _agreement(opts: GenerateOptions, images: np.ndarray, masks: np.ndarray, k: int, device) -> np.ndarray | None:
    """Per-sample mIoU of each generated mask against the filter segmenter's prediction, or None."""
    if opts.filter_segmenter is None:
        return None
    from styleseg.metrics.segmentation import per_sample_miou
    from styleseg.metrics.segmenter import predict

    pred = predict(opts.filter_segmenter, torch.from_numpy(images).permute(0, 3, 1, 2), device)
    return per_sample_miou(masks, pred, k)


def _write_sample(
    out: Path, name: str, image: np.ndarray, mask: np.ndarray, palette: list[int], overlay_palette
) -> None:
    _save_png_atomic(Image.fromarray(image), out / "images" / f"{name}.png")
    pmask = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask).tobytes())
    pmask.putpalette(palette)  # indices are class ids; the palette only colours them
    _save_png_atomic(pmask, out / "masks" / f"{name}.png")
    if overlay_palette is not None:
        _save_png_atomic(Image.fromarray(overlay(image, mask, overlay_palette)), out / "overlays" / f"{name}.png")
