"""`styleseg train`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import yaml

from styleseg.cli.common import add_data_arg, folder_arg, resolve_data
from styleseg.config import apply_overrides, build_config, config_from_json, preset_names, to_dict
from styleseg.data.prepare import prepare_dataset, resolve_class_map
from styleseg.data.readers import open_source
from styleseg.data.store import PreparedDataset
from styleseg.device import resolve_device
from styleseg.errors import StylesegError
from styleseg.jsonio import write_json
from styleseg.models.weights import load_json, resolve_checkpoint
from styleseg.training import distributed as dist
from styleseg.training.loop import Trainer, describe_schedule
from styleseg.training.precision import choose_dtype, use_tf32
from styleseg.training.run_dir import latest_run_dir, new_run_dir, provenance
from styleseg.training.warm_start import read_warm_start, warm_start_config


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
        help="preset name or YAML file (default: demo); with --init, the recipe to go on with, whose network "
        "may add resolution stages to the source's (e.g. --init viton64-lip12 --preset viton128)",
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
    """Use a prepared dataset as is; prepare a raw one once into out/prepared/."""
    if (data_path / "dataset.json").exists():
        return PreparedDataset(data_path)
    reader = open_source(data_path)
    class_map = resolve_class_map(reader, cfg.classes)
    h, w = cfg.model.resolution
    target = out / "prepared" / f"{data_path.name}-{h}x{w}-{class_map.name}"
    if not (target / "dataset.json").exists():
        if dist.is_main():
            print(f"preparing {data_path} at {h}x{w} ({class_map.name}) into {target}")
            prepare_dataset(data_path, target, (h, w), cfg.classes)
        dist.barrier()
    return PreparedDataset(target)


def _levels_for_dry_run(data_path: Path, cfg):
    if (data_path / "dataset.json").exists():
        return PreparedDataset(data_path).class_map.levels()
    return resolve_class_map(open_source(data_path), cfg.classes).levels()


def cmd_train(args) -> int:
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
    else:
        cfg = build_config(args.preset or "demo", args.overrides)
    if args.device:
        cfg.device = args.device
    data_path = (
        resolve_data(args.data)
        if not (resume_ckpt and not args.data)
        else Path(load_json(resume_ckpt / "meta.json")["data"])
    )

    if args.dry_run:
        print("# resolved config")
        print(yaml.safe_dump(json.loads(json.dumps(to_dict(cfg))), sort_keys=False).rstrip())
        print("\n# schedule")
        print(describe_schedule(cfg, _levels_for_dry_run(data_path, cfg)))
        return 0

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
        data = _prepared(data_path, out, cfg)
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
            trainer.warm_start(warm, d_only_kimg)
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
        dist.shutdown()
