"""Every term of the GAN objective, one phase at a time (as stylegan2-ada's `StyleGAN2Loss` does):
`d_phase` computes D's loss on reals, fakes and (with a matching-aware D) mismatched real pairs, with
lazy R1 or WGAN-GP, and back-propagates it; `g_phase` does the same for G. The loop only decides
which phase runs when and steps the optimisers.

What D sees is assembled here too: masks as `mask_for_d` shows them, augmentation, and which
samples D's image head judges as photos and which its pair head judges as (image, mask) pairs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from styleseg.config import TrainConfig
from styleseg.models.growth import GrowthState
from styleseg.training.augment import AdaController, augment
from styleseg.training.feeder import photo_positions
from styleseg.training.losses import d_logistic, d_wgan, g_nonsaturating, g_wgan, gradient_penalty, r1_penalty
from styleseg.training.mismatch import masks_of_others, swap_two_classes
from styleseg.training.networks import TrainingNetworks
from styleseg.training.randomness import CounterRandom


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
    """Real images with corrupted masks, D's extra fakes (GanLoss.mismatched_pairs)."""

    img: torch.Tensor
    seg: torch.Tensor
    positions: torch.Tensor
    """their positions in the step's real batch"""
    changed: torch.Tensor
    """(n,) bool, False where there was nothing to corrupt (fewer than two foreground classes to
    swap): such a sample counts for nothing in D's loss"""


class StepArgs(NamedTuple):
    """The growth state as D and G take it, and the step's per-process batch."""

    batch: int
    d_args: dict
    g_args: dict


def step_args(cfg: TrainConfig, st: GrowthState) -> StepArgs:
    batch = cfg.optim.at_stage(cfg.optim.batch, st.stage)
    # The minibatch-stddev group must divide the per-process batch, so that real and fake halves of
    # one D call never share a group and N processes group samples exactly as one process does.
    group = math.gcd(cfg.model.mbstd_group, batch)
    d_args = {"stage": st.stage, "alpha": st.alpha, "seg_level": st.seg_level, "seg_alpha": st.seg_alpha}
    d_args["mbstd_group"] = group
    g_args = {"stage": st.stage, "alpha": st.alpha, "seg_level": st.seg_level}
    return StepArgs(batch, d_args, g_args)


class GanLoss:
    def __init__(
        self,
        cfg: TrainConfig,
        nets: TrainingNetworks,
        ada: AdaController,
        rand: CounterRandom,
        level_mirrors: list[torch.Tensor],
        image_share: float,
        autocast,
        device: torch.device,
    ):
        self.cfg, self.nets, self.ada, self.rand = cfg, nets, ada, rand
        self.level_mirrors, self.image_share, self.autocast, self.device = level_mirrors, image_share, autocast, device
        self.logistic = cfg.optim.loss == "logistic"
        self._pair_flags: dict[tuple[int, int], torch.Tensor] = {}
        self._mismatch_positions: dict[tuple[int, int, int], torch.Tensor | None] = {}

    # ----- who judges what -----
    def photos_in(self, st: GrowthState, batch: int) -> int:
        """How many of a step's samples D judges as images alone (image head); the rest are pairs."""
        if st.seg_level is None:
            return batch
        if self.image_share == 0:
            return 0
        return min(max(round(batch * self.image_share), 1), batch - 1)

    def pair_flags(self, st: GrowthState, batch: int) -> torch.Tensor | None:
        """(batch,) bool, True for the samples D judges as pairs; None where D has one head."""
        if not self.nets.D.final.has_pair_head:
            return None
        key = (batch, self.photos_in(st, batch))
        if key not in self._pair_flags:  # a handful of patterns per run: build each once, not twice a step
            self._pair_flags[key] = torch.from_numpy(~photo_positions(*key)).to(self.device)
        return self._pair_flags[key]

    # ----- inputs -----
    def latents(self, st: GrowthState, batch: int) -> dict:
        """z, noise maps and style mixing for `batch` fakes, from this step's counter-based numbers."""
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
            mix_cut = torch.where(mixes, cut, self.nets.G.num_ws)
        return {"z": z, "noise": noise, "mix_z": mix_z, "mix_cut": mix_cut}

    def d_inputs(self, img, seg_probs, fake: bool, seg_level: int | None, second_derivative: bool = False):
        """What D reads: the mask as `mask_for_d` shows it, then image and mask augmented together
        (`second_derivative`: R1 will differentiate D's gradient w.r.t. these inputs again)."""
        if seg_probs is not None:
            seg_probs = mask_for_d(seg_probs, fake, self.cfg.masks.mode, self.cfg.masks.noise_std, self.rand)
        if self.cfg.augment.enabled:
            mirror = self.level_mirrors[seg_level] if seg_level is not None else None
            img, seg_probs = augment(
                img, seg_probs, self.ada.p, self.cfg.augment, self.rand, mirror, second_derivative=second_derivative
            )
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
        pair_head = self.nets.D.final.has_pair_head
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

    # ----- the two phases -----
    def d_phase(
        self, st: GrowthState, args: StepArgs, real_img: torch.Tensor, real_seg: torch.Tensor | None, step: int
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """D's loss on reals and fakes in one D call (DDP reduces one forward per backward), with lazy R1
        every r1_interval steps or WGAN-GP, back-propagated. Returns the statistics to log and the loss."""
        cfg, nets, batch = self.cfg, self.nets, args.batch
        stats = {}
        lat = self.latents(st, batch)
        with torch.no_grad(), self.autocast:
            fake = nets.G_for_d(**lat, **args.g_args)
        do_r1 = self.logistic and cfg.optim.r1_gamma > 0 and step % cfg.optim.r1_interval == 0
        real_list = [real_img] + ([real_seg] if real_seg is not None else [])
        if do_r1:
            real_list = [t.detach().requires_grad_(True) for t in real_list]
        fake_seg = fake.seg.float().softmax(1) if fake.seg is not None else None
        with self.autocast:
            real_seg_in = real_list[1] if len(real_list) > 1 else None
            r_img, r_seg = self.d_inputs(
                real_list[0], real_seg_in, fake=False, seg_level=st.seg_level, second_derivative=do_r1
            )
            f_img, f_seg = self.d_inputs(fake.img.float(), fake_seg, fake=True, seg_level=st.seg_level)
            parts_img, parts_seg = [r_img, f_img], [r_seg, f_seg]
            flags = self.pair_flags(st, batch)
            mismatched = self.mismatched_pairs(real_img, real_seg, st, args.d_args["mbstd_group"])
            if mismatched is not None:
                parts_img.append(mismatched.img)
                parts_seg.append(mismatched.seg)
            if not self.logistic:  # WGAN-GP: random interpolates of real and fake, in the same D call
                eps = self.rand.rand(batch, 1, 1, 1)
                parts_img.append(torch.lerp(f_img.detach(), r_img.detach(), eps).requires_grad_(True))
                if r_seg is not None:
                    parts_seg.append(torch.lerp(f_seg.detach(), r_seg.detach(), eps).requires_grad_(True))
            seg_in = torch.cat(parts_seg) if r_seg is not None else None
            pair_in = None
            if flags is not None:
                pair_parts = [flags] * len(parts_img)
                if mismatched is not None:
                    pair_parts[2] = flags[mismatched.positions]
                pair_in = torch.cat(pair_parts)
            logits = nets.D_ddp(torch.cat(parts_img), seg_in, **args.d_args, pair=pair_in).float()
        real_logits, fake_logits = logits[:batch], logits[batch : 2 * batch]
        loss_d = d_logistic(real_logits, fake_logits) if self.logistic else d_wgan(real_logits, fake_logits)
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
        if not self.logistic:
            mixed = [parts_img[2]] + ([parts_seg[2]] if r_seg is not None else [])
            gp = gradient_penalty(logits[2 * batch :], mixed)
            loss_d = loss_d + cfg.optim.gp_weight * gp
            stats["gp"] = gp.detach()
        loss_d.backward()
        self.ada.accumulate(real_logits)  # every real sample, both heads: they share the trunk that overfits
        stats.update(real_score=real_logits.detach().mean(), fake_score=fake_logits.detach().mean())
        return stats, loss_d

    def g_phase(self, st: GrowthState, args: StepArgs) -> tuple[torch.Tensor, torch.Tensor]:
        """G's loss for fooling D (D's weights frozen; its raw module avoids a second DDP reduction),
        back-propagated. Returns the loss and the styles used (for the tracked average w)."""
        nets = self.nets
        lat = self.latents(st, args.batch)
        nets.D.requires_grad_(False)
        with self.autocast:
            out = nets.G_ddp(**lat, **args.g_args)
            seg_probs = out.seg.float().softmax(1) if out.seg is not None else None
            img, seg = self.d_inputs(out.img.float(), seg_probs, fake=True, seg_level=st.seg_level)
            gen_logits = nets.D_for_g(img, seg, **args.d_args, pair=self.pair_flags(st, args.batch)).float()
        loss_g = g_nonsaturating(gen_logits) if self.logistic else g_wgan(gen_logits)
        loss_g.backward()
        nets.D.requires_grad_(True)
        return loss_g, out.ws
