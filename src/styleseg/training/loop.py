"""The training loop: one D step and one G step per iteration, growth events when the schedule
says so, EMA, ADA, logs, sample grids and checkpoints. Resuming restores every piece of state, so
a resumed run reproduces an uninterrupted one exactly on the same machine."""

from __future__ import annotations

import copy
import math
import signal
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from styleseg.config import ConfigError, TrainConfig, to_dict
from styleseg.data.balance import class_presence, repeat_factors
from styleseg.data.budget import labels_to_keep
from styleseg.data.store import EpochSampler, PreparedDataset
from styleseg.errors import StylesegError
from styleseg.jsonio import write_json
from styleseg.models.discriminator import Discriminator
from styleseg.models.generator import Generator
from styleseg.models.growth import (
    GrowthState,
    added_stages,
    growth_at,
    parent_index,
    schedule_events,
    split_discriminator_classes,
    split_generator_classes,
)
from styleseg.models.weights import assign_weights
from styleseg.sampling import synthesize, to_class_ids, to_uint8_images
from styleseg.training import distributed as dist
from styleseg.training.augment import AdaController, augment
from styleseg.training.checkpoint import load_state, load_weights, save_checkpoint
from styleseg.training.compiled import compile_for_training, compiled_graphs, growth_phases
from styleseg.training.ema import ema_beta, ema_update
from styleseg.training.feeder import RealBatchFeeder, photo_positions
from styleseg.training.losses import d_logistic, d_wgan, g_nonsaturating, g_wgan, gradient_penalty, r1_penalty
from styleseg.training.mismatch import masks_of_others, swap_two_classes
from styleseg.training.randomness import CounterRandom
from styleseg.training.run_dir import RunLogger
from styleseg.training.warm_start import WarmStart
from styleseg.viz import grid, save_png, triplet, upscale, with_legend


class TrainingError(StylesegError):
    pass


def mask_for_d(probs: torch.Tensor, fake: bool, mode: str, noise_std: float, rand: CounterRandom) -> torch.Tensor:
    """What D sees of a mask (B, K, H, W): real masks are area fractions, fake ones softmax probabilities.
    'straight_through' shows fakes as hard one-hot maps whose gradient is the softmax's; 'noise' adds
    the same Gaussian noise to real and fake masks, hiding the sharpness gap between one-hot reals
    and softmax fakes so D must judge the layout instead."""
    if fake and mode == "straight_through":
        hard = F.one_hot(probs.argmax(1), probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
        probs = hard + probs - probs.detach()
    if mode == "noise" and noise_std > 0:
        b, k, h, w = probs.shape
        probs = probs + noise_std * rand.randn(b, k, h, w).to(probs.dtype)
    return probs


class MismatchedPairs(NamedTuple):
    """Real images with corrupted masks, D's extra fakes (Trainer.mismatched_pairs)."""

    img: torch.Tensor
    seg: torch.Tensor
    positions: torch.Tensor
    """their positions in the step's real batch"""
    changed: torch.Tensor
    """(n,) bool, False where there was nothing to corrupt (fewer than two foreground classes to
    swap): such a sample counts for nothing in D's loss"""


class StepStatistics:
    """Per-step statistics summed where they were computed (on the training device), so a step
    never waits for the host; `means` reads them all in one transfer."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.first_step = 0

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for name, value in stats.items():
            self.sums[name] = self.sums[name] + value.float() if name in self.sums else value.float()
            self.counts[name] = self.counts.get(name, 0) + 1

    def means(self) -> dict[str, float]:
        if not self.sums:
            return {}
        values = torch.stack(list(self.sums.values())).cpu().tolist()
        return {name: v / self.counts[name] for name, v in zip(self.sums, values)}

    def reset(self, step: int) -> None:
        self.sums, self.counts, self.first_step = {}, {}, step


class Trainer:
    def __init__(self, cfg: TrainConfig, data: PreparedDataset, run: Path, device: torch.device):
        self.cfg, self.data, self.run, self.device = cfg, data, run, device
        self.rank, self.world = dist.rank(), dist.world_size()
        self.levels = data.class_map.levels()
        sizes = [lvl.num_classes for lvl in self.levels]
        self.events = schedule_events(cfg.schedule, cfg.model, self.levels)
        factor = data.resolution[0] / cfg.model.resolution[0]
        if factor != data.resolution[1] / cfg.model.resolution[1] or factor < 1 or not math.log2(factor).is_integer():
            raise StylesegError(
                f"{data.root}: prepared at {data.resolution[0]}x{data.resolution[1]}, which is not the model "
                f"resolution {cfg.model.resolution[0]}x{cfg.model.resolution[1]} times a power of two"
            )
        self.data_factor = int(factor)
        train_photos = data.indices("train")
        labeled = labels_to_keep(data.indices("train", labeled_only=True), cfg.data.max_labeled, cfg.seed)
        self.image_share = cfg.data.image_share
        if self.image_share is None:  # auto: unlabelled photos keep teaching through D's image head
            self.image_share = 0.5 if len(train_photos) > len(labeled) else 0.0
        self.label_record = {
            "max_labeled": cfg.data.max_labeled,
            "labeled_kept": len(labeled),
            "train_photos": len(train_photos),
            "image_share": self.image_share,
            "image_share_from": "config" if cfg.data.image_share is not None else "auto",
            "labeled_indices": labeled.tolist(),
        }
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        self.G = Generator(cfg.model, sizes).to(device)
        self.D = Discriminator(cfg.model, sizes, pair_head=self.image_share > 0).to(device)
        if cfg.channels_last:
            self.G, self.D = self.G.to(memory_format=torch.channels_last), self.D.to(memory_format=torch.channels_last)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        betas = tuple(cfg.optim.betas)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.optim.lr[0], betas=betas, eps=cfg.optim.eps)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.optim.lr[0], betas=betas, eps=cfg.optim.eps)
        if self.world > 1:
            kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
            # Inactive stages and class levels have no gradient in a given step, hence find_unused_parameters.
            self.G_ddp = DistributedDataParallel(self.G, find_unused_parameters=True, **kwargs)
            self.D_ddp = DistributedDataParallel(self.D, find_unused_parameters=True, **kwargs)
        else:
            self.G_ddp, self.D_ddp = self.G, self.D
        # G as D's step calls it (no gradient, no DDP), D as G's step calls it (no second DDP reduction)
        self.G_for_d, self.D_for_g = self.G, self.D
        if cfg.compile:
            phases = growth_phases(cfg.model.num_stages, len(self.levels))
            self.G_ddp, self.G_for_d, self.D_for_g = compile_for_training([self.G_ddp, self.G, self.D], phases)
        flip = cfg.data.xflip
        photo_repeats, pair_repeats = self._repeat_factors(train_photos, labeled, sizes[-1])
        image_sampler = EpochSampler(train_photos, cfg.seed, flip, self.rank, self.world, photo_repeats)
        seg_sampler = (
            EpochSampler(labeled, cfg.seed + 1, flip, self.rank, self.world, pair_repeats) if len(labeled) else None
        )
        if cfg.schedule.seg_start_kimg is not None and seg_sampler is None:
            raise StylesegError(
                f"{data.root}: the schedule adds segmentation but the train split has no labeled samples"
            )
        self.feeder = RealBatchFeeder(
            data, image_sampler, seg_sampler, self.levels, cfg.model.num_stages, self.data_factor, device
        )
        self.level_mirrors = [torch.from_numpy(lvl.mirror_lut()).to(device) for lvl in self.levels]
        self.ada = AdaController(cfg.augment)
        self.rand = CounterRandom(cfg.seed, self.rank, self.world, device)
        self.images_seen, self.step = 0, 0
        self.d_only_until = 0  # images_seen below which only D trains (a warm start's fresh D catching up)
        self.stats = StepStatistics()
        self._pair_flags: dict[tuple[int, int], torch.Tensor] = {}
        self._mismatch_positions: dict[tuple[int, int, int], torch.Tensor | None] = {}
        self.structure: tuple | None = None
        self.next_snapshot = self.next_checkpoint = 0
        self.stop_signal: int | None = None
        self.logger = RunLogger(run, enabled=dist.is_main())
        if dist.is_main():
            write_json(run / "labels.json", self.label_record)
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.dtype == "bf16" else nullcontext()
        self._eval_seg = self._eval_real = None  # reference segmenter and its real-image features, loaded lazily

    def _repeat_factors(self, train_photos, labeled, num_classes: int):
        """Repeat factors of the photo and pair samplers under `data.repeat_threshold` (None, None when
        off): from the labelled samples' class presence; unlabelled photos keep factor 1."""
        threshold = self.cfg.data.repeat_threshold
        if not threshold or not len(labeled):
            return None, None
        pairs = repeat_factors(class_presence(self.data, labeled, num_classes), threshold)
        photos = np.ones(len(train_photos))
        is_pair = np.isin(train_photos, labeled)  # `labeled` is sorted (labels_to_keep)
        photos[is_pair] = pairs[np.searchsorted(labeled, train_photos[is_pair])]
        self.label_record.update(
            repeat_threshold=threshold,
            repeat_factor_max=round(float(pairs.max()), 3),
            repeated_share=round(float((pairs > 1).mean()), 4),
            epoch_growth=round(float(pairs.mean()), 4),
        )
        return photos, pairs

    # ----- state -----
    @property
    def kimg(self) -> float:
        return self.images_seen / 1000

    def growth(self) -> GrowthState:
        return growth_at(self.kimg, self.cfg.schedule, self.cfg.model.num_stages, len(self.levels))

    def state_dict(self) -> dict:
        # No generator states: a step draws every number from CounterRandom (seed, step), never from
        # torch's global generators (tests/training/test_train.py checks), and saving CUDA's would
        # touch every visible GPU from every rank. Older checkpoints' rng_* entries are ignored.
        return {
            "images_seen": self.images_seen,
            "step": self.step,
            "structure": list(self.structure) if self.structure else None,
            "next_snapshot": self.next_snapshot,
            "next_checkpoint": self.next_checkpoint,
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "ada": self.ada.state_dict(),
            **self.feeder.sampler_states(),
            "world_size": self.world,
            "d_only_until": self.d_only_until,
        }

    def load(self, ckpt: Path) -> None:
        """Restore everything from a checkpoint (any number of processes may have written it)."""
        for name, module in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):
            load_weights(module, ckpt / f"{name}.safetensors")
        state = load_state(ckpt / "state.pt")
        self.images_seen, self.step = int(state["images_seen"]), int(state["step"])
        self.structure = tuple(state["structure"]) if state["structure"] else None
        self.next_snapshot, self.next_checkpoint = state["next_snapshot"], state["next_checkpoint"]
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.ada.load_state_dict(state["ada"])
        self.feeder.load_sampler_states(state)
        self.d_only_until = int(state.get("d_only_until", 0))

    def warm_start(self, source: WarmStart, d_only_kimg: float | None = None) -> None:
        """Start from a trained generator at its kimg (see training/warm_start.py). D comes from the
        source where it has one; a fresh D first trains alone for `d_only_kimg` (default 5 when fresh,
        0 otherwise), so that its first, uninformed gradients do not undo the generator. Where this
        run's networks add stages to the source's, those start from their initial weights and fade in
        when the schedule says (function-preserving: at alpha 0 G's output is the source's up-sampled,
        and D reads it down-sampled through the source's input layer)."""
        try:
            added = added_stages(source.config.model, self.cfg.model)
        except ConfigError as exc:
            raise StylesegError(f"{source.path}: {exc} (--set model.* ?)") from exc
        if source.class_map != self.data.class_map:
            raise StylesegError(
                f"{source.path}: its classes ({source.class_map.name}) are not {self.data.root}'s "
                f"({self.data.class_map.name})"
            )
        self.images_seen = round(source.kimg * 1000)
        source_stages = source.config.model.num_stages
        st = growth_at(self.kimg, self.cfg.schedule, source_stages, len(self.levels))
        if st != source.growth:
            raise StylesegError(
                f"{source.path}: saved at {source.growth}, but this run's schedule gives {st} at kimg {source.kimg:.2f}"
            )
        new_from = source_stages if added else None
        for module in (self.G, self.G_ema):
            assign_weights(module, source.generator, source.path, new_from)
        if source.discriminator is not None:
            assign_weights(self.D, source.discriminator, f"{source.path} (discriminator)", new_from)
        if source.ada_p is not None and self.cfg.augment.fixed_p is None:
            self.ada.p = source.ada_p
        if d_only_kimg is None:
            d_only_kimg = source.default_d_only_kimg
        self.d_only_until = self.images_seen + round(d_only_kimg * 1000)
        self.structure = st.structure  # the source's: no growth event may re-initialise a head; added stages follow
        self.next_snapshot = self.images_seen
        self.next_checkpoint = self.images_seen + int(self.cfg.checkpoint_kimg * 1000)

    def meta(self) -> dict:
        return {
            "kimg": self.kimg,
            "step": self.step,
            "growth": asdict(self.growth()),
            "classes": self.data.class_map.to_json(),
            "data": str(self.data.root),
        }

    def save(self) -> Path:
        self.read_stats(reset=False)  # never checkpoint a run whose losses went non-finite
        dist.check_consistent({"G": self.G, "D": self.D, "G_ema": self.G_ema})
        path = None
        if dist.is_main():
            path = save_checkpoint(
                self.run / "checkpoints",
                f"ckpt-{self.images_seen:09d}",
                {"G": self.G, "D": self.D, "G_ema": self.G_ema},
                self.state_dict(),
                to_dict(self.cfg),
                self.meta(),
                self.cfg.keep_checkpoints,
            )
            self.logger.event({"event": "checkpoint", "kimg": self.kimg, "path": str(path)})
        dist.barrier()
        return path

    # ----- growth -----
    def apply_growth(self, st: GrowthState) -> None:
        """Run the function-preserving operation of each growth event between two structures."""
        old_stage, old_level = self.structure if self.structure else (0, None)
        for name, detail in self._growth_messages(old_stage, old_level, st):
            dist.print0(f"growth event at kimg {self.kimg:.1f}: {name}: {detail}")
            self.logger.event({"event": "growth", "kind": name, "kimg": self.kimg, "detail": detail})
        if old_level is None and st.seg_level is not None and self.D.final.has_pair_head:
            self.D.final.start_pair_head()
        if old_level is not None and st.seg_level is not None:
            for level in range(old_level, st.seg_level):
                parents = parent_index(self.levels[level], self.levels[level + 1])
                for G in (self.G, self.G_ema):
                    split_generator_classes(G, level, level + 1, parents)
                split_discriminator_classes(self.D, level, level + 1, parents)
        self.structure = st.structure

    def _growth_messages(self, old_stage, old_level, st):
        if self.structure is None:
            h, w = self.cfg.model.stage_shape(st.stage)
            yield (
                "start",
                f"resolution {h}x{w}, "
                + ("images only" if st.seg_level is None else f"{self.levels[st.seg_level].num_classes} classes"),
            )
            return
        for s in range(old_stage + 1, st.stage + 1):
            h, w = self.cfg.model.stage_shape(s)
            yield "resolution", f"{h}x{w} fades in"
        if old_level is None and st.seg_level is not None:
            lvl = self.levels[st.seg_level]
            yield "segmentation", f"{lvl.num_classes} mask channels added ({', '.join(lvl.names)})"
        elif old_level is not None and st.seg_level is not None and st.seg_level > old_level:
            lvl = self.levels[st.seg_level]
            yield (
                "class-split",
                f"{self.levels[old_level].num_classes} -> {lvl.num_classes} classes ({', '.join(lvl.names)})",
            )

    # ----- one iteration -----
    def photos_in(self, st: GrowthState, batch: int) -> int:
        """How many of a step's samples D judges as images alone (image head); the rest are pairs."""
        if st.seg_level is None:
            return batch
        if self.image_share == 0:
            return 0
        return min(max(round(batch * self.image_share), 1), batch - 1)

    def pair_flags(self, st: GrowthState, batch: int) -> torch.Tensor | None:
        """(batch,) bool, True for the samples D judges as pairs; None where D has one head."""
        if not self.D.final.has_pair_head:
            return None
        key = (batch, self.photos_in(st, batch))
        if key not in self._pair_flags:  # a handful of patterns per run: build each once, not twice a step
            self._pair_flags[key] = torch.from_numpy(~photo_positions(*key)).to(self.device)
        return self._pair_flags[key]

    def real_inputs(self, st: GrowthState, batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This step's real batch; the next step's starts reading in the background."""
        next_seen = self.images_seen + batch * self.world
        lookahead = None
        if next_seen < int(self.cfg.schedule.total_kimg * 1000):
            next_st = growth_at(next_seen / 1000, self.cfg.schedule, self.cfg.model.num_stages, len(self.levels))
            next_batch = self.cfg.optim.at_stage(self.cfg.optim.batch, next_st.stage)
            lookahead = (next_st, next_batch, self.photos_in(next_st, next_batch))
        return self.feeder.next(st, batch, lookahead, self.photos_in(st, batch))

    def latents(self, st: GrowthState, batch: int) -> dict:
        z = self.rand.randn(batch, self.cfg.model.z_dim)
        noise = []
        for s in range(st.stage + 1):
            h, w = self.cfg.model.stage_shape(s)
            noise += [self.rand.randn(batch, 1, h, w) for _ in range(2)]
        mix_z = mix_cut = None
        if self.cfg.model.style_mixing_prob > 0:
            # Each sample mixes with the probability at its own cut (1 .. layers in use - 1), drawn on
            # the device: no host decision, and one compiled graph serves every cut.
            layers = 2 * (st.stage + 1)
            mix_z = self.rand.randn(batch, self.cfg.model.z_dim)
            cut = 1 + (self.rand.rand(batch) * (layers - 1)).long().clamp_max(layers - 2)
            mixes = self.rand.rand(batch) < self.cfg.model.style_mixing_prob
            mix_cut = torch.where(mixes, cut, self.G.num_ws)
        return {"z": z, "noise": noise, "mix_z": mix_z, "mix_cut": mix_cut}

    def d_inputs(self, img, seg_probs, fake: bool, seg_level: int | None):
        if seg_probs is not None:
            seg_probs = mask_for_d(seg_probs, fake, self.cfg.masks.mode, self.cfg.masks.noise_std, self.rand)
        if self.cfg.augment.enabled:
            mirror = self.level_mirrors[seg_level] if seg_level is not None else None
            img, seg_probs = augment(img, seg_probs, self.ada.p, self.cfg.augment, self.rand, mirror)
        # Once ADA's p leaves 0, augment returns channel slices of one (image + mask) tensor; one dense
        # layout keeps D's input the same kind of tensor all run long (a compiled D would otherwise
        # recompile mid-phase on the new strides) and feeds its convolutions dense memory.
        layout = torch.channels_last if self.cfg.channels_last else torch.contiguous_format
        img = img.contiguous(memory_format=layout)
        seg_probs = None if seg_probs is None else seg_probs.contiguous(memory_format=layout)
        return img, seg_probs

    def mismatch_positions(self, st: GrowthState, batch: int, group: int) -> torch.Tensor | None:
        """Batch positions of the real pairs shown again as mismatched fakes: the first
        masks.mismatch_share of the pairs (`pair_flags`' positions), in whole minibatch-stddev groups
        so that no group mixes them with reals or fakes; None where there are too few pairs for one
        group. A handful of patterns per run, each built once on the host."""
        pair_head = self.D.final.has_pair_head
        key = (batch, self.photos_in(st, batch) if pair_head else 0, group)
        if key not in self._mismatch_positions:
            pairs = np.flatnonzero(~photo_positions(*key[:2]))
            count = round(len(pairs) * self.cfg.masks.mismatch_share / group)
            count = min(max(count, 1) * group, len(pairs) // group * group)
            self._mismatch_positions[key] = torch.from_numpy(pairs[:count]).to(self.device) if count else None
        return self._mismatch_positions[key]

    def mismatched_pairs(self, real_img, real_seg, st: GrowthState, group: int) -> MismatchedPairs | None:
        """D's extra fakes: real pairs at `mismatch_positions`, their masks corrupted as
        masks.mismatch says (training/mismatch.py), through the same noise and augmentation as real
        pairs; None when off or nothing to show."""
        share, mode = self.cfg.masks.mismatch_share, self.cfg.masks.mismatch
        if share <= 0 or real_seg is None or (mode == "swap" and real_seg.shape[1] < 3):
            return None
        pairs = self.mismatch_positions(st, real_img.shape[0], group)
        if pairs is None:
            return None
        k = real_seg.shape[1]
        if mode == "swap":
            seg, changed = swap_two_classes(
                real_seg[pairs].detach(), self.rand.rand(len(pairs), k - 1), self.rand.rand(len(pairs), k - 1)
            )
        else:
            seg, changed = masks_of_others(real_seg[pairs].detach())
        img, seg = self.d_inputs(real_img[pairs].detach(), seg, fake=False, seg_level=st.seg_level)
        return MismatchedPairs(img, seg, pairs, changed)

    def d_step(self, st: GrowthState, batch: int, d_args: dict, g_args: dict) -> tuple[dict, torch.Tensor]:
        """Discriminator: real vs fake in one D call, with lazy R1 every r1_interval steps (or WGAN-GP).
        Returns the statistics to log and the loss."""
        cfg = self.cfg
        logistic = cfg.optim.loss == "logistic"
        stats = {}
        real_img, real_seg = self.real_inputs(st, batch)
        lat = self.latents(st, batch)
        with torch.no_grad(), self.autocast:
            fake = self.G_for_d(**lat, **g_args)
        do_r1 = logistic and cfg.optim.r1_gamma > 0 and self.step % cfg.optim.r1_interval == 0
        real_list = [real_img] + ([real_seg] if real_seg is not None else [])
        if do_r1:
            real_list = [t.detach().requires_grad_(True) for t in real_list]
        fake_seg = fake.seg.float().softmax(1) if fake.seg is not None else None
        with self.autocast:
            real_seg_in = real_list[1] if len(real_list) > 1 else None
            r_img, r_seg = self.d_inputs(real_list[0], real_seg_in, fake=False, seg_level=st.seg_level)
            f_img, f_seg = self.d_inputs(fake.img.float(), fake_seg, fake=True, seg_level=st.seg_level)
            parts_img, parts_seg = [r_img, f_img], [r_seg, f_seg]
            flags = self.pair_flags(st, batch)
            mismatched = self.mismatched_pairs(real_img, real_seg, st, d_args["mbstd_group"])
            if mismatched is not None:
                parts_img.append(mismatched.img)
                parts_seg.append(mismatched.seg)
            if not logistic:  # WGAN-GP: random interpolates of real and fake, in the same D call
                eps = self.rand.rand(batch, 1, 1, 1)
                parts_img.append(torch.lerp(f_img.detach(), r_img.detach(), eps).requires_grad_(True))
                if r_seg is not None:
                    parts_seg.append(torch.lerp(f_seg.detach(), r_seg.detach(), eps).requires_grad_(True))
            # One D call per step: DDP reduces gradients of one forward per backward.
            seg_in = torch.cat(parts_seg) if r_seg is not None else None
            pair_in = None
            if flags is not None:
                pair_parts = [flags] * len(parts_img)
                if mismatched is not None:
                    pair_parts[2] = flags[mismatched.positions]
                pair_in = torch.cat(pair_parts)
            logits = self.D_ddp(torch.cat(parts_img), seg_in, **d_args, pair=pair_in).float()
        real_logits, fake_logits = logits[:batch], logits[batch : 2 * batch]
        loss_d = d_logistic(real_logits, fake_logits) if logistic else d_wgan(real_logits, fake_logits)
        if mismatched is not None:
            mismatch_logits = logits[2 * batch :]
            weight = mismatched.changed.float()  # fixed shapes (no host sync, no recompiles): weight, not drop
            mismatch_loss = (F.softplus(mismatch_logits) * weight).sum() / weight.sum().clamp_min(1)
            loss_d = loss_d + cfg.masks.mismatch_weight * mismatch_loss
            stats["mismatch_score"] = mismatch_logits.detach().mean()
        if do_r1:
            r1 = r1_penalty(real_logits, real_list)
            loss_d = loss_d + r1 * (cfg.optim.r1_gamma / 2 * cfg.optim.r1_interval)
            stats["r1"] = r1.detach()
        if not logistic:
            mixed = [parts_img[2]] + ([parts_seg[2]] if r_seg is not None else [])
            gp = gradient_penalty(logits[2 * batch :], mixed)
            loss_d = loss_d + cfg.optim.gp_weight * gp
            stats["gp"] = gp.detach()
        self.opt_D.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_D.step()
        self.ada.accumulate(real_logits)  # every real sample, both heads: they share the trunk that overfits
        stats.update(real_score=real_logits.detach().mean(), fake_score=fake_logits.detach().mean())
        return stats, loss_d

    def g_step(self, st: GrowthState, batch: int, d_args: dict, g_args: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Generator: fool D (D's weights frozen; its raw module avoids a second DDP reduction).
        Returns the loss and the styles used (for the tracked average w)."""
        lat = self.latents(st, batch)
        self.D.requires_grad_(False)
        with self.autocast:
            out = self.G_ddp(**lat, **g_args)
            seg_probs = out.seg.float().softmax(1) if out.seg is not None else None
            img, seg = self.d_inputs(out.img.float(), seg_probs, fake=True, seg_level=st.seg_level)
            gen_logits = self.D_for_g(img, seg, **d_args, pair=self.pair_flags(st, batch)).float()
        loss_g = g_nonsaturating(gen_logits) if self.cfg.optim.loss == "logistic" else g_wgan(gen_logits)
        self.opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_G.step()
        self.D.requires_grad_(True)
        return loss_g, out.ws

    def train_step(self) -> dict:
        cfg, st = self.cfg, self.growth()
        self.rand.start_step(self.step)  # this step's numbers: a function of the step, so resume is exact
        if st.structure != self.structure:
            self.apply_growth(st)
        batch = cfg.optim.at_stage(cfg.optim.batch, st.stage)
        lr = cfg.optim.at_stage(cfg.optim.lr, st.stage)
        for opt, opt_lr in ((self.opt_G, lr), (self.opt_D, lr * cfg.optim.d_lr_mul)):
            for group in opt.param_groups:
                group["lr"] = opt_lr
        # The minibatch-stddev group must divide the per-process batch, so that real and fake halves of
        # one D call never share a group and N processes group samples exactly as one process does.
        group = math.gcd(cfg.model.mbstd_group, batch)
        d_args = {
            "stage": st.stage,
            "alpha": st.alpha,
            "seg_level": st.seg_level,
            "seg_alpha": st.seg_alpha,
            "mbstd_group": group,
        }
        g_args = {"stage": st.stage, "alpha": st.alpha, "seg_level": st.seg_level}
        stats, loss_d = self.d_step(st, batch, d_args, g_args)
        global_batch = batch * self.world
        if self.images_seen >= self.d_only_until:
            loss_g, ws = self.g_step(st, batch, d_args, g_args)
            self.G.update_w_avg(dist.all_reduce_mean(ws[:, 0].detach().float().mean(0)))
            stats["loss_G"] = loss_g.detach()
            self.images_seen += global_batch
            beta = ema_beta(global_batch, self.images_seen, cfg.optim.ema_kimg, cfg.optim.ema_rampup)
            ema_update(self.G_ema, self.G, beta)
        else:
            self.images_seen += global_batch
        self.ada.maybe_adjust(self.step, global_batch, dist.all_reduce_sum)
        self.step += 1
        stats["loss_D"] = loss_d.detach()
        self.stats.add(stats)

    def read_stats(self, reset: bool = True) -> dict[str, float]:
        """Means of the step statistics since the last reset, read from the device at once (a step
        itself never waits for the host); a non-finite loss among them stops the run. Read at every
        log line (`log_every` steps) and before every checkpoint, so no checkpoint holds a diverged run."""
        means = self.stats.means()
        bad = {k: v for k, v in means.items() if k.startswith("loss_") and not math.isfinite(v)}
        if bad:
            raise TrainingError(
                f"non-finite loss in steps {self.stats.first_step + 1}-{self.step} (kimg {self.kimg:.2f}): "
                + ", ".join(f"{k[5:]} {v}" for k, v in bad.items())
                + f"; stopped without saving, the last good checkpoint is in {self.run / 'checkpoints'}"
            )
        if reset:
            self.stats.reset(self.step)
        return means

    # ----- outputs -----
    @torch.no_grad()
    def snapshot(self) -> Path | None:
        """Sample grid from fixed seeds with G_ema: image | coloured mask | overlay."""
        if not dist.is_main():
            return None
        st = self.growth()
        seeds = list(range(self.cfg.grid_seeds))
        out = synthesize(self.G_ema, seeds, st.stage, st.alpha, st.seg_level, device=self.device)
        images = to_uint8_images(out.img)
        zoom = self.cfg.model.resolution[0] // images.shape[1]
        if out.seg is not None:
            level = self.levels[st.seg_level]
            masks = to_class_ids(out.seg)
            tiles = [upscale(triplet(images[i], masks[i], level.palette), zoom) for i in range(len(seeds))]
            picture = with_legend(upscale(grid(tiles, cols=4), 2), level.names, level.palette)
        else:
            tiles = [upscale(images[i], zoom) for i in range(len(seeds))]
            picture = upscale(grid(tiles, cols=8), 2)
        path = self.run / "samples" / f"grid-{self.images_seen // 1000:06d}kimg.png"
        path.parent.mkdir(exist_ok=True)
        save_png(picture, path)
        return path

    @torch.no_grad()
    def in_training_metrics(self) -> dict | None:
        """Cheap evaluation at a snapshot: agreement of generated masks with the reference segmenter's
        predictions, and Fréchet distance in its features, on `eval_samples` samples. Only at the final
        resolution and class level, where the segmenter's classes and resolution match."""
        st, cfg = self.growth(), self.cfg
        final = st.stage == cfg.model.num_stages - 1 and st.seg_level == len(self.levels) - 1
        if not (cfg.eval_segmenter and dist.is_main() and final and self.data_factor == 1):
            return None
        from styleseg.metrics.distribution import frechet_distance
        from styleseg.metrics.segmentation import confusion_matrix, miou_over
        from styleseg.metrics.segmenter import embed, load_segmenter, predict

        num_classes = self.levels[-1].num_classes
        if self._eval_seg is None:
            self._eval_seg, _ = load_segmenter(Path(cfg.eval_segmenter), self.device)
            real, _ = self.data.load_batch(self.data.indices("train")[: max(cfg.eval_samples, 16)])
            self._eval_real = embed(self._eval_seg, real, self.device)
            # as `evaluate` does: the mean is over the classes real masks show, one never drawn counting 0
            labeled = self.data.indices("train", labeled_only=True)
            shown = class_presence(self.data, labeled, self.data.class_map.num_classes).any(0)
            self._eval_classes = np.zeros(num_classes, bool)
            self._eval_classes[np.asarray(self.levels[-1].fine_to_group)[shown]] = True
        seeds = list(range(10_000, 10_000 + cfg.eval_samples))
        out = synthesize(self.G_ema, seeds, st.stage, st.alpha, st.seg_level, device=self.device)
        images = torch.from_numpy(to_uint8_images(out.img)).permute(0, 3, 1, 2)
        cm = confusion_matrix(to_class_ids(out.seg), predict(self._eval_seg, images, self.device), num_classes)
        agreement = float(miou_over(cm, self._eval_classes))
        fd = frechet_distance(self._eval_real, embed(self._eval_seg, images, self.device))
        return {"eval_agreement_miou": round(agreement, 5), "eval_fd_segmenter": round(fd, 5)}

    def snapshot_and_metrics(self) -> None:
        self.snapshot()
        metrics = self.in_training_metrics()
        if metrics:
            self.logger.scalars({"kimg": round(self.kimg, 3), **metrics}, self.images_seen)

    def _install_signal_handlers(self) -> None:
        def handler(signum, frame):
            self.stop_signal = signum

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, handler)

    def train(self, progress: bool = True) -> int:
        """Train to total_kimg; returns the exit code (128 + signal when stopped by one)."""
        cfg = self.cfg
        total = int(cfg.schedule.total_kimg * 1000)
        self._install_signal_handlers()
        bar = tqdm(
            total=total,
            initial=self.images_seen,
            unit="img",
            disable=not (progress and dist.is_main()),
            dynamic_ncols=True,
            smoothing=0.05,
        )
        t_start, seen_start = time.perf_counter(), self.images_seen
        while self.images_seen < total:
            if self.images_seen >= self.next_snapshot:
                self.snapshot_and_metrics()
                self.next_snapshot += int(cfg.snapshot_kimg * 1000)
            if self.images_seen >= self.next_checkpoint:
                due = self.images_seen > 0
                while self.next_checkpoint <= self.images_seen:  # advance first: the saved state is "done"
                    self.next_checkpoint += int(cfg.checkpoint_kimg * 1000)
                if due:
                    self.save()
            self.train_step()
            bar.update(self.images_seen - bar.n)
            if self.step % cfg.log_every == 0 or self.images_seen >= total:
                stats = self.read_stats()  # means over the steps since the last line
                elapsed = time.perf_counter() - t_start
                wait, batches = self.feeder.take_wait()
                st = self.growth()
                h, w = cfg.model.stage_shape(st.stage)
                record = {
                    "kimg": round(self.kimg, 3),
                    "step": self.step,
                    "resolution": h,
                    "res_w": w,
                    "stage": st.stage,
                    "alpha": round(st.alpha, 4),
                    "classes": self.levels[st.seg_level].num_classes if st.seg_level is not None else 0,
                    "seg_alpha": round(st.seg_alpha, 4),
                    "augment_p": round(self.ada.p, 4),
                    "ada_rt": round(self.ada.last_rt, 4),
                    "images_per_s": round((self.images_seen - seen_start) / max(elapsed, 1e-9), 2),
                    # training-thread time blocked on the data reader, per step since the last log line
                    "data_wait_ms": round(1000 * wait / max(batches, 1), 3),
                    **{k: round(v, 5) for k, v in stats.items()},
                }
                if cfg.compile:
                    record["compiled_graphs"] = compiled_graphs()
                self.logger.scalars(record, self.images_seen)
                bar.set_postfix(
                    res=f"{h}x{w}",
                    a=f"{st.alpha:.2f}",
                    K=record["classes"],
                    p=f"{self.ada.p:.2f}",
                    D=f"{stats['loss_D']:.2f}",
                    G=f"{stats['loss_G']:.2f}" if "loss_G" in stats else "-",  # "-": D alone (warm start)
                )
            if self.stop_signal is not None:
                bar.close()
                path = self.save()
                self.feeder.close()
                dist.print0(f"stopped by signal {self.stop_signal} at kimg {self.kimg:.2f}; checkpoint: {path}")
                return 128 + self.stop_signal
        bar.close()
        self.snapshot_and_metrics()
        path = self.save()
        rate = (self.images_seen - seen_start) / max(time.perf_counter() - t_start, 1e-9)
        dist.print0(f"done: {self.kimg:.1f} kimg, {rate:.1f} images/s this session; checkpoint: {path}")
        self.feeder.close()
        self.logger.close()
        return 0


def describe_schedule(cfg: TrainConfig, levels) -> str:
    lines = [
        f"resolution {cfg.model.resolution[0]}x{cfg.model.resolution[1]} in {cfg.model.num_stages} stages: "
        + ", ".join(f"{h}x{w}" for h, w in (cfg.model.stage_shape(s) for s in range(cfg.model.num_stages)))
    ]
    lines.append(f"total {cfg.schedule.total_kimg:g} kimg; growth events:")
    for e in schedule_events(cfg.schedule, cfg.model, levels):
        lines.append(f"  kimg {e.kimg:8.1f}  {e.kind:<13} {e.detail}")
    stages = [
        f"{cfg.model.stage_shape(s)[0]}x{cfg.model.stage_shape(s)[1]}: batch "
        f"{cfg.optim.at_stage(cfg.optim.batch, s)}, lr {cfg.optim.at_stage(cfg.optim.lr, s)}"
        for s in range(cfg.model.num_stages)
    ]
    lines.append("per stage: " + "; ".join(stages))
    return "\n".join(lines)
