"""`styleseg train`."""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from styleseg.cli.common import add_data_arg, folder_arg, resolve_data
from styleseg.config import (
    TrainConfig,
    apply_overrides,
    build_config,
    config_from_json,
    data_recipe,
    from_dict,
    preset_names,
    to_dict,
)
from styleseg.errors import StylesegError

if TYPE_CHECKING:  # annotations only: the command imports it when it runs
    from styleseg.data.store import PreparedDataset


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (single process, or many under torchrun)",
        description="Train styleseg's growing StyleGAN. Works the same under "
        "`torchrun --nproc_per_node=N -m styleseg train ...`. Presets: " + ", ".join(preset_names()),
    )
    add_data_arg(p, "prepared dataset, or a raw CCP/paired dataset to prepare first (default: $STYLESEG_DATA)")
    p.add_argument("--out", default="runs", type=folder_arg, help="folder of numbered run folders (default: runs)")
    p.add_argument(
        "--preset",
        default=None,
        help="preset name or YAML file (default: a recipe derived from the data: its resolution and aspect, its "
        "class levels, its size); with --init, the recipe to go on with, whose network may add resolution "
        "stages to the source's (e.g. --init viton64-lip12 --preset viton128)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.r1_gamma=5 (repeatable)",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="auto|PATH",
        help="continue the newest run in --out (auto), or a given run/checkpoint folder",
    )
    p.add_argument(
        "--init",
        default=None,
        metavar="MODEL|PATH",
        help="start a new run from a trained generator: a shipped model's name, an exported .safetensors or a "
        "run/checkpoint folder; its config (with --set overrides) and its kimg carry on, optimisers start "
        "fresh, and its discriminator is used where the source has one",
    )
    p.add_argument(
        "--d-only-kimg",
        type=float,
        default=None,
        metavar="KIMG",
        help="with --init: train D alone for this many kimg first (default: 5 when the source has no "
        "discriminator, else 0)",
    )
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: the config's, auto)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and schedule, then exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def _prepared(data_path: Path, out: Path, cfg) -> PreparedDataset:
    """Use a prepared dataset as is; prepare a raw one once into out/prepared/ (at the config's
    resolution, or with no config at the photos' own shape)."""
    from styleseg.data.prepare import choose_resolution, prepare_dataset, resolve_class_map
    from styleseg.data.readers import open_source
    from styleseg.data.store import PreparedDataset
    from styleseg.training import distributed as dist

    if (data_path / "dataset.json").exists():
        return PreparedDataset(data_path)
    reader = open_source(data_path)
    class_map = resolve_class_map(reader, cfg.classes if cfg else None)
    h, w = cfg.model.resolution if cfg else choose_resolution(reader).resolution
    target = out / "prepared" / f"{data_path.name}-{h}x{w}-{class_map.name}"
    if not (target / "dataset.json").exists():
        if dist.is_main():
            print(f"preparing {data_path} at {h}x{w} ({class_map.name}) into {target}")
            prepare_dataset(data_path, target, (h, w), cfg.classes if cfg else None)
        dist.barrier()
    return PreparedDataset(target)


def recipe_config(data_path: Path, out: Path, overrides: list[str], prepare: bool = True):
    """The config of a run given no preset: a recipe derived from the data (config.data_recipe), with
    --set overrides, printed before training starts (config.json records it). Raw data is prepared
    first at its photos' own shape."""
    from styleseg.data.store import PreparedDataset

    if (data_path / "dataset.json").exists():
        ds = PreparedDataset(data_path)
    elif prepare:
        ds = _prepared(data_path, out, None)
    else:  # --dry-run on raw data: what preparing would give, without writing it
        return _raw_recipe(data_path, overrides)
    train = ds.indices("train")
    labeled = ds.indices("train", labeled_only=True)
    recipe = data_recipe(ds.resolution, len(ds.class_map.levels()), len(train), len(labeled))
    cfg = from_dict(TrainConfig, apply_overrides(recipe, overrides))
    levels = ds.class_map.levels()
    print(
        f"no --preset: a recipe derived from {ds.root} ({len(train)} train photos, {len(labeled)} labelled, "
        f"{ds.resolution[0]}x{ds.resolution[1]}, class map '{ds.class_map.name}' with {len(levels) - 1} coarse "
        f"level{'s' * (len(levels) != 2)}): growth phases of {cfg.schedule.stable_kimg:g} kimg, "
        f"{cfg.schedule.total_kimg:g} kimg in all (--set overrides any field; --dry-run prints them all)"
    )
    return cfg


def _raw_recipe(data_path: Path, overrides: list[str]):
    from styleseg.data.prepare import choose_resolution, resolve_class_map
    from styleseg.data.readers import open_source

    reader = open_source(data_path)
    levels = resolve_class_map(reader, None).levels()
    train = [s for s in reader.samples if s.split == "train"]
    labeled = [s for s in train if s.mask_path is not None]
    recipe = data_recipe(choose_resolution(reader).resolution, len(levels), len(train), len(labeled))
    return from_dict(TrainConfig, apply_overrides(recipe, overrides))


def _levels_for_dry_run(data_path: Path, cfg):
    from styleseg.data.prepare import resolve_class_map
    from styleseg.data.readers import open_source
    from styleseg.data.store import PreparedDataset

    if (data_path / "dataset.json").exists():
        return PreparedDataset(data_path).class_map.levels()
    return resolve_class_map(open_source(data_path), cfg.classes).levels()


def cmd_train(args) -> int:
    import torch
    import yaml

    from styleseg.device import resolve_device
    from styleseg.jsonio import write_json
    from styleseg.models.weights import load_json, resolve_checkpoint
    from styleseg.training import distributed as dist
    from styleseg.training.growth_events import describe_schedule
    from styleseg.training.loop import Trainer
    from styleseg.training.precision import choose_dtype, use_tf32
    from styleseg.training.preflight import check_config_fits
    from styleseg.training.run_dir import latest_run_dir, new_run_dir, provenance
    from styleseg.training.warm_start import apply_warm_start, check_warm_start, read_warm_start, warm_start_config

    out = Path(args.out)
    resume_ckpt = None
    if args.resume:
        if args.resume == "auto":
            run = latest_run_dir(out)
            resume_ckpt = resolve_checkpoint(run) if run else None
            if resume_ckpt is None:
                dist.print0(f"--resume auto: no run with a checkpoint in {out}; starting a new run")
        else:
            resume_ckpt = resolve_checkpoint(Path(args.resume))
    if args.init and args.resume:
        raise StylesegError("--init starts a new run and --resume continues one: give one of them")
    warm = read_warm_start(args.init) if args.init else None
    d_only_kimg = None
    if warm is not None:
        d_only_kimg = args.d_only_kimg if args.d_only_kimg is not None else warm.default_d_only_kimg
    if resume_ckpt is not None:
        data = apply_overrides(load_json(resume_ckpt / "config.json"), args.overrides)
        cfg = config_from_json(data)
    elif warm is not None:
        cfg = warm_start_config(warm, args.preset, args.overrides, d_only_kimg)
    elif args.preset:
        cfg = build_config(args.preset, args.overrides)
    else:
        cfg = None  # a recipe derived from the data (config.data_recipe), once the data is known
    data_path = (
        resolve_data(args.data)
        if not (resume_ckpt and not args.data)
        else Path(load_json(resume_ckpt / "meta.json")["data"])
    )
    if cfg is None:
        cfg = recipe_config(data_path, out, args.overrides, prepare=not args.dry_run)
    if args.device:
        cfg.device = args.device

    if args.dry_run:
        print("# resolved config")
        print(yaml.safe_dump(json.loads(json.dumps(to_dict(cfg))), sort_keys=False).rstrip())
        print("\n# schedule")
        print(describe_schedule(cfg, _levels_for_dry_run(data_path, cfg)))
        return 0
    data = _prepared(data_path, out, cfg)
    check_config_fits(cfg, data)  # before the run folder: a refused command leaves nothing behind
    if warm is not None:
        check_warm_start(warm, cfg, data)

    device = resolve_device(cfg.device)
    dist.init(device.type)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", dist.local_rank())
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    tf32 = use_tf32(device, cfg.tf32)
    precision = None
    if cfg.dtype == "auto":
        cfg.dtype, precision = choose_dtype(device, cfg.channels_last)
        dist.print0(
            f"dtype auto: {cfg.dtype} (3x3 conv fwd+bwd: fp32 {precision['fp32_seconds']} s, "
            f"bf16 {precision['bf16_seconds']} s)"
        )
    try:
        if resume_ckpt is not None:
            run = resume_ckpt.parent.parent
        else:
            run = None
            if dist.is_main():
                tag = re.sub(r"[^A-Za-z0-9_.-]", "_", cfg.preset)
                run = new_run_dir(out, tag)
            run = dist.broadcast_object(run)
        trainer = Trainer(cfg, data, run, device)
        if resume_ckpt is not None:
            trainer.load(resume_ckpt)
            dist.print0(f"resumed from {resume_ckpt} at kimg {trainer.kimg:.2f}")
        elif warm is not None:
            apply_warm_start(trainer, warm, d_only_kimg)
            alone = (trainer.d_only_until - trainer.images_seen) / 1000
            dist.print0(
                f"initialised from {warm.path} at kimg {warm.kimg:.2f} ("
                + ("its discriminator" if warm.discriminator is not None else "a fresh discriminator")
                + (f", trained alone for {alone:g} kimg first)" if alone else ")")
            )
        if dist.is_main():
            write_json(run / "config.json", to_dict(cfg))
            info = provenance(device, dist.world_size())
            info.update(data=str(data.root), resumed_from=str(resume_ckpt) if resume_ckpt else None)
            if warm is not None:
                info["initialised_from"] = {**warm.describe(), "d_only_kimg": alone}
            info["tf32"] = tf32
            if precision:
                info["dtype_probe"] = precision
            write_json(run / ("run.json" if resume_ckpt is None else f"resume-{trainer.images_seen:09d}.json"), info)
            print(f"run folder: {run}")
            print(describe_schedule(cfg, trainer.levels))
        return trainer.train(progress=not args.no_progress)
    finally:
        # DDP's reducer keeps the process group alive: a trainer still held here was freed at interpreter
        # exit, after the group, and gloo's threads aborted the process ("terminate called without an
        # active exception", 1 two-process run in 4). Free it, cycles included, before the group goes.
        trainer = None
        gc.collect()
        dist.shutdown()
