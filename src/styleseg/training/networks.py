"""The networks a training run holds, and their optimisers, built once from the config: G, D and
G_ema; DDP wrappers under torchrun; torch.compile'd callables where the config asks for them."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel

from styleseg.config import TrainConfig
from styleseg.models.discriminator import Discriminator
from styleseg.models.generator import Generator
from styleseg.training.compiled import compile_for_training, growth_phases


@dataclass
class TrainingNetworks:
    G: Generator
    D: Discriminator
    G_ema: Generator
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    G_ddp: torch.nn.Module
    """G as its own step calls it (DDP-wrapped under torchrun, compiled where asked)."""
    D_ddp: torch.nn.Module
    """D as its own step calls it."""
    G_for_d: torch.nn.Module
    """G as D's step calls it (no gradient, no DDP)."""
    D_for_g: torch.nn.Module
    """D as G's step calls it (no second DDP reduction)."""

    def weights(self) -> dict[str, torch.nn.Module]:
        """The modules a checkpoint holds, by file name."""
        return {"G": self.G, "D": self.D, "G_ema": self.G_ema}


def freeze_generator_below(G: Generator, stage: int) -> None:
    """optim.freeze_g_below_stage: the mapping network and the stages below `stage` get no gradient.
    Adam skips a parameter without one, backward stops at the first trained stage, and the optimiser
    holds the same parameters either way, so a run resumes with or without the option."""
    for name, param in G.named_parameters():
        owner = G.stage_of(name)
        if owner is None or owner < stage:
            param.requires_grad_(False)


def build_networks(
    cfg: TrainConfig, level_sizes: list[int], pair_head: bool, device: torch.device, world: int, num_levels: int
) -> TrainingNetworks:
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    G = Generator(cfg.model, level_sizes).to(device)
    D = Discriminator(cfg.model, level_sizes, pair_head=pair_head).to(device)
    if cfg.channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    betas = tuple(cfg.optim.betas)
    if cfg.optim.freeze_g_below_stage is not None:
        freeze_generator_below(G, cfg.optim.freeze_g_below_stage)
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.optim.lr[0], betas=betas, eps=cfg.optim.eps)
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.optim.lr[0], betas=betas, eps=cfg.optim.eps)
    if world > 1:
        kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
        # Inactive stages and class levels have no gradient in a given step, hence find_unused_parameters.
        G_ddp = DistributedDataParallel(G, find_unused_parameters=True, **kwargs)
        D_ddp = DistributedDataParallel(D, find_unused_parameters=True, **kwargs)
    else:
        G_ddp, D_ddp = G, D
    G_for_d, D_for_g = G, D
    if cfg.compile:
        phases = growth_phases(cfg.model.num_stages, num_levels)
        G_ddp, G_for_d, D_for_g = compile_for_training([G_ddp, G, D], phases)
    return TrainingNetworks(G, D, G_ema, opt_G, opt_D, G_ddp, D_ddp, G_for_d, D_for_g)
