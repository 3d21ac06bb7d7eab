"""`styleseg evaluate`: are the images real, do the masks match them, is the data useful?

1. agreement: mIoU between each generated mask and the reference segmenter's prediction on the
   generated image, beside the segmenter's own mIoU on held-out real data (the ceiling);
2. usefulness: the same segmenter trained on real, generated, real + generated, N real, N real +
   generated, and generated -> N real (pre-train, fine-tune), each with several seeds; mean, spread,
   and the paired difference to the real-only baseline with a 95 % interval (see metrics/usefulness.py);
   optionally also on the generated pairs that pass a filter, to show what filtering buys;
3. realism: Fréchet distance (in as many principal components as the sample count supports) and KID
   (with its spread) in the reference segmenter's features, on images and on image + pooled mask
   layout, against real samples the segmenter never trained on (validation) and, labelled, against
   training samples; precision, recall, density and coverage against validation (beside what as many
   real training photos score there: the mark a generator drawing real photos would reach); Inception
   FID with the `fid` extra;
4. label statistics: class frequencies and their JS divergence, classes per image, fragmentation,
   person area and height.

Validation is split in two fixed halves (metrics/segmenter.py): segmenter training stops on the
selection half; every reported score uses the report half, and the test split where there is one.
Everything streams its data in chunks, so memory stays bounded by the chunk size, not the sample count.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from styleseg.data.budget import segmenter_labels
from styleseg.data.prepare import prepare_dataset
from styleseg.data.store import PreparedDataset
from styleseg.errors import StylesegError
from styleseg.generate import generate_dataset
from styleseg.jsonio import write_json
from styleseg.metrics.distribution import js_divergence, kernel_inception_distance, precision_recall, reduced_frechet
from styleseg.metrics.labels import LabelStatistics
from styleseg.metrics.segmentation import (
    agreement_interval,
    confusion_text,
    excess_confusions,
    miou_each,
    miou_over,
    ratio_over_shared_classes,
    scored_classes,
)
from styleseg.metrics.segmenter import (
    CHUNK,
    embed_store,
    evaluate_segmenter,
    evaluate_segmenter_samples,
    load_matching_segmenter,
    sample_confusions,
    scores_from_confusion,
    validation_halves,
)
from styleseg.metrics.segmenter_train import cached_segmenter
from styleseg.metrics.usefulness import Regime, paired_difference, regimes, summarize, verdict
from styleseg.models.load import LoadedGenerator
from styleseg.options import EvalOptions, GenerateOptions
from styleseg.report import agreement_text, interval_note, seed_range, seeds_text, write_report
from styleseg.stream import PairStream, blind_class_ids

EVALUATE_VERSION = 3  # recorded in metrics.json: which instrument produced the figures


def mask_layout(masks: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, H, W) ids -> (N, K * 4 * w) area fractions of each class on a coarse grid 4 cells high
    (w = 4 W / H rounded): the layout of a person at a size the sample count can support."""
    h, w = masks.shape[1:]
    onehot = F.one_hot(torch.from_numpy(np.asarray(masks)).long(), num_classes).permute(0, 3, 1, 2).float()
    return F.adaptive_avg_pool2d(onehot, (4, max(1, round(4 * w / h)))).flatten(1).double().numpy()


def _layout_store(ds: PreparedDataset, idx: np.ndarray) -> np.ndarray:
    k = ds.class_map.num_classes
    return np.concatenate([mask_layout(ds.masks[np.sort(idx[s : s + CHUNK])], k) for s in range(0, len(idx), CHUNK)])


def image_batches(ds: PreparedDataset, idx: np.ndarray):
    """uint8 (B, 3, H, W) image batches of ds[idx], CHUNK at a time."""
    for s in range(0, len(idx), CHUNK):
        yield ds.load_batch(idx[s : s + CHUNK], masks=False)[0]


def inception_fid(real_batches, fake_batches, weights: str | None, feature=2048) -> dict:
    """Standard FID through torchmetrics (the `fid` extra), from iterables of uint8 (B, 3, H, W)
    batches. `feature` is the Inception feature size, or a stand-in nn.Module (tests); skipped with a
    reason when unavailable."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError:
        return {"skipped": "torchmetrics[image] not installed (pip install 'styleseg[fid]')"}
    kwargs = {"feature_extractor_weights_path": weights} if weights and isinstance(feature, int) else {}
    try:
        fid = FrechetInceptionDistance(feature=feature, **kwargs)
        counts = {True: 0, False: 0}
        for real, batches in ((True, real_batches), (False, fake_batches)):
            for batch in batches:
                fid.update(batch, real=real)
                counts[real] += len(batch)
        return {"fid": float(fid.compute()), "n_real": counts[True], "n_generated": counts[False]}
    except (OSError, RuntimeError, ModuleNotFoundError) as exc:  # no Inception weights or backbone offline
        return {"skipped": f"Inception FID unavailable ({exc}); pass --inception-weights PATH"}


def generated_store(
    model: LoadedGenerator, out: Path, pairs: GenerateOptions, resolution, device, log
) -> PreparedDataset:
    """Generate the pairs into out/generated (reused when the same checkpoint and settings made them)."""
    gen_dir, gen_store = out / "generated", out / "generated-prepared"
    marker = out / "generated-source.json"
    source = {"checkpoint": str(model.path.resolve()), "psi": pairs.psi, "n": pairs.n, "first_seed": pairs.seed}
    source["upsample"] = pairs.upsample
    if marker.exists() and json.loads(marker.read_text()) != source:
        shutil.rmtree(gen_dir, ignore_errors=True)  # samples of another checkpoint or setting must not be reused
        shutil.rmtree(gen_store, ignore_errors=True)
    write_json(marker, source)
    log(f"generating {pairs.n} pairs ({seeds_text(pairs.seed, pairs.n)})")
    generate_dataset(model, gen_dir, pairs, device)
    if not (gen_store / "dataset.json").exists():
        prepare_dataset(gen_dir, gen_store, resolution, None, workers=1)
    return PreparedDataset(gen_store)


def _train_sets(regime: Regime, ds, train_idx, gen, gen_idx, seed: int, mix: float, subset=None):
    """(training sets, sampling weights, pre-training sets) of one regime and seed."""
    real = []
    if regime.real == "all":
        real = [(ds, train_idx)]
    elif regime.real is not None and subset is not None:
        real = [(ds, np.sort(np.asarray(subset, np.int64)))]
    elif regime.real is not None:
        real = [(ds, segmenter_labels(train_idx, regime.real, seed))]
    generated = [(gen, gen_idx)] if regime.generated else []
    if regime.finetune:
        return real, None, generated
    if real and generated:
        return real + generated, [1 - mix, mix], None
    return real + generated, None, None


def check_real_subset(ds: PreparedDataset, opts: EvalOptions) -> None:
    if opts.real_subset is None:
        return
    outside = sorted(set(opts.real_subset) - set(ds.indices("train", labeled_only=True).tolist()))
    if outside or opts.low_labels != [len(opts.real_subset)]:
        raise StylesegError(
            f"the real subset ({len(opts.real_subset)} samples) must lie in {ds.root}'s labelled train split "
            f"(not: {outside[:5]}) and be the only N of the 'N real' regimes (got {opts.low_labels})"
        )


def _fit_regime(regime: Regime, sets, weights, pretrain, cfg, stream, device, cache: Path, select, log):
    """One regime's segmenter for one seed: pre-trained first where the regime says so (on the
    written pairs, or on the stream alone), with streamed pairs in every batch where it says so."""
    synthetic = stream if regime.streamed else None
    init = None
    if regime.finetune:
        if regime.streamed:  # the pre-training is the 'streamed' regime's segmenter (cached: trained once)
            pre, pre_path, _ = cached_segmenter(cache, [], cfg.synthetic_only(), device, select, log, synthetic=stream)
        else:
            pre, pre_path, _ = cached_segmenter(cache, pretrain, cfg, device, select, log)
        init, synthetic = (pre.state_dict(), pre_path.name), None
    elif synthetic is not None and not sets:
        cfg = cfg.synthetic_only()
    return cached_segmenter(cache, sets, cfg, device, select, log, weights=weights, init=init, synthetic=synthetic)


def usefulness(
    ds, gen, filtered_idx, opts: EvalOptions, device, cache: Path, log, stream=None, blind: tuple[int, ...] = ()
) -> dict:
    """Every regime (and its filtered variant) x seeds; scores on the report half of validation and on
    test where there is one; paired differences to the baselines. `blind`: class ids the streamed pairs
    say nothing about (SegmenterConfig.synthetic_blind)."""
    if opts.regimes == []:
        log("usefulness: skipped (--regimes none)")
        return {}
    train_idx = ds.indices("train", labeled_only=True)
    select = (ds, validation_halves(ds)[0])
    has_test = len(ds.indices("test", labeled_only=True)) > 0
    candidates = regimes(opts.low_labels, with_generated=gen is not None, with_stream=stream is not None)
    wanted = {r.name for r in candidates}
    if opts.regimes:
        unknown = sorted(set(opts.regimes) - wanted)
        if unknown:
            raise StylesegError(f"unknown usefulness regimes {unknown}; known: {sorted(wanted)}")
        wanted = set(opts.regimes) | {r.baseline for r in candidates if r.name in opts.regimes and r.baseline}
    todo: list[tuple[Regime, np.ndarray | None]] = []
    for regime in candidates:
        if regime.name not in wanted:
            continue
        todo.append((regime, None if gen is None else np.arange(len(gen))))
        if regime.generated and not regime.streamed and filtered_idx is not None:
            name = regime.name.replace("generated", "filtered generated")
            todo.append((Regime(name, regime.real, True, regime.finetune, regime.baseline), filtered_idx))
    blind_names = [stream.class_map.classes[c] for c in blind] if stream is not None else []
    results: dict[str, dict] = {}
    # Regimes with generated data first: their real-only baselines do not depend on the model, so they
    # are often cached already (or being trained elsewhere) by the time they are reached.
    for regime, gen_idx in sorted(todo, key=lambda item: not item[0].generated):
        per_seed = {"val": [], "test": []}
        budgets = []
        for seed in range(opts.seeds):
            cfg = opts.segmenter_config(
                ds.class_map.num_classes, opts.usefulness_max_steps or opts.segmenter_max_steps, seed, blind
            )
            files = None if regime.streamed else gen
            sets, weights, pretrain = _train_sets(
                replace(regime, generated=regime.generated and not regime.streamed),
                ds,
                train_idx,
                files,
                gen_idx,
                seed,
                opts.mix,
                opts.real_subset,
            )
            log(f"usefulness: {regime.name}, seed {seed}")
            seeded = stream.reseeded(seed) if stream is not None else None  # each seed its own pairs
            model, _, budget = _fit_regime(regime, sets, weights, pretrain, cfg, seeded, device, cache, select, log)
            budgets.append(budget)
            per_seed["val"].append(evaluate_segmenter(model, ds, "val", device)["miou"])
            if has_test:
                per_seed["test"].append(evaluate_segmenter(model, ds, "test", device)["miou"])
        results[regime.name] = {
            "regime": asdict(regime),
            "generated_pairs": 0 if gen_idx is None or not regime.generated or regime.streamed else int(len(gen_idx)),
            "mix": opts.mix if regime.generated and regime.real and not regime.finetune else None,
            **(
                {"stream": {**stream.describe(), "seed": "the segmenter's", "blind": blind_names}}
                if regime.streamed
                else {}
            ),
            "val": summarize(per_seed["val"]),
            **({"test": summarize(per_seed["test"])} if has_test else {}),
            "budgets": budgets,
        }
    results = {regime.name: results[regime.name] for regime, _ in todo}  # report in the standard order
    for r in results.values():
        base = r["regime"]["baseline"]
        if base and base in results:
            for split in ("val", "test"):
                if split in r:
                    diff = paired_difference(r[split]["values"], results[base][split]["values"])
                    r.setdefault("difference", {})[split] = {**diff, "baseline": base, "verdict": verdict(diff)}
    return results


def realism(ref, ds: PreparedDataset, gen: PreparedDataset, device, inception_weights) -> dict:
    """Distances in the reference segmenter's features, against held-out (val) and training reals."""
    held_out = ds.indices("val", labeled_only=True)
    train_idx = ds.indices("train", labeled_only=True)
    train_idx = train_idx[np.linspace(0, len(train_idx) - 1, min(len(train_idx), 5000)).astype(int)]
    gen_idx = np.arange(len(gen))
    f_train, f_held, f_gen = (
        embed_store(ref, d, i, device) for d, i in ((ds, train_idx), (ds, held_out), (gen, gen_idx))
    )
    l_train, l_held, l_gen = (_layout_store(d, i) for d, i in ((ds, train_idx), (ds, held_out), (gen, gen_idx)))
    out = {
        "n_generated": len(gen_idx),
        "mask_layout": f"class area fractions on a 4-row grid ({l_gen.shape[1]} values)",
    }
    for label, f_real, l_real in (("held_out", f_held, l_held), ("train", f_train, l_train)):
        # PCA basis from the training reals (the largest set), so both comparisons use one projection.
        fd_img, d_img = reduced_frechet(f_train, f_real, f_gen)
        pair_train = np.concatenate([f_train, l_train], 1)
        pair_real, pair_gen = np.concatenate([f_real, l_real], 1), np.concatenate([f_gen, l_gen], 1)
        fd_pair, d_pair = reduced_frechet(pair_train, pair_real, pair_gen)
        kid_img = kernel_inception_distance(f_real, f_gen)
        kid_pair = kernel_inception_distance(pair_real, pair_gen)
        out[label] = {
            "n_real": int(len(f_real)),
            "fd_image": fd_img,
            "fd_image_dims": d_img,
            "kid_image": kid_img[0],
            "kid_image_std": kid_img[1],
            "fd_image_mask": fd_pair,
            "fd_image_mask_dims": d_pair,
            "kid_image_mask": kid_pair[0],
            "kid_image_mask_std": kid_pair[1],
        }
    out["precision_recall"] = manifold_scores(f_held, f_train, f_gen)
    out["inception"] = inception_fid(
        image_batches(ds, held_out), image_batches(gen, np.arange(len(gen))), inception_weights
    )
    return out


def manifold_scores(f_held: np.ndarray, f_train: np.ndarray, f_gen: np.ndarray, k: int = 3) -> dict:
    """Precision, recall, density and coverage of the generated images against held-out reals, and
    of as many real training photos (what a generator that drew real photos would score)."""
    stand_in = f_train[np.linspace(0, len(f_train) - 1, min(len(f_train), len(f_gen))).astype(int)]
    if min(len(f_held), len(f_gen), len(stand_in)) <= k:
        return {"skipped": f"needs more than {k} held-out reals and generated pairs"}
    return {"generated": precision_recall(f_held, f_gen, k), "real_train_photos": precision_recall(f_held, stand_in, k)}


def label_statistics(ds: PreparedDataset, gen: PreparedDataset) -> tuple[dict, tuple]:
    names, k = ds.class_map.classes, ds.class_map.num_classes
    real_stats, gen_stats = LabelStatistics(k), LabelStatistics(k)
    real_idx = np.sort(np.concatenate([ds.indices("train", True), ds.indices("val", True)]))
    for s in range(0, len(real_idx), CHUNK):
        real_stats.update(np.asarray(ds.masks[real_idx[s : s + CHUNK]]))
    for s in range(0, len(gen), CHUNK):
        gen_stats.update(np.asarray(gen.masks[s : s + CHUNK]))
    cls_r, area_r, height_r = real_stats.per_image()
    cls_g, area_g, height_g = gen_stats.per_image()
    labels = {
        "n_real": int(len(real_idx)),
        "n_generated": len(gen),
        "class_frequency_real": dict(zip(names, real_stats.frequencies.round(5).tolist())),
        "class_frequency_generated": dict(zip(names, gen_stats.frequencies.round(5).tolist())),
        "js_divergence_bits": js_divergence(real_stats.frequencies, gen_stats.frequencies),
        "classes_per_image": {"real": float(cls_r.mean()), "generated": float(cls_g.mean())},
        "components_per_class": {
            "real": _nan_to_none(dict(zip(names, real_stats.components_per_class))),
            "generated": _nan_to_none(dict(zip(names, gen_stats.components_per_class))),
        },
        "person_area": {"real": float(area_r.mean()), "generated": float(area_g.mean())},
        "person_height": {"real": float(height_r.mean()), "generated": float(height_g.mean())},
    }
    return labels, (area_r, height_r, area_g, height_g)


def evaluate(
    model: LoadedGenerator, data: Path, out: Path, opts: EvalOptions, device: torch.device, cache: Path, log=print
) -> dict:
    start = time.perf_counter()
    ds = PreparedDataset(data)
    doublings = check_fits(model, ds, opts.upsample)
    if opts.upsample and opts.stream is not None and tuple(model.config.model.resolution) != ds.resolution:
        raise StylesegError("--stream draws pairs at the model's resolution: leave out --upsample or --stream")
    check_real_subset(ds, opts)  # before any training, so a wrong subset costs nothing
    # the stream (and the classes it is blind to) before any training too: a wrong class name costs nothing
    stream = PairStream(model, opts.stream, device) if opts.stream is not None else None
    blind = blind_class_ids(opts.synthetic_blind, stream, log)
    out.mkdir(parents=True, exist_ok=True)
    names = ds.class_map.classes
    select = (ds, validation_halves(ds)[0])
    if opts.reference is not None:
        ref, ref_path, ref_budget, ref_cfg = given_reference(Path(opts.reference), len(names), device, log)
    else:
        ref_cfg = opts.segmenter_config(len(names), opts.segmenter_max_steps)
        log("reference segmenter on the real training split")
        ref, ref_path, ref_budget = cached_segmenter(
            cache, [(ds, ds.indices("train", True))], ref_cfg, device, select, log
        )
    ceiling_val, ceiling_samples = evaluate_segmenter_samples(ref, ds, "val", device)
    ceiling = {"val": ceiling_val}
    if len(ds.indices("test", labeled_only=True)):
        ceiling["test"] = evaluate_segmenter(ref, ds, "test", device)

    smooth = doublings if opts.upsample == "smooth" else 0
    pairs = GenerateOptions(n=opts.n, psi=opts.psi, seed=opts.first_seed, upsample=smooth)
    gen = generated_store(model, out, pairs, ds.resolution, device, log)

    # 1. agreement
    # generated masks against the reference's reading of their images, one confusion matrix per pair
    gen_names = gen.class_map.classes
    agreed_samples = sample_confusions(ref, gen, np.arange(len(gen)), device)
    agreed_sum, ceiling_sum = agreed_samples.sum(0, dtype=np.int64), ceiling_samples.sum(0, dtype=np.int64)
    agreed = scores_from_confusion(agreed_sum, gen_names, len(gen))
    per_sample = miou_each(agreed_samples)
    shared_ratio, shared = ratio_over_shared_classes(agreed["iou"], ceiling["val"]["iou"])
    scored = scored_classes(ceiling_sum)  # the classes the ceiling's mean is over
    miou = float(miou_over(agreed_sum, scored))
    agreement = {
        "miou": miou,
        "pixel_accuracy": agreed["pixel_accuracy"],
        "n": len(gen),
        "per_class": agreed["iou"],
        "never_drawn": [name for name, kept in zip(gen_names, scored) if kept and agreed["iou"][name] is None],
        "ratio_to_ceiling": miou / max(ceiling["val"]["miou"], 1e-9),
        "interval": agreement_interval(agreed_samples, ceiling_samples, seed=opts.first_seed),
        "ratio_over_shared_classes": shared_ratio,
        "shared_classes": shared,
        "per_sample_miou_quartiles": np.quantile(per_sample, [0.25, 0.5, 0.75]).round(4).tolist(),
        "confusion": agreed["confusion"],
        "excess_confusions": excess_confusions(agreed_sum, ceiling_sum, gen_names, limit=8),
    }

    # 2. usefulness (and what filtering by agreement buys)
    filtered = None
    if opts.filter_keep is not None:
        keep = max(1, int(round(opts.filter_keep * len(gen))))
        filtered = np.sort(np.argsort(-per_sample, kind="stable")[:keep])
        agreement["filter"] = {
            "keep_fraction": opts.filter_keep,
            "kept": int(keep),
            "min_per_sample_miou": float(per_sample[filtered].min()),
        }
    useful = usefulness(ds, gen, filtered, opts, device, cache, log, stream, tuple(blind))

    # 3. realism and 4. label statistics
    real_feats = realism(ref, ds, gen, device, opts.inception_weights)
    labels, extents = label_statistics(ds, gen)
    metrics = {
        "evaluate_version": EVALUATE_VERSION,
        "checkpoint": str(model.path),
        "kimg": model.kimg,
        "data": str(ds.root),
        "n": len(gen),
        "psi": opts.psi,
        "options": asdict(opts),
        "segmenter": {"path": str(ref_path), **ceiling, "budget": ref_budget, "config": asdict(ref_cfg)},
        "agreement": agreement,
        "usefulness": useful,
        "realism": real_feats,
        "labels": labels,
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_json(out / "metrics.json", metrics)
    write_report(metrics, out / "report.html", gen, ds, extents)
    return metrics


def check_fits(model: LoadedGenerator, ds: PreparedDataset, upsample: str | None = None) -> int:
    """Refuse, before any work, data the model cannot be measured on: other classes, another
    resolution (with `upsample`, the data's may be the model's times a power of two), or a validation
    split too small to both choose (selection half) and report. Returns how many doublings take the
    model's resolution to the data's (0: the same)."""
    drawn = None if model.level is None else list(model.level.names)
    if drawn is None:
        raise StylesegError(f"{model.path}: this model draws no masks yet (trained on images only)")
    if drawn != list(ds.class_map.classes):
        if len(drawn) == ds.class_map.num_classes:
            raise StylesegError(
                f"{ds.root}: its classes {list(ds.class_map.classes)} are not the model's {drawn} (same number, "
                f"other names or order): prepare the data with the model's class map (--classes {model.class_map.name})"
            )
        raise StylesegError(
            f"{ds.root}: has {ds.class_map.num_classes} classes ({ds.class_map.name}), the model draws {len(drawn)} "
            f"({model.class_map.name}): prepare the data with the model's class map (--classes {model.class_map.name})"
        )
    h, w = model.config.model.resolution
    factor = ds.resolution[0] / h
    grows = factor == ds.resolution[1] / w and factor >= 1 and math.log2(factor).is_integer()
    if (h, w) != ds.resolution and not (upsample and grows):
        raise StylesegError(
            f"{ds.root}: prepared at {ds.resolution[0]}x{ds.resolution[1]}, the model draws {h}x{w}: "
            f"prepare the data with --resolution {h}x{w}"
            + ("" if upsample else " (or --upsample, to score the model's pairs up-sampled to the data)")
        )
    selection, report = validation_halves(ds)
    if len(selection) == 0 or len(report) == 0:
        raise StylesegError(
            f"{ds.root}: its validation split has {len(selection) + len(report)} labelled sample(s); evaluation needs "
            "at least 2 (one half chooses the segmenter's weights, the other reports): add labelled val samples "
            "(splits/val.txt) or prepare a dataset with more"
        )
    return int(math.log2(factor))


def given_reference(folder: Path, num_classes: int, device: torch.device, log=print):
    """(model, folder, budget, config) of a reference segmenter trained elsewhere; its budget counts a
    starting segmenter's too (`segmenter train --init`), so the ceiling's cost is stated in full."""
    model, meta, cfg = load_matching_segmenter(folder, device, num_classes, use="be the reference for this dataset")
    budget = dict(meta.get("budget", {}))
    if "seconds_including_init" in meta:
        budget["seconds_including_init"] = meta["seconds_including_init"]
        budget["init"] = meta.get("init")
    log(f"reference segmenter: {folder} (given, not trained here)")
    return model, folder, budget, cfg


def _nan_to_none(d: dict) -> dict:
    return {k: (None if v is None or np.isnan(v) else round(float(v), 3)) for k, v in d.items()}


def _interval(d: dict | None) -> str:
    if not d:
        return ""
    if d.get("low") is None:
        return f"  diff {d['mean']:+.3f} (one seed)"
    return f"  diff {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] vs {d['baseline']}: {d['verdict']}"


def summary_table(m: dict) -> str:
    seg = m["segmenter"]
    lines = [
        f"reference segmenter, real {seg['val']['split']} (n={seg['val']['n']}): mIoU {seg['val']['miou']:.3f}, "
        f"pixel acc {seg['val']['pixel_accuracy']:.3f}"
        + (f"; test (n={seg['test']['n']}): mIoU {seg['test']['miou']:.3f}" if "test" in seg else "")
        + f"; trained {seg['budget'].get('steps')} steps (best {seg['budget'].get('best_step')})",
        f"agreement (generated mask vs segmenter on generated image, n={m['n']}, {seed_range(m)}): "
        + agreement_text(m["agreement"], len(seg["val"]["iou"]))
        + f", pixel acc {m['agreement']['pixel_accuracy']:.3f}",
        *([f"  {note}"] if (note := interval_note(m["agreement"])) else []),
        *(
            [f"  read otherwise than real masks: {confusion_text(m['agreement']['excess_confusions'][:3])}"]
            if m["agreement"].get("excess_confusions")
            else []
        ),
        "usefulness (segmenter mIoU on real val report half; mean ± std over seeds; paired difference, 95% interval):"
        if m["usefulness"]
        else "usefulness: not measured (--regimes none)",
    ]
    for name, r in m["usefulness"].items():
        v = r["val"]
        lines.append(
            f"  {name:<34} {v['mean']:.3f} ± {v['std']:.3f} (n_seeds={v['n_seeds']})"
            + _interval(r.get("difference", {}).get("val"))
        )
        if "test" in r:
            lines.append(
                f"  {'':<34} test {r['test']['mean']:.3f} ± {r['test']['std']:.3f}"
                + _interval(r.get("difference", {}).get("test"))
            )
    rz = m["realism"]
    for label in ("held_out", "train"):
        z = rz[label]
        lines.append(
            f"realism vs {label} reals (n_real={z['n_real']}, n_gen={rz['n_generated']}): "
            f"FD image {z['fd_image']:.3f} ({z['fd_image_dims']} PCs), "
            f"KID image {z['kid_image']:.4f} ± {z['kid_image_std']:.4f}, "
            f"FD image+mask {z['fd_image_mask']:.3f} ({z['fd_image_mask_dims']} PCs), "
            f"KID image+mask {z['kid_image_mask']:.4f} ± {z['kid_image_mask_std']:.4f}"
        )
    pr = rz.get("precision_recall")  # absent from metrics.json written before it was measured
    if pr and "skipped" in pr:
        lines.append(f"precision / recall: skipped ({pr['skipped']})")
    elif pr:
        four = {
            k: " / ".join(f"{v[m]:.3f}" for m in ("precision", "recall", "density", "coverage")) for k, v in pr.items()
        }
        lines.append(
            f"precision / recall / density / coverage vs held-out reals (k={pr['generated']['k']}): "
            f"generated {four['generated']}; as many real train photos {four['real_train_photos']}"
        )
    inc = rz["inception"]
    lines.append("Inception FID: " + (f"{inc['fid']:.2f}" if "fid" in inc else inc["skipped"]))
    lb = m["labels"]
    lines.append(
        f"labels (n_real={lb['n_real']}, n_gen={lb['n_generated']}): "
        f"JS(class freq) {lb['js_divergence_bits']:.4f} bits; "
        f"classes/image real {lb['classes_per_image']['real']:.2f} gen {lb['classes_per_image']['generated']:.2f}; "
        f"person area real {lb['person_area']['real']:.3f} gen {lb['person_area']['generated']:.3f}; "
        f"height real {lb['person_height']['real']:.3f} gen {lb['person_height']['generated']:.3f}"
    )
    return "\n".join(lines)
