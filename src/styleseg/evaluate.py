"""`styleseg evaluate`: are the images real, do the masks match them, is the data useful?

1. agreement: mIoU between each generated mask and the reference segmenter's prediction on the
   generated image, beside the segmenter's own validation mIoU (the ceiling of that number);
2. usefulness: the same segmenter budget trained on real, generated, real+generated, 50 real, and
   50 real + generated pairs, each scored on real validation data;
3. realism: Fréchet distance and KID in the reference segmenter's encoder features (always
   available offline), on images and on image+mask; Inception FID/KID when the `fid` extra and weights
   are available;
4. label statistics: class frequencies and their JS divergence, classes per image, fragmentation,
   person area and height.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from styleseg.data.prepare import prepare_dataset
from styleseg.data.store import PreparedDataset
from styleseg.errors import StylesegError
from styleseg.generate import GenerateOptions, generate_dataset
from styleseg.metrics.distribution import frechet_distance, js_divergence, kernel_inception_distance
from styleseg.metrics.labels import class_frequencies, classes_per_image, components_per_class, person_extent
from styleseg.metrics.segmenter import SegmenterConfig, cached_segmenter, embed, evaluate_segmenter, predict, scores
from styleseg.models.load import load_generator


def mask_layout(masks: np.ndarray, num_classes: int, cell: int = 8) -> np.ndarray:
    """(N, H, W) ids -> (N, K * H/cell * W/cell) area fractions per class on a coarse grid."""
    onehot = F.one_hot(torch.from_numpy(masks).long(), num_classes).permute(0, 3, 1, 2).float()
    return F.avg_pool2d(onehot, cell).flatten(1).double().numpy()


def inception_fid(real: torch.Tensor, fake: torch.Tensor, weights: str | None, feature=2048) -> dict:
    """Standard FID through torchmetrics (the `fid` extra): uint8 (N, 3, H, W) images. `feature` is the
    Inception feature size, or a stand-in nn.Module (tests); skipped with a reason when unavailable."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError:
        return {"skipped": "torchmetrics[image] not installed (pip install 'styleseg[fid]')"}
    kwargs = {"feature_extractor_weights_path": weights} if weights and isinstance(feature, int) else {}
    try:
        fid = FrechetInceptionDistance(feature=feature, **kwargs)
        fid.update(real, real=True)
        fid.update(fake, real=False)
        return {"fid": float(fid.compute())}
    except (OSError, RuntimeError, ModuleNotFoundError) as exc:  # no Inception weights or backbone offline
        return {"skipped": f"Inception FID unavailable ({exc}); pass --inception-weights PATH"}


def evaluate(
    ckpt: Path,
    data: Path,
    out: Path,
    n: int,
    psi: float,
    device: torch.device,
    cache: Path,
    inception_weights: str | None = None,
    low_label: int = 50,
    log=print,
) -> dict:
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    ds = PreparedDataset(data)
    model = load_generator(ckpt, device)
    if model.level is None or model.level.num_classes != ds.class_map.num_classes:
        raise StylesegError(
            f"{model.path}: the model emits {model.level.num_classes if model.level else 0} classes; "
            f"{ds.root} has {ds.class_map.num_classes}: evaluate a model trained to the finest level"
        )
    if tuple(model.config.model.resolution) != ds.resolution:
        raise StylesegError(
            f"{model.path}: model resolution {model.config.model.resolution} differs from the "
            f"dataset's {list(ds.resolution)}; prepare the data at the model resolution"
        )
    names = ds.class_map.classes
    K = len(names)
    seg_cfg = SegmenterConfig(num_classes=K)
    train_idx = ds.indices("train", labeled_only=True)
    log("reference segmenter on the real training split")
    ref, ref_path = cached_segmenter(cache, [(ds, train_idx)], seg_cfg, device, log)
    ceiling = evaluate_segmenter(ref, ds, "val", device)

    log(f"generating {n} pairs")
    gen_dir, gen_store = out / "generated", out / "generated-prepared"
    marker = out / "generated-source.json"
    source = {"checkpoint": str(model.path.resolve()), "psi": psi, "n": n}
    if marker.exists() and json.loads(marker.read_text()) != source:
        # samples of another checkpoint or setting must not be reused
        shutil.rmtree(gen_dir, ignore_errors=True)
        shutil.rmtree(gen_store, ignore_errors=True)
    marker.write_text(json.dumps(source))
    generate_dataset(model, gen_dir, GenerateOptions(n=n, psi=psi), device)
    if not (gen_store / "dataset.json").exists():
        prepare_dataset(gen_dir, gen_store, ds.resolution, None, workers=1)
    gen = PreparedDataset(gen_store)
    gen_all = np.arange(len(gen))
    gen_images, gen_masks = gen.load_batch(gen_all)
    gen_masks_np = gen_masks.numpy()

    # 1. agreement
    pred = predict(ref, gen_images, device)
    agreed = scores(gen_masks_np, pred, names)
    agreement = {"miou": agreed["miou"], "pixel_accuracy": agreed["pixel_accuracy"], "n": n, "per_class": agreed["iou"]}

    # 2. usefulness
    rng = np.random.default_rng(0)
    few = np.sort(rng.choice(train_idx, min(low_label, len(train_idx)), replace=False))
    regimes = {
        "real": [(ds, train_idx)],
        "generated": [(gen, gen_all)],
        "real+generated": [(ds, train_idx), (gen, gen_all)],
        f"{len(few)} real": [(ds, few)],
        f"{len(few)} real+generated": [(ds, few), (gen, gen_all)],
    }
    usefulness = {}
    for name, sets in regimes.items():
        log(f"segmenter trained on {name}")
        seg = ref if name == "real" else cached_segmenter(cache, sets, seg_cfg, device, log)[0]
        usefulness[name] = {"val": ceiling if name == "real" else evaluate_segmenter(seg, ds, "val", device)}
        if len(ds.indices("test", labeled_only=True)):
            usefulness[name]["test"] = evaluate_segmenter(seg, ds, "test", device)

    # 3. realism in the reference segmenter's features
    real_idx = np.concatenate([train_idx, ds.indices("val", labeled_only=True)])
    real_images, real_masks = ds.load_batch(real_idx)
    f_real, f_gen = embed(ref, real_images, device), embed(ref, gen_images, device)
    fm_real = np.concatenate([f_real, mask_layout(real_masks.numpy(), K)], 1)
    fm_gen = np.concatenate([f_gen, mask_layout(gen_masks_np, K)], 1)
    kid_img, kid_img_std = kernel_inception_distance(f_real, f_gen)
    kid_pair, kid_pair_std = kernel_inception_distance(fm_real, fm_gen)
    realism = {
        "fd_segmenter_image": frechet_distance(f_real, f_gen),
        "kid_segmenter_image": kid_img,
        "kid_segmenter_image_std": kid_img_std,
        "fd_segmenter_image_mask": frechet_distance(fm_real, fm_gen),
        "kid_segmenter_image_mask": kid_pair,
        "kid_segmenter_image_mask_std": kid_pair_std,
        "inception": inception_fid(real_images, gen_images, inception_weights),
    }

    # 4. label statistics
    rm = real_masks.numpy()
    freq_real, freq_gen = class_frequencies(rm, K), class_frequencies(gen_masks_np, K)
    area_r, height_r = person_extent(rm)
    area_g, height_g = person_extent(gen_masks_np)
    labels = {
        "class_frequency_real": dict(zip(names, freq_real.round(5).tolist())),
        "class_frequency_generated": dict(zip(names, freq_gen.round(5).tolist())),
        "js_divergence_bits": js_divergence(freq_real, freq_gen),
        "classes_per_image": {
            "real": float(classes_per_image(rm, K).mean()),
            "generated": float(classes_per_image(gen_masks_np, K).mean()),
        },
        "components_per_class": {
            "real": _nan_to_none(dict(zip(names, components_per_class(rm, K)))),
            "generated": _nan_to_none(dict(zip(names, components_per_class(gen_masks_np, K)))),
        },
        "person_area": {"real": float(area_r.mean()), "generated": float(area_g.mean())},
        "person_height": {"real": float(height_r.mean()), "generated": float(height_g.mean())},
    }
    metrics = {
        "checkpoint": str(model.path),
        "kimg": model.kimg,
        "data": str(ds.root),
        "n": n,
        "psi": psi,
        "segmenter": {"path": str(ref_path), "val": ceiling},
        "agreement": agreement,
        "usefulness": usefulness,
        "realism": realism,
        "labels": labels,
        "seconds": round(time.perf_counter() - start, 1),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    from styleseg.report import write_report

    write_report(metrics, out / "report.html", gen, ds, (area_r, height_r, area_g, height_g))
    return metrics


def _nan_to_none(d: dict) -> dict:
    return {k: (None if v is None or np.isnan(v) else round(float(v), 3)) for k, v in d.items()}


def summary_table(m: dict) -> str:
    lines = [
        f"reference segmenter, real val: mIoU {m['segmenter']['val']['miou']:.3f}, "
        f"pixel acc {m['segmenter']['val']['pixel_accuracy']:.3f}",
        f"agreement (generated mask vs segmenter on generated image, n={m['n']}): "
        f"mIoU {m['agreement']['miou']:.3f}, pixel acc {m['agreement']['pixel_accuracy']:.3f}",
        "usefulness (segmenter mIoU on real val):",
    ]
    for name, r in m["usefulness"].items():
        lines.append(f"  {name:<22} {r['val']['miou']:.3f}")
    rz = m["realism"]
    lines.append(
        f"realism (reference-segmenter features): FD image {rz['fd_segmenter_image']:.2f}, "
        f"KID image {rz['kid_segmenter_image']:.4f}, FD image+mask {rz['fd_segmenter_image_mask']:.2f}, "
        f"KID image+mask {rz['kid_segmenter_image_mask']:.4f}"
    )
    inc = rz["inception"]
    lines.append("Inception FID: " + (f"{inc['fid']:.2f}" if "fid" in inc else inc["skipped"]))
    lb = m["labels"]
    lines.append(
        f"labels: JS(class freq) {lb['js_divergence_bits']:.4f} bits; classes/image real "
        f"{lb['classes_per_image']['real']:.2f} gen {lb['classes_per_image']['generated']:.2f}; person area real "
        f"{lb['person_area']['real']:.3f} gen {lb['person_area']['generated']:.3f}; height real "
        f"{lb['person_height']['real']:.3f} gen {lb['person_height']['generated']:.3f}"
    )
    return "\n".join(lines)
