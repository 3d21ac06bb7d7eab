"""A stream of fresh (image, mask) pairs from a trained generator, drawn on the training device at
every step of a segmenter's training: no files, no pair seen twice, and the generator's own class
probabilities as soft targets.

Pairs are a function of the step, so a run is reproducible and resumable: pair i of step t uses
generator seed `seed_base(t) + i`, with seed_base(t) = STREAM_SEEDS + seed * 2**48 + t * 2**32 (its
latent from a 32-bit hash of it all, `sampling.torch_seed`: never the same within a step, and
across steps as rarely as random 32-bit numbers meet), and
a truncation ψ drawn uniformly from `psi_range` by a hash of its seed; any pair can be drawn again
alone with `styleseg generate --seed S --truncation ψ`. With `style_mixing`, a share of the pairs
(again by the seed's hash) take their styles from a layer on from a second latent, seed + 2**62.
With class targeting, a share of the slots (chosen by their position in the run, so exactly that
share) must show one of the chosen classes (round robin); slot i's candidates are seeds
seed_base(t) + (i + 1) * 2**24 onwards, screened in w-space and checked on the mask (`targeting.py`).
With style mixing as well, the screen sees a candidate's first latent only; its bank is drawn through
this stream, mixed as the pairs are, so it ranks by what a mixed pair shows (a weaker screen, never
a wrong label: the mask still decides).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, replace

import numpy as np
import torch

from styleseg.data.pixels import quantize
from styleseg.errors import StylesegError
from styleseg.generate import level_class_map
from styleseg.metrics.segmenter import autocast_for
from styleseg.metrics.segmenter_train import SyntheticBatch
from styleseg.models.load import LoadedGenerator, generator_digest
from styleseg.options import StreamOptions
from styleseg.sampling import seed_latents, seed_z
from styleseg.seedhash import seed_hash
from styleseg.targeting import BANK_SEEDS, ClassTargeter, class_ids_for, shows, targeted_slot

STREAM_SEEDS = 1 << 40
"""First seed of streamed pairs: above the seeds `generate` and `evaluate` use by default."""


MIXING_SALT = 0x5EED_5EED
"""Mixed into a seed's hash for its style-mixing draws, so they are independent of its ψ."""


def seed_uniform(seeds: list[int], salt: int = 0) -> list[float]:
    """A number in [0, 1) per seed from a hash of the seed (and salt) alone."""
    return [seed_hash(s, salt) / 2**32 for s in seeds]


def psi_for_seeds(seeds: list[int], low: float, high: float) -> torch.Tensor:
    """(n,) ψ of each seed, uniform in [low, high] from a hash of the seed alone."""
    return low + (high - low) * torch.tensor(seed_uniform(seeds), dtype=torch.float32)


def mixing_for_seeds(seeds: list[int], share: float, layers: int) -> tuple[list[int], list[int]]:
    """(second seeds, cuts) of style mixing among the `layers` style layers the synthesis uses: a seed
    is mixed with probability `share` (by its hash), at a cut uniform in 1 .. layers - 1 (from a second
    hash), with the latent of seed + 2**62; an unmixed seed's cut is `layers` (no layer switches)."""
    u, v = seed_uniform(seeds, MIXING_SALT), seed_uniform(seeds, MIXING_SALT + 1)
    cuts = [1 + int(b * (layers - 1)) if a < share else layers for a, b in zip(u, v)]
    return [s + (1 << 62) for s in seeds], cuts


class PairStream:
    """`draw(step, n)`: n fresh pairs for training step `step` (a `SyntheticSource` for
    `segmenter_train.train_segmenter`)."""

    def __init__(self, model: LoadedGenerator, opts: StreamOptions, device: torch.device, dtype: str = "auto"):
        self.model, self.opts, self.device = model, opts, device
        self.G = model.G.to(device).eval().requires_grad_(False)
        self.class_map = level_class_map(model)
        self.autocast = autocast_for(dtype, device)
        self.digest = generator_digest(model)
        self.targeter: ClassTargeter | None = None
        self.targeted_share = 0.0
        self.pairs = self.targeted = self.syntheses = 0
        if opts.classes and opts.class_rate > 0:
            ids = class_ids_for(opts.classes, self.class_map.classes)
            self.targeter = ClassTargeter(self.G, self.class_ids, self.psi_of, ids, opts.classes).fit()
            self.targeted_share = self.targeter.targeted_share(opts.class_rate)

    def reseeded(self, seed: int) -> PairStream:
        """The same stream (generator, options, fitted targeter) drawing from another block of seeds:
        each segmenter seed of an evaluation gets its own pairs."""
        other = copy.copy(self)
        other.opts = replace(self.opts, seed=seed)
        other.pairs = other.targeted = other.syntheses = 0
        return other

    def psi_of(self, seeds: list[int]) -> torch.Tensor:
        return psi_for_seeds(seeds, *self.opts.psi_range)

    def seed_base(self, step: int) -> int:
        return STREAM_SEEDS + (self.opts.seed << 48) + (step << 32)

    def _synthesize(self, seeds: list[int]):
        st = self.model.growth
        z, noise = seed_latents(self.G, seeds, st.stage, self.device)
        mix_z = cut = None
        if self.opts.style_mixing > 0:
            layers = min(self.G.num_ws, 2 * (st.stage + 1))  # two style layers per stage grown so far
            second, cuts = mixing_for_seeds(seeds, self.opts.style_mixing, layers)
            mix_z, cut = seed_z(self.G, second, self.device), torch.tensor(cuts, device=self.device)
        with torch.inference_mode():
            ws = self.G.styles(z, self.psi_of(seeds).to(self.device), mix_z, cut)  # the mapping in fp32: cheap
            with self.autocast:
                img, seg = self.G.synthesis(ws, st.stage, st.alpha, st.seg_level, noise)
            img = img.float()  # once: under bf16 autocast each .float() is a copy
            seg = self.relabel(img, seg.float(), ws, noise).float()
        return img, seg

    def relabel(self, img: torch.Tensor, seg: torch.Tensor, ws: torch.Tensor, noise) -> torch.Tensor:
        """(n, K, H, W) the logits of the masks the pairs teach with: the generator's own mask head.
        A stream that reads its pairs another way (a teacher segmenter, a head on the synthesis
        features: scripts/relabelled-stream.py) overrides this and adds what it is to `describe`."""
        return seg

    def class_ids(self, seeds: list[int]) -> torch.Tensor:
        """(n, H, W) the class ids of those seeds' masks (for the targeter)."""
        return self._synthesize(seeds)[1].argmax(1)

    def slot_plan(self, step: int, n: int) -> list[int | None]:
        """Per slot of the step: the index of the class it must show, or None (untargeted). A share
        `targeted_share` of all slots of the run are targeted, spread evenly, classes in turn."""
        return [targeted_slot(step * n + i, self.targeted_share, len(self.opts.classes)) for i in range(n)]

    def draw(self, step: int, n: int) -> SyntheticBatch:
        base = self.seed_base(step)
        seeds = [base + i for i in range(n)]
        plan = self.slot_plan(step, n) if self.targeter is not None else [None] * n
        targeted = [i for i, c in enumerate(plan) if c is not None]
        if targeted:
            found = self.targeter.draw([plan[i] for i in targeted], [base + ((i + 1) << 24) for i in targeted])
            for i, seed in zip(targeted, found.seeds):
                seeds[i] = seed
            self.syntheses += found.syntheses
        img, seg = self._synthesize(seeds)
        self.pairs += n
        self.targeted += len(targeted)
        self.syntheses += n
        # quantised as an 8-bit PNG of the pair would be, so streamed and written pairs teach alike
        images = quantize(img)
        return SyntheticBatch(images, seg.softmax(1).clone(), seeds)

    def describe(self) -> dict:
        opts = asdict(self.opts)
        if not opts["style_mixing"]:  # added later: streams without it keep their cache keys
            del opts["style_mixing"]
        return {
            "generator": str(self.model.path),
            "generator_sha256_16": self.digest,
            "kimg": self.model.kimg,
            **opts,
            "seed_rule": "pair i of step t: seed 2**40 + seed * 2**48 + t * 2**32 + i; psi uniform in psi_range "
            "from a hash of the seed",
            # before this rule, torch kept the low 32 bits of these seeds: every step redrew the same latents
            "latent_rule": "z and noise from torch's generator seeded by sampling.torch_seed(seed)",
            **(
                {"mixing_rule": "probability style_mixing, from a layer in 1..(style layers used)-1, seed + 2**62"}
                if self.opts.style_mixing
                else {}
            ),
            **({"targeting": self.targeter.describe(), "targeted_share": self.targeted_share} if self.targeter else {}),
        }

    def statistics(self) -> dict:
        """What the stream has drawn so far in this process (pairs, targeted pairs, syntheses)."""
        return {"pairs": self.pairs, "targeted": self.targeted, "syntheses": self.syntheses}


def undrawn_classes(stream: PairStream, pairs: int = 512, batch: int = 64) -> list[int]:
    """Classes (background aside) of which not one pixel appears in `pairs` of the stream's masks
    (the targeter's bank seeds, at the stream's truncation range): classes its pairs could only ever
    teach as absent."""
    classes = range(1, len(stream.class_map.classes))
    seen = torch.zeros(len(classes), dtype=torch.bool)
    for start in range(0, pairs, batch):
        ids = stream.class_ids(list(range(BANK_SEEDS + start, BANK_SEEDS + min(start + batch, pairs))))
        seen |= shows(ids.cpu(), classes, min_fraction=0).any(0)  # a single pixel counts
    return [c for c, drawn in zip(classes, seen.tolist()) if not drawn]


def blind_class_ids(spec: str, stream: PairStream | None, log=print) -> list[int]:
    """Class ids a `--synthetic-blind` spec names: 'none', the stream's undrawn classes ('auto'), or
    class names separated by commas; any but 'none' says which classes that is."""
    if spec == "none":
        return []
    if stream is None:
        raise StylesegError(f"--synthetic-blind {spec} needs a pair stream (a generator)")
    names = list(stream.class_map.classes)
    ids = undrawn_classes(stream) if spec == "auto" else class_ids_for([n for n in spec.split(",") if n], names)
    shown = ", ".join(names[c] for c in ids) or "none"
    log(f"classes the streamed pairs say nothing about (--synthetic-blind {spec}): {shown}")
    return ids


def rate_check(stream: PairStream, steps: int, n: int) -> dict:
    """Draw `steps` x `n` pairs and measure the share that shows each targeted class and any of them."""
    hits = []
    for step in range(steps):
        batch = stream.draw(step, n)
        ids = stream.targeter.classes if stream.targeter else []
        hits.append(shows(batch.probs.argmax(1), ids).numpy())
    hits = np.concatenate(hits)
    return {
        "any": float(hits.any(1).mean()),
        **{name: float(hits[:, k].mean()) for k, name in enumerate(stream.opts.classes)},
    }
