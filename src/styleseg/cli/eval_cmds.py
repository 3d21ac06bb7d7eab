"""`styleseg evaluate` and `styleseg segmenter train|eval`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from styleseg.cli.common import (
    add_class_target_args,
    add_data_arg,
    add_device_arg,
    add_model_args,
    class_target,
    float_pair,
    folder_arg,
    load_generator_spec,
    load_model_arg,
    nonnegative_int,
    resolve_data,
)
from styleseg.errors import StylesegError
from styleseg.options import SYNTHETIC_TARGETS, EvalOptions, SegmenterConfig, StreamOptions
from styleseg.paths import segmenters_cache

if TYPE_CHECKING:  # annotations only: the command imports it when it runs
    from styleseg.data.store import PreparedDataset


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="agreement, usefulness, realism and label statistics of a model",
        description="Writes metrics.json and a self-contained report.html.",
    )
    add_model_args(p)
    add_data_arg(p, "prepared real dataset at the model's resolution (default: $STYLESEG_DATA)")
    p.add_argument("--out", required=True, type=folder_arg, help="output folder")
    p.add_argument(
        "--n", type=int, default=1000, help="generated pairs, also the generated training data (default 1000)"
    )
    p.add_argument("--truncation", type=float, default=1.0, metavar="PSI")
    p.add_argument(
        "--first-seed",
        type=int,
        default=0,
        metavar="SEED",
        help="generated pair k uses seed SEED+k (default 0); report a checkpoint chosen on seeds 0..n-1 "
        "on a fresh block, e.g. --first-seed 100000",
    )
    p.add_argument("--seeds", type=int, default=3, help="segmenter seeds per usefulness regime (default 3)")
    p.add_argument(
        "--low-labels",
        default=None,
        help="N of the 'N real' regimes, comma-separated (default 50, or the size of --real-subset)",
    )
    p.add_argument("--mix", type=float, default=0.5, help="generated share of each real+generated batch (default 0.5)")
    p.add_argument(
        "--filter-keep",
        type=float,
        default=None,
        help="also train on the best-agreeing fraction of generated pairs (e.g. 0.5) to show what filtering buys",
    )
    p.add_argument(
        "--real-subset",
        default=None,
        help="labels.json of a run trained under a label budget (or a JSON list of sample indices): the "
        "'N real' regimes use exactly these samples for every seed",
    )
    p.add_argument(
        "--regimes",
        default=None,
        help="only these usefulness regimes, comma-separated (and baselines); 'none' skips usefulness",
    )
    p.add_argument(
        "--reference",
        default=None,
        help="a folder written by `segmenter train` to use as the reference segmenter instead of training "
        "one here (its ceiling is still measured on this dataset)",
    )
    p.add_argument("--segmenter-width", type=int, default=24, help="reference segmenter width (default 24)")
    p.add_argument("--segmenter-max-steps", type=int, default=3000, help="upper bound on reference segmenter steps")
    add_recipe_args(p, "every segmenter trained here")
    p.add_argument(
        "--usefulness-max-steps",
        type=int,
        default=None,
        help="upper bound on each usefulness segmenter's steps, the same for all regimes (default: as above)",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="also the 'streamed' usefulness regimes: pairs drawn fresh from the model at every step "
        "(streamed, real+streamed, N real+streamed, streamed->N real); --mix is their share of a batch (of a larger "
        "one with --synthetic-on-top)",
    )
    add_stream_args(p)
    p.add_argument(
        "--upsample",
        nargs="?",
        const="resize",
        choices=["resize", "smooth"],
        help="score a model of a lower resolution at the data's (e.g. 64x48 on 128x96 data): its pairs "
        "up-sampled as prepare resizes photos and masks (resize, the default; Lanczos, nearest) or its "
        "image and mask logits bilinearly (smooth: as a residual stage grown onto it starts)",
    )
    add_cache_arg(p)
    p.add_argument("--inception-weights", default=None, help="local Inception weights for FID (offline machines)")
    add_device_arg(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("segmenter", help="train or score the reference segmentation network")
    s = p.add_subparsers(dest="segmenter_command", metavar="ACTION", required=True)
    t = s.add_parser("train", help="train a U-Net on a prepared dataset (cached by dataset fingerprint)")
    add_data_arg(t, "prepared dataset: its labeled train split (default: $STYLESEG_DATA)")
    t.add_argument("--extra", action="append", default=[], help="more prepared datasets to train on (all samples)")
    t.add_argument("--out", required=True, type=folder_arg, help="folder for the trained segmenter")
    add_cache_arg(t)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--max-steps", type=int, default=SegmenterConfig.max_steps, help="upper bound on steps")
    t.add_argument(
        "--lr",
        type=float,
        default=SegmenterConfig.lr,
        help=f"peak learning rate (warm-up, then cosine decay to zero at --max-steps; default {SegmenterConfig.lr:g}); "
        "a fine-tune from --init usually wants a smaller one",
    )
    t.add_argument(
        "--width",
        type=int,
        default=SegmenterConfig.width,
        help="channels of the first level, doubled at each of three down-sampling steps "
        f"(default {SegmenterConfig.width})",
    )
    add_recipe_args(t, "this segmenter")
    t.add_argument(
        "--labels",
        type=int,
        default=None,
        metavar="N",
        help="train on N of the labelled train samples (drawn with --seed) instead of all of them",
    )
    t.add_argument(
        "--generator",
        default=None,
        metavar="MODEL|CKPT",
        help="draw fresh (image, mask) pairs from this generator at every step (a shipped model's name, an "
        "exported .safetensors or a run/checkpoint folder): alone with --synthetic-share 1, else beside the "
        "real labels of --data; --data's validation split still decides when to stop",
    )
    t.add_argument(
        "--synthetic-share",
        type=float,
        default=SegmenterConfig.synthetic_share,
        help=f"with --generator: share of each batch drawn from it (default {SegmenterConfig.synthetic_share:g}; "
        "1: synthetic only)",
    )
    t.add_argument(
        "--class-mix",
        type=float,
        default=SegmenterConfig.class_mix,
        metavar="SHARE",
        help="with --generator beside real labels: share of streamed pairs that get half of the classes of a real "
        "sample of the batch pasted over them, image and label alike (ClassMix across the two; default 0)",
    )
    t.add_argument(
        "--synthetic-first",
        action="store_true",
        help="with --generator: train on its pairs alone first (stopping on validation), then fine-tune on the "
        "real labels alone",
    )
    add_stream_args(t)
    t.add_argument(
        "--init",
        default=None,
        help="a trained segmenter folder to start from, e.g. one trained at half the resolution "
        "(progressive resizing: the network is fully convolutional); its budget is added to this one's",
    )
    add_device_arg(t)
    # stream_type: a PairStream subclass a script may set (scripts/relabelled-stream.py); None is PairStream
    t.set_defaults(func=cmd_seg_train, stream_type=None)
    e = s.add_parser("eval", help="mIoU, per-class IoU and pixel accuracy of a trained segmenter")
    e.add_argument("--ckpt", required=True, help="folder written by `segmenter train`")
    add_data_arg(e, "prepared dataset to score on (default: $STYLESEG_DATA)")
    e.add_argument("--split", choices=["train", "val", "test"], default="val")
    add_device_arg(e)
    e.set_defaults(func=cmd_seg_eval)


def add_recipe_args(p, who: str) -> None:
    """The segmenter training options shared by `evaluate` and `segmenter train` (see `recipe`)."""
    p.add_argument(
        "--dice-weight",
        type=float,
        default=SegmenterConfig.dice_weight,
        help=f"weight of a soft Dice term beside cross-entropy for {who}; it weighs rare classes as mIoU does "
        f"(default {SegmenterConfig.dice_weight:g})",
    )
    p.add_argument(
        "--repeat-threshold",
        type=float,
        default=SegmenterConfig.repeat_threshold,
        metavar="T",
        help=f"oversample images showing rare classes for {who}: weight max(1, sqrt(T / f)), f the share of "
        "training images with the image's rarest class (LVIS repeat factor sampling; e.g. 0.3; default 0: off)",
    )
    p.add_argument(
        "--weight-ema",
        type=float,
        default=SegmenterConfig.weight_ema,
        metavar="DECAY",
        help=f"{who}: score and keep a moving average of the weights with this decay per step "
        "(e.g. 0.99; default 0: off)",
    )
    p.add_argument(
        "--patience",
        type=nonnegative_int,
        default=SegmenterConfig.patience,
        metavar="N",
        help=f"{who}: stop after N validation scores without a new best (default {SegmenterConfig.patience}); "
        "0: run to --max-steps and keep the best",
    )


def add_cache_arg(p) -> None:
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="where trained segmenters are kept for reuse (default: $XDG_CACHE_HOME/styleseg/segmenters, "
        "~/.cache/styleseg/segmenters)",
    )


def cache_arg(args) -> Path:
    return args.cache or segmenters_cache()


def add_stream_args(p) -> None:
    """How pairs streamed from a generator teach (shared by `evaluate --stream` and `segmenter train --generator`)."""
    p.add_argument(
        "--truncation-range",
        type=float_pair,
        default=StreamOptions.psi_range,
        metavar="LOW,HIGH",
        help="truncation of each streamed pair, drawn uniformly from this range "
        f"(default {','.join(f'{v:g}' for v in StreamOptions.psi_range)}; e.g. 1,1 for none)",
    )
    p.add_argument(
        "--style-mixing",
        type=float,
        default=StreamOptions.style_mixing,
        metavar="SHARE",
        help="share of streamed pairs whose styles switch to a second latent's from a layer drawn per pair "
        "(more combinations of pose and appearance; default 0)",
    )
    p.add_argument(
        "--targets",
        choices=SYNTHETIC_TARGETS,
        default=SegmenterConfig.synthetic_target,
        help="how a streamed pair's mask teaches: the generator's class probabilities (soft), their argmax "
        "(hard), the argmax weighted by the top probability (weighted), or the argmax where the top "
        f"probability reaches --min-confidence (confident) (default {SegmenterConfig.synthetic_target})",
    )
    p.add_argument(
        "--min-confidence",
        type=float,
        default=SegmenterConfig.min_confidence,
        help=f"with --targets confident (default {SegmenterConfig.min_confidence:g})",
    )
    p.add_argument(
        "--synthetic-on-top",
        action="store_true",
        help="beside real labels: add the streamed pairs to a full batch of real samples (the same share of a "
        "larger batch) instead of taking them from it, so the real samples per step stay as without the stream",
    )
    p.add_argument(
        "--synthetic-blind",
        default="none",
        metavar="auto|none|CLASS,...",
        help="classes the streamed pairs say nothing about (left out of their softmax), so a class the "
        "generator does not draw is not taught as absent; 'auto': those not one pixel of 512 of its masks "
        "shows (default none)",
    )
    add_class_target_args(p, "streamed pairs")


def stream_options(args, seed: int = 0) -> StreamOptions:
    """StreamOptions from the options `add_stream_args` added."""
    classes, rate = class_target(args)
    return StreamOptions(
        psi_range=args.truncation_range, classes=classes, class_rate=rate, seed=seed, style_mixing=args.style_mixing
    )


def recipe(args) -> dict:
    """The options `add_recipe_args` added, as SegmenterConfig / EvalOptions fields."""
    return {
        "dice_weight": args.dice_weight,
        "repeat_threshold": args.repeat_threshold,
        "weight_ema": args.weight_ema,
        "patience": args.patience,
    }


def cmd_evaluate(args) -> int:
    from styleseg.device import resolve_device
    from styleseg.evaluate import evaluate, summary_table

    device = resolve_device(args.device)
    subset = read_subset(Path(args.real_subset)) if args.real_subset else None
    try:
        low = [int(v) for v in args.low_labels.split(",") if v] if args.low_labels else None
    except ValueError as exc:
        raise StylesegError(f"--low-labels takes integers like 50,200, not '{args.low_labels}'") from exc
    if low is None:
        low = [len(subset)] if subset is not None else [50]
    if args.seeds < 1 or not 0 <= args.mix <= 1 or (args.filter_keep is not None and not 0 < args.filter_keep <= 1):
        raise StylesegError("--seeds must be >= 1, --mix in [0, 1] and --filter-keep in (0, 1]")
    if (args.synthetic_on_top or args.synthetic_blind != "none") and not args.stream:
        raise StylesegError(
            "--synthetic-on-top and --synthetic-blind change the streamed regimes only: they need --stream"
        )
    if args.stream and args.regimes == "none":
        raise StylesegError("--stream adds streamed usefulness regimes and --regimes none measures none: leave one out")
    stream = stream_options(args) if args.stream else None
    opts = EvalOptions(
        stream=stream,
        synthetic_target=args.targets,
        min_confidence=args.min_confidence,
        synthetic_blind=args.synthetic_blind,
        n=args.n,
        psi=args.truncation,
        first_seed=args.first_seed,
        seeds=args.seeds,
        low_labels=low,
        mix=args.mix,
        stream_on_top=args.synthetic_on_top,
        filter_keep=args.filter_keep,
        regimes=([] if args.regimes == "none" else args.regimes.split(",")) if args.regimes else None,
        reference=args.reference,
        upsample=args.upsample,
        segmenter_width=args.segmenter_width,
        segmenter_max_steps=args.segmenter_max_steps,
        usefulness_max_steps=args.usefulness_max_steps,
        **recipe(args),
        inception_weights=args.inception_weights,
        real_subset=subset,
    )
    metrics = evaluate(
        load_model_arg(args, device), resolve_data(args.data), Path(args.out), opts, device, cache_arg(args)
    )
    print(summary_table(metrics))
    print(
        f"metrics: {Path(args.out) / 'metrics.json'}\nreport: {Path(args.out) / 'report.html'} ({metrics['seconds']} s)"
    )
    return 0


def read_subset(path: Path) -> list[int]:
    """Sample indices from a run's labels.json or a JSON list."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StylesegError(f"{path}: cannot read a sample list ({exc})") from exc
    idx = data.get("labeled_indices") if isinstance(data, dict) else data
    if not isinstance(idx, list) or not idx or not all(isinstance(i, int) and i >= 0 for i in idx):
        raise StylesegError(f"{path}: expected a labels.json with 'labeled_indices' or a list of sample indices")
    return idx


def cmd_seg_train(args) -> int:
    import numpy as np

    from styleseg.data.budget import segmenter_labels
    from styleseg.data.store import PreparedDataset
    from styleseg.device import resolve_device
    from styleseg.metrics.segmenter import evaluate_segmenter, save_segmenter, validation_halves
    from styleseg.metrics.segmenter_train import cached_segmenter
    from styleseg.stream import PairStream, blind_class_ids

    device = resolve_device(args.device)
    ds = PreparedDataset(resolve_data(args.data))
    train_idx = ds.indices("train", labeled_only=True)
    if args.labels is not None:
        if not 0 < args.labels <= len(train_idx):
            raise StylesegError(f"--labels must be in 1..{len(train_idx)} ({ds.root}'s labelled train samples)")
        train_idx = segmenter_labels(train_idx, args.labels, args.seed)
    sets = [(ds, train_idx)]
    for extra in args.extra:
        e = PreparedDataset(Path(extra))
        sets.append((e, np.flatnonzero(e.labeled)))  # every labeled sample of an extra set
    if args.generator is None and (
        args.synthetic_first
        or args.classes
        or args.synthetic_on_top
        or args.synthetic_blind != "none"
        or args.class_mix
    ):
        raise StylesegError(
            "--synthetic-first, --synthetic-on-top, --synthetic-blind, --class-mix and --classes need --generator"
        )
    stream = None
    if args.generator is not None:
        stream_type = args.stream_type or PairStream
        stream = stream_type(load_generator_spec(args.generator, device), stream_options(args, args.seed), device)
        check_stream_fits(stream, ds)
        if stream.targeter is not None:
            about = {**stream.targeter.describe(), "fit_seconds": round(stream.targeter.fit_seconds, 2)}
            print(f"class-targeted sampling: {json.dumps(about)}")
    blind = blind_class_ids(args.synthetic_blind, stream)
    cfg = SegmenterConfig(
        num_classes=ds.class_map.num_classes,
        width=args.width,
        seed=args.seed,
        max_steps=args.max_steps,
        lr=args.lr,
        synthetic_share=args.synthetic_share,
        synthetic_on_top=args.synthetic_on_top,
        synthetic_target=args.targets,
        min_confidence=args.min_confidence,
        synthetic_blind=tuple(blind),
        class_mix=args.class_mix,
        **recipe(args),
    )
    select = (ds, validation_halves(ds)[0])
    init = starting_point(Path(args.init), cfg) if args.init else None
    synthetic = stream
    if stream is not None and args.synthetic_first:
        pre_cfg = cfg.synthetic_only()
        print("stage 1: the generator's pairs alone")
        pre, pre_path, pre_budget = cached_segmenter(
            cache_arg(args), [], pre_cfg, device, select, init=None if init is None else init[:2], synthetic=stream
        )
        init = (pre.state_dict(), pre_path.name, {"folder": str(pre_path), "budget": pre_budget})
        synthetic = None
        print("stage 2: fine-tune on the real labels")
    elif stream is not None and args.synthetic_share >= 1:
        sets = []
    model, cached, budget = cached_segmenter(
        cache_arg(args), sets, cfg, device, select, init=None if init is None else init[:2], synthetic=synthetic
    )
    result = evaluate_segmenter(model, ds, "val", device)
    info = {"cache": str(cached), "val": result, "budget": budget, "real_train_samples": int(len(train_idx))}
    if stream is not None:
        info["synthetic"] = stream.describe()
    if init is not None:
        info["init"] = init[2]
        info["seconds_including_init"] = round(budget.get("seconds", 0) + (init[2]["budget"].get("seconds") or 0), 1)
        print(
            f"started from {init[2]['folder']} ({init[2]['budget'].get('steps')} steps, "
            f"{init[2]['budget'].get('seconds')} s); both stages together: {info['seconds_including_init']} s"
        )
    if len(ds.indices("test", labeled_only=True)):
        info["test"] = evaluate_segmenter(model, ds, "test", device)
    save_segmenter(model, cfg, Path(args.out), info)
    generator_note = (
        f"; generator {budget['generator_seconds']} s ({budget['generator_share_of_time']:.0%} of the time)"
        if "generator_seconds" in budget
        else ""
    )
    print(
        f"segmenter: {args.out} (cache {cached}); {result['split']} mIoU {result['miou']:.3f}, "
        f"pixel accuracy {result['pixel_accuracy']:.3f} over {result['n']} images; "
        f"{budget.get('steps')} steps (best {budget.get('best_step')}), {budget.get('seconds')} s{generator_note}"
    )
    if "test" in info:
        print(f"test mIoU {info['test']['miou']:.3f} over {info['test']['n']} images")
    return 0


def check_stream_fits(stream, ds: PreparedDataset) -> None:
    """The generator must draw the dataset's classes at its resolution."""

    model = stream.model
    if stream.class_map.classes != ds.class_map.classes:
        raise StylesegError(
            f"{model.path}: draws classes {list(stream.class_map.classes)}, {ds.root} has "
            f"{list(ds.class_map.classes)}: stream from a model trained on these classes to the finest level"
        )
    if tuple(model.config.model.resolution) != ds.resolution:
        raise StylesegError(
            f"{model.path}: draws {model.config.model.resolution[0]}x{model.config.model.resolution[1]} pairs, "
            f"{ds.root} is {ds.resolution[0]}x{ds.resolution[1]}: prepare the data at the model's resolution"
        )


def starting_point(folder: Path, cfg: SegmenterConfig) -> tuple[dict, str, dict]:
    """(state dict, a key naming it, what it was) of a trained segmenter to start from; it must have
    this configuration's classes and width."""
    import torch

    from styleseg.metrics.segmenter import load_matching_segmenter, segmenter_digest

    model, meta, _ = load_matching_segmenter(
        folder, torch.device("cpu"), cfg.num_classes, cfg.width, use="start this training"
    )
    key = segmenter_digest(folder)[:16]
    about = {"folder": str(folder), "weights_sha256_16": key, "budget": meta.get("budget", {})}
    return model.state_dict(), key, about


def cmd_seg_eval(args) -> int:
    from styleseg.data.store import PreparedDataset
    from styleseg.device import resolve_device
    from styleseg.metrics.segmenter import evaluate_segmenter, load_segmenter

    device = resolve_device(args.device)
    model, _ = load_segmenter(Path(args.ckpt), device)
    ds = PreparedDataset(resolve_data(args.data))
    r = evaluate_segmenter(model, ds, args.split, device)
    print(f"{r['split']}: mIoU {r['miou']:.3f}, pixel accuracy {r['pixel_accuracy']:.3f} over {r['n']} images")
    for name, iou in r["iou"].items():
        print(f"  {name:<16} {'-' if iou is None else f'{iou:.3f}'}")
    return 0
