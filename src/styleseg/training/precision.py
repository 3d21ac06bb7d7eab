"""`dtype: auto`: measure, on this device, whether bf16 autocast trains faster than fp32, and choose.

Some CPUs have bf16 instructions (AVX512-BF16, AMX) and run bf16 convolutions faster than fp32;
others emulate bf16 and run it many times slower; GPUs from Ampere on are fast in bf16. A short probe
of the operation a style-based generator spends its time in (3x3 convolutions, forward and backward)
decides; the result and its timings are recorded in the run folder.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F


def _probe(
    device: torch.device, bf16: bool, channels_last: bool, channels: int = 128, size: int = 24, batch: int = 16
) -> float:
    """Seconds of one forward+backward 3x3 convolution, best of a few, in fp32 or under bf16 autocast,
    in the memory format training uses (oneDNN's fast bf16 kernels want channels_last)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, channels, size, size, device=device).to(memory_format=fmt)
    w = torch.randn(channels, channels, 3, 3, device=device).to(memory_format=fmt)
    x.requires_grad_(True)
    w.requires_grad_(True)
    best = float("inf")
    for _ in range(4):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            y = F.conv2d(x, w, padding=1)
        y.float().square().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def choose_dtype(device: torch.device, channels_last: bool = False, margin: float = 1.1) -> tuple[str, dict]:
    """'bf16' when it is at least `margin` times faster than fp32 on this device, else 'fp32'."""
    fp32, bf16 = _probe(device, False, channels_last), _probe(device, True, channels_last)
    choice = "bf16" if fp32 / bf16 >= margin else "fp32"
    return choice, {"fp32_seconds": round(fp32, 5), "bf16_seconds": round(bf16, 5), "chosen": choice}


def use_tf32(device: torch.device, enabled: bool = True) -> bool:
    """TF32 for fp32 matrix products and convolutions on CUDA GPUs of compute capability 8 or more
    (Ampere and newer): their tensor cores then run fp32 training at several times the strict-fp32
    rate, with a 10-bit mantissa in the products (accumulation stays fp32). Other devices are left
    as they are. Returns whether TF32 is on."""
    if device.type != "cuda":
        return False
    on = enabled and torch.cuda.get_device_capability(device)[0] >= 8
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on
    return on
