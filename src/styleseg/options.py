"""Typed options of the commands that are not training runs (generation, pair streams, segmenters,
evaluation): plain dataclasses with a docstring per field, importable without torch, so that the
command line builds its parser in milliseconds and takes its defaults from here. The training run's
own config is `config.py`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from styleseg.errors import StylesegError

FIT_MODES = ("pad-edge", "crop")
"""How `prepare` fits a photo of another aspect (data/geometry.py)."""
SYNTHETIC_TARGETS = ("soft", "hard", "weighted", "confident")
# segmenter options that change nothing without a pair stream: left out of cache keys then, so
# caches made before they existed stay valid
STREAM_ONLY = (
    "synthetic_share",
    "synthetic_on_top",
    "synthetic_target",
    "min_confidence",
    "synthetic_blind",
    "class_mix",
)


@dataclass
class SegmenterConfig:
    num_classes: int
    width: int = 24
    """Channels of the first level; doubled at each of three down-sampling steps."""
    max_steps: int = 3000
    """Upper bound on optimiser steps; training usually stops earlier, on validation."""
    eval_every: int = 100
    """Score the selection half of validation every N steps."""
    patience: int = 4
    """Stop after this many scores without a new best (the best weights are kept); 0: never stop
    early, run to max_steps (the cosine schedule's learning rate then reaches zero) and keep the best."""
    batch: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    dice_weight: float = 0.0
    """Weight of a soft Dice term beside cross-entropy: pixel-frequency-blind, so rare classes (a coat
    covering 0.1% of pixels) count as much as the background, as mIoU counts them."""
    weight_ema: float = 0.0
    """Score and keep an exponential moving average of the weights and batch-norm statistics with this
    decay per step (e.g. 0.99: a horizon of ~100 steps) instead of the raw weights, which swing from
    one score to the next; 0: the raw weights."""
    repeat_threshold: float = 0.0
    """Rare-class oversampling (LVIS's repeat factor sampling, Gupta et al. 2019): an image is drawn
    max(1, sqrt(t / f)) times as often, f the share of training images showing its rarest class and t
    this threshold; 0 draws every image equally."""
    augment: bool = True
    """Flips, scale/translation and colour jitter (mask-consistent)."""
    synthetic_share: float = 0.5
    """With a pair stream (a generator) beside real labels: the share of each batch drawn fresh from
    the generator. Without real labels every sample is synthetic."""
    synthetic_on_top: bool = False
    """With a pair stream beside real labels: add the generated pairs to a full batch of real samples
    (`batch` real, and share / (1 - share) x `batch` generated, so they are still that share of the
    larger batch) instead of taking them from it: the real samples per step stay those of training
    without the stream, at the cost of a larger step."""
    synthetic_target: str = "soft"
    """How a generated pair's mask teaches: 'soft' (the generator's class probabilities as the
    target), 'hard' (their argmax), 'weighted' (argmax, each pixel weighted by its top probability)
    or 'confident' (argmax, pixels below min_confidence ignored)."""
    min_confidence: float = 0.5
    """'confident' targets: pixels whose top class probability is below this carry no loss."""
    synthetic_blind: tuple[int, ...] = ()
    """Class ids the generated pairs say nothing about: classes the generator does not draw. Its
    masks never show them, so as targets they would teach "never this class" on every generated
    pixel; instead their logits are left out of the generated rows' softmax and Dice term (no
    gradient either way), and a generated pixel counts as much as its target is not one of them.
    Real labels still teach them."""
    class_mix: float = 0.0
    """Beside real labels: the share of generated pairs that get half of the classes (background
    aside) of a real sample of the same batch pasted over them, image and target alike, the pasted
    pixels' target their real label (ClassMix, Olsson et al. 2021, across the two domains as in
    DACS, Tranheden et al. 2021): generated people with real garments and skin in them, so that what
    the pairs teach meets real pixels in one image. 0: the pairs as drawn."""
    dtype: str = "auto"
    """fp32 | bf16 | auto (bf16 on GPUs and on CPUs with bf16 instructions)."""
    seed: int = 0

    def out_of_patience(self, stale: int) -> bool:
        """Whether `stale` scores without a new best end training (never with patience 0)."""
        return self.patience > 0 and stale >= self.patience

    def __post_init__(self) -> None:
        self.synthetic_blind = tuple(sorted(int(c) for c in self.synthetic_blind))  # JSON gives a list
        if any(not 0 < c < self.num_classes for c in self.synthetic_blind):
            raise StylesegError(
                f"synthetic_blind class ids must be in 1..{self.num_classes - 1} (not background), not "
                f"{list(self.synthetic_blind)}"
            )
        if not 0 <= self.synthetic_share <= 1:
            raise StylesegError(f"synthetic share must be in [0, 1], not {self.synthetic_share}")
        if self.patience < 0:
            raise StylesegError(f"patience must be 0 (never stop early) or more, not {self.patience}")
        if self.synthetic_on_top and self.synthetic_share >= 1:
            raise StylesegError("synthetic pairs on top of the real batch need a share below 1")
        if self.synthetic_target not in SYNTHETIC_TARGETS:
            raise StylesegError(f"synthetic targets must be one of {SYNTHETIC_TARGETS}, not '{self.synthetic_target}'")
        if not 0 <= self.min_confidence <= 1:
            raise StylesegError(f"min confidence must be in [0, 1], not {self.min_confidence}")
        if not 0 <= self.class_mix <= 1:
            raise StylesegError(f"class mix must be a share in [0, 1], not {self.class_mix}")
        if self.class_mix and self.synthetic_share >= 1:
            raise StylesegError(
                "class mix pastes real samples into generated pairs: it needs real labels (a share below 1)"
            )

    def synthetic_only(self) -> SegmenterConfig:
        """This recipe for training on generated pairs alone: every sample of a batch generated, so
        one such segmenter serves (and is cached for) every share a mixed regime uses."""
        return replace(self, synthetic_share=1.0, synthetic_on_top=False, class_mix=0.0)


@dataclass
class StreamOptions:
    psi_range: tuple[float, float] = (0.7, 1.0)
    """Truncation ψ of each pair, drawn uniformly from this range (low, high) per pair."""
    classes: list[str] = field(default_factory=list)
    """Classes to ask the generator for (class-targeted sampling); empty: none."""
    class_rate: float = 0.0
    """Share of pairs that should show at least one of `classes` (the targeted pairs make up what
    the generator's own rate leaves)."""
    seed: int = 0
    """Which block of seeds the stream draws from."""
    style_mixing: float = 0.0
    """Share of pairs whose styles switch to a second latent's from a layer drawn per pair (StyleGAN's
    mixing regularisation, at sampling time): more combinations of pose, shape and appearance."""

    def __post_init__(self) -> None:
        self.psi_range = tuple(float(v) for v in self.psi_range)
        low, high = self.psi_range
        if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high <= 2):
            raise StylesegError(f"truncation range must be 0 <= low <= high <= 2, not {list(self.psi_range)}")
        if not 0 <= self.class_rate <= 1:
            raise StylesegError(f"class rate must be in [0, 1], not {self.class_rate}")
        if not 0 <= self.style_mixing <= 1:
            raise StylesegError(f"style mixing must be a share in [0, 1], not {self.style_mixing}")
        if self.class_rate > 0 and not self.classes:
            raise StylesegError("a class rate needs classes to target (--classes)")


@dataclass
class GenerateOptions:
    n: int
    """Number of kept samples wanted."""
    seed: int = 0
    """First seed; sample k uses seed + k."""
    psi: float = 1.0
    """Truncation ψ."""
    batch: int = 32
    overlays: bool = False
    min_person_fraction: float = 0.0
    """Drop samples whose non-background area is below this fraction (0 keeps all)."""
    require_person: bool = False
    """Drop samples whose mask has no person pixel at all."""
    min_confidence: float = 0.0
    """Drop samples whose mean per-pixel class confidence (the generator's top softmax probability) is
    below this: the generator's own uncertainty, as DatasetGAN filters by it."""
    filter_segmenter: object | None = None
    """A reference segmenter (metrics.segmenter.load_segmenter) for `min_agreement`."""
    min_agreement: float = 0.0
    """Drop samples whose mask agrees with the segmenter's prediction on the image below this mIoU."""
    filter_segmenter_dir: str | None = None
    """Where `filter_segmenter` was read from (recorded with the generation)."""
    classes: list[str] = field(default_factory=list)
    """Class-targeted sampling: ask for pairs showing these classes (targeting.py)."""
    class_rate: float = 0.0
    """The share of pairs that should show one of `classes`."""
    upsample: int = 0
    """Write the pairs 2**upsample times the model's size: image and mask logits up-sampled
    bilinearly (as a residual stage grown onto the model starts) before the mask's argmax."""
    write: bool = True
    """False only generates (for benchmarking the generator alone)."""
    threads: int = 2

    def __post_init__(self) -> None:
        if self.n < 1 or self.batch < 1:
            raise StylesegError(
                f"the number of pairs and the batch must be at least 1 (n {self.n}, batch {self.batch})"
            )
        if not math.isfinite(self.psi):
            raise StylesegError(f"the truncation must be a finite number, not {self.psi}")
        for name in ("min_person_fraction", "min_confidence", "min_agreement", "class_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise StylesegError(f"{name} must be in [0, 1], not {getattr(self, name)}")
        if self.class_rate > 0 and not self.classes:
            raise StylesegError("a class rate needs classes to target")
        if not 0 <= self.upsample <= 4:
            raise StylesegError(f"upsample is {self.upsample}: 0 to 4 doublings of the model's size")

    def record(self) -> dict:
        """What decides which pairs a generation holds (not how many, nor how fast): kept with the
        pairs, so that a continuation can be checked against it."""
        keys = ("seed", "psi", "min_person_fraction", "require_person", "min_confidence", "min_agreement")
        keys += ("filter_segmenter_dir", "classes", "class_rate", "upsample")
        return {k: getattr(self, k) for k in keys}


@dataclass
class EvalOptions:
    n: int = 1000
    """Generated pairs (the amount of generated training data in the usefulness regimes)."""
    psi: float = 1.0
    """Truncation of the generated pairs."""
    first_seed: int = 0
    """Generated pair k uses seed first_seed + k: pick a checkpoint on one block of seeds, then report
    it on another, so the reported figure is not the maximum of several noisy draws."""
    seeds: int = 3
    """Segmenter seeds per usefulness regime (at least 3 for an interval worth reading)."""
    low_labels: list[int] = field(default_factory=lambda: [50])
    """The N of the 'N real' regimes."""
    mix: float = SegmenterConfig.synthetic_share
    """Fraction of each batch drawn from generated pairs when real and generated data are combined."""
    filter_keep: float | None = None
    """Also run the generated regimes on the best-agreeing fraction of generated pairs."""
    regimes: list[str] | None = None
    """Only these usefulness regimes (names as printed); None: all; []: none (agreement, realism and
    label statistics only: minutes instead of hours, to compare checkpoints quickly)."""
    reference: str | None = None
    """A segmenter folder written by `segmenter train` to use as the reference instead of training
    one (e.g. one fine-tuned at this resolution from a half-resolution start); its ceiling is still
    measured here, on this dataset's validation report half."""
    # the segmenter recipe's defaults are SegmenterConfig's: one place to change them
    segmenter_width: int = SegmenterConfig.width
    segmenter_max_steps: int = SegmenterConfig.max_steps
    """Upper bound on the reference segmenter's steps (it stops earlier, on validation)."""
    usefulness_max_steps: int | None = None
    """Upper bound on each usefulness segmenter's steps (default: segmenter_max_steps); the same for
    every regime, so regimes stay comparable."""
    dice_weight: float = SegmenterConfig.dice_weight
    """Soft Dice weight of every segmenter trained here (reference and usefulness)."""
    repeat_threshold: float = SegmenterConfig.repeat_threshold
    """Rare-class oversampling of every segmenter trained here (see SegmenterConfig)."""
    weight_ema: float = SegmenterConfig.weight_ema
    """Weight averaging of every segmenter trained here (see SegmenterConfig)."""
    patience: int = SegmenterConfig.patience
    """Early stopping of every segmenter trained here (see SegmenterConfig; 0: none)."""
    inception_weights: str | None = None
    real_subset: list[int] | None = None
    """Fixed real samples for the 'N real' regimes (N = their count), the same for every seed: e.g.
    the labels a run kept under a label budget. None: N samples drawn per seed."""
    stream: StreamOptions | None = None
    """With it, the 'streamed' regimes too: pairs drawn fresh from the model at every step."""
    stream_on_top: bool = SegmenterConfig.synthetic_on_top
    """The streamed regimes with real labels: their pairs added on top of a full real batch instead of
    taken from it (SegmenterConfig.synthetic_on_top)."""
    synthetic_target: str = SegmenterConfig.synthetic_target
    """How streamed pairs teach: soft | hard | weighted | confident (see SegmenterConfig)."""
    min_confidence: float = SegmenterConfig.min_confidence
    """'confident' targets: the top probability below which a pixel carries no loss."""
    synthetic_blind: str = "none"
    """Classes the streamed pairs say nothing about (SegmenterConfig.synthetic_blind): 'none', 'auto'
    (those the stream never draws, found on its pairs) or class names separated by commas."""
    upsample: str | None = None
    """Score a model of a lower resolution at the data's (e.g. a 64x48 model beside a 128x96 one, in
    the same feature space): 'resize' up-samples its pairs as `prepare` resizes photos and masks
    (Lanczos, nearest), 'smooth' its image and mask logits bilinearly, as a residual stage grown onto
    it starts (GenerateOptions.upsample). None: the model must draw at the data's resolution."""

    def segmenter_config(
        self, num_classes: int, max_steps: int, seed: int = 0, blind: tuple[int, ...] = ()
    ) -> SegmenterConfig:
        """The configuration of every segmenter trained here: the same recipe, its own step bound and
        seed; `blind` the class ids `synthetic_blind` resolved to against the stream."""
        return SegmenterConfig(
            num_classes=num_classes,
            width=self.segmenter_width,
            max_steps=max_steps,
            seed=seed,
            dice_weight=self.dice_weight,
            repeat_threshold=self.repeat_threshold,
            weight_ema=self.weight_ema,
            patience=self.patience,
            synthetic_share=self.mix,
            synthetic_on_top=self.stream_on_top,
            synthetic_target=self.synthetic_target,
            min_confidence=self.min_confidence,
            synthetic_blind=blind,
        )


@dataclass
class ProjectOptions:
    """Fitting a latent so that the generator redraws a photo (`styleseg project`)."""

    steps: int = 200
    """Optimisation steps per photo (all photos of a batch together)."""
    lr: float = 0.05
    """Adam's learning rate on the latent (after a linear warm-up over a tenth of the steps, a
    cosine decay to zero)."""
    space: str = "w+"
    """'w': one w for every layer; 'w+': one w per layer (more freedom, the mask follows less)."""
    perceptual_weight: float = 1.0
    """Weight of the distance in the discriminator's features beside the pixel distance (0: pixels only)."""
    batch: int = 16
    """Photos projected together."""

    def __post_init__(self) -> None:
        if self.space not in ("w", "w+"):
            raise StylesegError(f"space must be w or w+, not '{self.space}'")
        if self.steps < 1 or self.batch < 1 or not (math.isfinite(self.lr) and self.lr > 0):
            raise StylesegError("steps and batch must be at least 1 and lr positive")
        if not (math.isfinite(self.perceptual_weight) and self.perceptual_weight >= 0):
            raise StylesegError(f"perceptual weight must be at least 0, not {self.perceptual_weight}")
