"""`styleseg bench`: speed of training, generation and data loading at a preset's final stage with
segmentation on, FLOPs counted with torch.utils.flop_counter, and the ratio of achieved FLOP/s to the
machine's own peak measured in the same process (the roofline ratio)."""

from __future__ import annotations

import contextlib
import resource
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from styleseg.config import TrainConfig
from styleseg.data.store import PreparedDataset, write_store
from styleseg.sampling import seed_latents
from styleseg.training.compiled import compiled_graphs
from styleseg.training.loop import Trainer


class _GlobalOnly:
    """Stands in for FlopCounterMode's module tracker: we need totals only, and the tracker's autograd
    hooks fail on modules called under torch.no_grad (the generator inside the D step)."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def count_flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalOnly()
    with counter:
        fn()
    return counter.get_total_flops()


@dataclass
class BenchResult:
    preset: str
    device: str
    dtype: str
    batch: int
    compile: bool
    train_images_per_s: float
    generate_pairs_per_s: float
    data_samples_per_s: float
    g_forward_gflop_per_image: float
    train_step_gflop_per_image: float
    peak_gflops: dict
    train_gflops: float
    generate_gflops: float
    train_roofline: float | None
    generate_roofline: float | None
    peak_used: str
    seconds_per_kimg: float
    timed_steps: int
    compile_seconds: float
    compiled_graphs: int
    """Graphs torch.compile built for the warm-up steps (0 without --compile)."""
    graphs_compiled_while_timed: int
    """Graphs built during the timed steps: 0 unless something recompiles from step to step."""
    peak_rss_mib: float
    peak_cuda_mib: float | None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device, repeats: int) -> float:
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def roofline(achieved_gflops: float, peak_gflops: float) -> float | None:
    """achieved / peak, or None when above 1: then the probe underestimated the device's peak (e.g.
    convolutions reaching a faster unit than the matrix-product probe), and a ratio would mislead."""
    ratio = achieved_gflops / peak_gflops
    return round(ratio, 4) if ratio <= 1 else None


def measure_peak(device: torch.device) -> dict:
    """GFLOP/s of a large fp32 and bf16 matrix product and of a 3x3 convolution on this device."""
    peaks = {}
    big = 4096 if device.type == "cuda" else 2048
    for name, dtype, n in (("matmul_fp32", torch.float32, big), ("matmul_bf16", torch.bfloat16, big)):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        if device.type == "cpu" and dtype == torch.bfloat16:
            n = 512  # without bf16 matrix units a CPU emulates bf16 slowly: keep the probe short
            a, b = a[:n, :n].contiguous(), b[:n, :n].contiguous()
        seconds = _time(lambda a=a, b=b: a @ b, device, 3)
        peaks[name] = 2 * n**3 / seconds / 1e9
    if device.type == "cuda":  # TF32 tensor cores, the fp32 math training uses when allowed
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        a, b = torch.randn(big, big, device=device), torch.randn(big, big, device=device)
        peaks["matmul_tf32"] = 2 * big**3 / _time(lambda: a @ b, device, 3) / 1e9
        torch.backends.cuda.matmul.allow_tf32 = before
    x = torch.randn(32, 128, 48, 32, device=device)
    w = torch.randn(128, 128, 3, 3, device=device)
    seconds = _time(lambda: F.conv2d(x, w, padding=1), device, 3)
    peaks["conv3x3_fp32"] = 2 * 32 * 128 * 128 * 9 * 48 * 32 / seconds / 1e9
    return {k: round(v, 1) for k, v in peaks.items()}


def synthetic_store(cfg: TrainConfig, class_map_name: str, folder: Path, n: int = 512) -> PreparedDataset:
    """A prepared store of random pixels at the model resolution (speed does not depend on content)."""
    from styleseg.data.classes import get_class_map

    h, w = cfg.model.resolution
    cm = get_class_map(class_map_name)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    masks = rng.integers(0, cm.num_classes, (n, h, w), dtype=np.uint8)
    return write_store(folder, images, masks, cm, source={"path": "synthetic", "layout": "random"})


def final_stage_config(cfg: TrainConfig, batch: int | None) -> TrainConfig:
    """The same model, with the schedule moved so training starts at the final stage, segmentation on."""
    s = cfg.schedule
    s.stable_kimg = s.fade_kimg = s.seg_fade_kimg = 0.0
    s.seg_start_kimg, s.class_split_kimg, s.total_kimg = 0.0, [], 1e9
    if batch:
        cfg.optim.batch = [batch]
    return cfg


@contextlib.contextmanager
def bench_trainer(
    cfg: TrainConfig, device: torch.device, data: PreparedDataset | None = None, samples: int = 512
) -> Iterator[Trainer]:
    """A trainer on `data`, or on a synthetic store of `samples` made for it, in a throwaway run folder,
    not logging."""
    with tempfile.TemporaryDirectory() as tmp:
        data = data or synthetic_store(cfg, "ccp-12", Path(tmp), n=samples)
        trainer = Trainer(cfg, data, Path(tmp), device)
        trainer.logger.enabled = False
        yield trainer


def run_bench(
    cfg: TrainConfig,
    device: torch.device,
    data: PreparedDataset | None,
    warmup: int = 3,
    steps: int = 10,
    compile_model: bool = False,
) -> BenchResult:
    cfg.compile = compile_model  # the trainer's own compilation: G, and D in the generator step
    with bench_trainer(cfg, device, data) as trainer:
        data = trainer.data
        compile_seconds = 0.0
        graphs_before = compiled_graphs()
        batch = cfg.optim.at_stage(cfg.optim.batch, cfg.model.num_stages - 1)
        start = time.perf_counter()
        for _ in range(warmup):
            trainer.train_step()
        _sync(device)
        if compile_model:
            compile_seconds = time.perf_counter() - start
        # Time whole R1 intervals from an interval's start, so lazy R1 counts at its real share.
        interval = max(cfg.optim.r1_interval, 1)
        steps = max(interval, -(-steps // interval) * interval)
        while trainer.step % interval:
            trainer.train_step()
        _sync(device)
        t0 = time.perf_counter()
        graphs_warm = compiled_graphs()
        for _ in range(steps):
            trainer.train_step()
        _sync(device)
        step_seconds = (time.perf_counter() - t0) / steps
        graphs_timed = compiled_graphs() - graphs_warm  # 0 when nothing recompiles step to step
        flops_r1 = count_flops(trainer.train_step) / batch  # trainer.step is again an interval's start
        flops_plain = count_flops(trainer.train_step) / batch
        train_flops = (flops_r1 + (interval - 1) * flops_plain) / interval

        st = trainer.growth()
        G = trainer.nets.G_ema
        z, noise = seed_latents(G, list(range(batch)), st.stage, device)

        def gen():
            with torch.no_grad(), trainer.loss.autocast:
                G.synthesis(G.styles(z), st.stage, 1.0, st.seg_level, noise)

        gen_seconds = _time(gen, device, steps)
        gen_flops = count_flops(gen) / batch

        sampler_idx = data.indices("train")
        rng = np.random.default_rng(0)
        load_seconds = _time(
            lambda: data.load_batch(rng.choice(sampler_idx, batch), rng.random(batch) < 0.5), torch.device("cpu"), 50
        )
        peaks = measure_peak(device)
        # The peak in the math mode training used: bf16, TF32 where CUDA allows it, else fp32.
        tf32 = device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
        peak_used = "matmul_bf16" if cfg.dtype == "bf16" else ("matmul_tf32" if tf32 else "matmul_fp32")
        peak = peaks[peak_used]
        train_ips, gen_ips = batch / step_seconds, batch / gen_seconds
        return BenchResult(
            preset=cfg.preset,
            device=str(device),
            dtype=cfg.dtype,
            batch=batch,
            compile=compile_model,
            train_images_per_s=round(train_ips, 1),
            generate_pairs_per_s=round(gen_ips, 1),
            data_samples_per_s=round(batch / load_seconds, 1),
            g_forward_gflop_per_image=round(gen_flops / 1e9, 4),
            train_step_gflop_per_image=round(train_flops / 1e9, 4),
            peak_gflops=peaks,
            train_gflops=round(train_flops * train_ips / 1e9, 2),
            generate_gflops=round(gen_flops * gen_ips / 1e9, 2),
            train_roofline=roofline(train_flops * train_ips / 1e9, peak),
            generate_roofline=roofline(gen_flops * gen_ips / 1e9, peak),
            peak_used=peak_used,
            seconds_per_kimg=float(f"{1000 / train_ips:.3g}"),  # 3 significant figures: a fast machine gives ~1 s/kimg
            timed_steps=steps,
            compile_seconds=round(compile_seconds, 1),
            compiled_graphs=graphs_warm - graphs_before,
            graphs_compiled_while_timed=graphs_timed,
            peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            peak_cuda_mib=round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None,
        )


# Published dense peaks of one H100 SXM (NVIDIA's datasheet, without sparsity), TFLOP/s.
H100_PEAK_TFLOPS = {"bf16": 989.0, "tf32": 494.0}


def count_step_flops(cfg: TrainConfig, device: torch.device, data: PreparedDataset | None = None) -> dict:
    """FLOPs per image of one training step at the final stage, counted without timing: a step with
    lazy R1 and one without, weighted by the R1 interval (R1 at its real share), and a G forward."""
    with bench_trainer(cfg, device, data, samples=64) as trainer:
        batch = cfg.optim.at_stage(cfg.optim.batch, cfg.model.num_stages - 1)
        with_r1 = count_flops(trainer.train_step) / batch  # step 0: R1 is due
        without_r1 = count_flops(trainer.train_step) / batch
        interval = max(cfg.optim.r1_interval, 1)
        mean = (with_r1 + (interval - 1) * without_r1) / interval
        st = trainer.growth()
        z, noise = seed_latents(trainer.nets.G_ema, list(range(batch)), st.stage, device)

        def gen():
            with torch.no_grad():
                trainer.nets.G_ema.synthesis(trainer.nets.G_ema.styles(z), st.stage, 1.0, st.seg_level, noise)

        gen_flops = count_flops(gen) / batch
    return {
        "train_gflop_per_image_r1_step": round(with_r1 / 1e9, 3),
        "train_gflop_per_image_plain_step": round(without_r1 / 1e9, 3),
        "train_gflop_per_image": round(mean / 1e9, 3),
        "r1_interval": interval,
        "g_forward_gflop_per_image": round(gen_flops / 1e9, 4),
    }


def h100_estimate(train_gflop_per_image: float, utilisation=(0.2, 0.4)) -> dict:
    """Training images/s one H100 would reach at the given fractions of its bf16 and TF32 peaks:
    images/s = utilisation x peak FLOP/s / FLOPs per image. An estimate, not a measurement."""
    out = {}
    for mode, tflops in H100_PEAK_TFLOPS.items():
        for u in utilisation:
            out[f"{mode}_{int(100 * u)}pct"] = round(u * tflops * 1e3 / train_gflop_per_image, 1)
    return out
