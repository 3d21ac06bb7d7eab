"""`styleseg bench`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from styleseg.cli.common import add_device_arg
from styleseg.config import build_config


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="measure training, generation and data speed against the machine's peak",
        description="At the preset's final stage with segmentation on: training images/s (D with R1 as "
        "scheduled, G, EMA, augmentation), generation pairs/s, data-loading samples/s, FLOPs per image "
        "(torch.utils.flop_counter), achieved FLOP/s as a fraction of this machine's measured peak, peak memory.",
    )
    p.add_argument("--preset", default="demo", help="preset name or YAML (default demo)")
    add_device_arg(p)
    p.add_argument(
        "--dtype", choices=["fp32", "bf16", "auto"], default=None, help="default: the preset's; auto measures both"
    )
    p.add_argument("--compile", action="store_true", help="torch.compile G and D (compile time is reported)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the preset's final-stage batch)")
    p.add_argument("--data", default=None, help="prepared dataset to load from (default: random pixels)")
    p.add_argument(
        "--steps", type=int, default=16, help="timed training steps, rounded up to whole R1 intervals (default 16)"
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--flops-only",
        action="store_true",
        help="count FLOPs per image (R1 at its share of steps) and estimate one H100's images/s; no timing",
    )
    p.add_argument("--json", default=None, help="also write the result here")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    import torch

    from styleseg.bench import count_step_flops, final_stage_config, h100_estimate, run_bench
    from styleseg.data.store import PreparedDataset
    from styleseg.device import resolve_device
    from styleseg.jsonio import write_json
    from styleseg.training.precision import choose_dtype, use_tf32

    cfg = build_config(args.preset, args.overrides)
    if args.dtype:
        cfg.dtype = args.dtype
    cfg = final_stage_config(cfg, args.batch)
    device = resolve_device(args.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    use_tf32(device, cfg.tf32)  # as training does; the bench then measures the TF32 peak
    if cfg.dtype == "auto":
        cfg.dtype, probe = choose_dtype(device, cfg.channels_last)
        fp32, bf16 = probe["fp32_seconds"], probe["bf16_seconds"]
        print(f"dtype auto: {cfg.dtype} (3x3 conv fwd+bwd: fp32 {fp32} s, bf16 {bf16} s)")
    data = PreparedDataset(Path(args.data)) if args.data else None
    if args.flops_only:
        flops = count_step_flops(cfg, device, data)
        est = h100_estimate(flops["train_gflop_per_image"])
        h, w = cfg.model.resolution
        print(f"styleseg bench --flops-only: preset {cfg.preset} ({h}x{w}), batch {cfg.optim.batch[-1]}")
        print(
            f"  training step: {flops['train_gflop_per_image']} GFLOP/img on average over an R1 interval of "
            f"{flops['r1_interval']} ({flops['train_gflop_per_image_r1_step']} with R1, "
            f"{flops['train_gflop_per_image_plain_step']} without); G forward {flops['g_forward_gflop_per_image']}"
        )
        print(
            "  one H100 SXM, estimated (utilisation x published dense peak / FLOPs per image): "
            f"bf16 {est['bf16_20pct']}-{est['bf16_40pct']} img/s, TF32 {est['tf32_20pct']}-{est['tf32_40pct']} img/s "
            "at 20-40 % of peak"
        )
        if args.json:
            write_json(Path(args.json), {**flops, "h100_estimate_images_per_s": est})
        return 0
    r = run_bench(cfg, device, data, steps=args.steps, compile_model=args.compile)
    h, w = cfg.model.resolution
    print(
        f"styleseg bench: preset {r.preset} ({h}x{w}), {r.device}, {r.dtype}, batch {r.batch}, "
        f"compile {r.compile}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{r.timed_steps} timed steps (whole R1 intervals)"
    )

    def share(ratio):
        return f"{100 * ratio:.1f}% of {r.peak_used}" if ratio is not None else "above the probe's peak: no ratio"

    rows = [
        (
            "training",
            f"{r.train_images_per_s} img/s",
            f"{r.seconds_per_kimg} s/kimg",
            f"{r.train_step_gflop_per_image} GFLOP/img",
            f"{r.train_gflops} GFLOP/s",
            share(r.train_roofline),
        ),
        (
            "generation",
            f"{r.generate_pairs_per_s} pairs/s",
            "",
            f"{r.g_forward_gflop_per_image} GFLOP/img",
            f"{r.generate_gflops} GFLOP/s",
            share(r.generate_roofline),
        ),
        ("data loading", f"{r.data_samples_per_s} samples/s", "", "", ""),
    ]
    for row in rows:
        print("  " + "".join(f"{c:<22}" for c in row).rstrip())
    print(f"  peak GFLOP/s measured here: {r.peak_gflops}")
    print(
        f"  peak RSS {r.peak_rss_mib} MiB"
        + (f", peak CUDA {r.peak_cuda_mib} MiB" if r.peak_cuda_mib else "")
        + (
            f", compile {r.compile_seconds} s ({r.compiled_graphs} graphs, "
            f"{r.graphs_compiled_while_timed} more while timed)"
            if r.compile
            else ""
        )
    )
    if args.json:
        write_json(Path(args.json), asdict(r))
    return 0
