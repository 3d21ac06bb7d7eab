"""torch.compile for training: one graph per growth phase, not per step.

A step's Python arguments are the growth state (stage, fading or not, class level, mask fade), which
changes a handful of times per run; everything that changes every step is a tensor (the style-mixing
cut, per sample) or a float that torch.compile keeps symbolic (alpha). So G and D compile once per
growth phase, plus once when a fade starts moving. Each phase is a new entry of the same compiled
function, so the recompile limit is raised to cover every phase of the schedule instead of falling
back to eager after torch's default 8."""

from __future__ import annotations

import torch
import torch._dynamo
from torch._dynamo.utils import counters


def growth_phases(num_stages: int, num_levels: int) -> int:
    """Upper bound on the distinct growth states of a run: every stage fading and stable, every class
    level fading in and stable, and the image-only start."""
    return 2 * num_stages + 2 * num_levels + 2


def compile_for_training(modules: list[torch.nn.Module], phases: int) -> list[torch.nn.Module]:
    """torch.compile each module, with room for every phase in both grad modes (G runs under no_grad
    in D's step) and the first moving alpha of each fade."""
    limit = 4 * phases
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, limit)
    torch._dynamo.config.accumulated_recompile_limit = max(
        torch._dynamo.config.accumulated_recompile_limit, limit * len(modules)
    )
    return [torch.compile(m) for m in modules]


def compiled_graphs() -> int:
    """Graphs torch.compile has built in this process so far."""
    return int(counters["stats"]["unique_graphs"])
