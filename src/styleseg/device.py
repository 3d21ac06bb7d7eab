"""The one device choice of every command: 'auto' picks CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from styleseg.errors import StylesegError


def resolve_device(name: str) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> a torch.device, or a clear error when CUDA is absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StylesegError(f"--device {name}: CUDA is not available on this machine")
    return device
