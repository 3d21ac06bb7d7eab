"""Real batches for the training loop, read one step ahead on a worker thread.

The samplers advance on the training thread (index arithmetic only); reading the store (positioned
reads of its rows, rows.py), flipping, and pinning happen on a worker while the current step
computes. After segmentation starts a batch may mix photos from the image sampler (every train
photo, for D's image head) with labelled pairs from the segmentation sampler, at the positions
`photo_positions` gives. A prefetched batch that the next step turns out not to want (a growth event
changed what it needs) is put back: its sampler is rewound and the batch drawn again, so the data
order never depends on prefetching, and a checkpoint records the samplers as they were before any
batch still in flight. A resumed run therefore draws exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import torch

from styleseg.config import TrainConfig
from styleseg.data.balance import sampler_repeat_factors
from styleseg.data.budget import labels_to_keep
from styleseg.data.geometry import downsample, soft_onehot
from styleseg.data.pixels import to_signed
from styleseg.data.store import EpochSampler, PreparedDataset, SamplerState
from styleseg.errors import StylesegError
from styleseg.models.growth import GrowthState
from styleseg.models.layers import downsample2, upsample2
from styleseg.training import distributed as dist


def photo_positions(batch: int, photos: int) -> np.ndarray:
    """(batch,) bool: which positions of a step's batch are photos for D's image head, spread evenly
    (sample i is a photo when floor((i + 1) * photos / batch) steps up). The pattern of a batch of
    N*b with N*p photos is N copies of the pattern of b with p, so N processes with batch b route
    their samples exactly as one process with batch N*b does."""
    i = np.arange(batch)
    return (i + 1) * photos // batch > i * photos // batch


@dataclass
class _Pending:
    key: tuple
    rewind: list[tuple[EpochSampler, SamplerState]]
    """Each sampler this batch advanced, with its state before: putting the batch back restores them."""
    future: Future


class RealBatchFeeder:
    """Real (image, mask) batches at each step's stage and class level."""

    def __init__(
        self,
        data: PreparedDataset,
        image_sampler: EpochSampler,
        seg_sampler: EpochSampler | None,
        levels,
        num_stages: int,
        data_factor: int,
        device: torch.device,
    ):
        self.data, self.image_sampler, self.seg_sampler = data, image_sampler, seg_sampler
        self.num_stages, self.data_factor, self.device = num_stages, data_factor, device
        self.level_luts = [torch.tensor(lvl.fine_to_group, dtype=torch.long) for lvl in levels]
        self.level_sizes = [lvl.num_classes for lvl in levels]
        self.pin = device.type == "cuda"
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="styleseg-data")
        self.pending: _Pending | None = None
        self.wait_seconds = 0.0  # training-thread time spent waiting for data, since the last read
        self.batches = 0

    def factor(self, st: GrowthState) -> int:
        """Downsampling from the prepared resolution to the stage's resolution."""
        return self.data_factor << (self.num_stages - 1 - st.stage)

    @staticmethod
    def _pairs(st: GrowthState, batch: int, photos: int) -> int:
        return batch - photos if st.seg_level is not None else 0

    def _key(self, st: GrowthState, batch: int, photos: int) -> tuple:
        return (st.seg_level is not None, batch, self._pairs(st, batch, photos), self.factor(st))

    def _read(self, photo_idx, photo_flip, pair_idx, pair_flip, mip: int):
        """Images at every position, photos where `photo_positions` says and labelled pairs elsewhere;
        masks (None before segmentation) have zero rows at photo positions, placeholders that D's
        image head never reads."""
        if pair_idx is None:
            images, _ = self.data.load_batch(photo_idx, photo_flip, mip, masks=False)
            mask_ids = None
        else:
            pair_images, pair_masks = self.data.load_batch(pair_idx, pair_flip, mip, masks=True)
            n = len(photo_idx) + len(pair_idx)
            is_photo = torch.from_numpy(photo_positions(n, len(photo_idx)))
            images = pair_images.new_empty((n, *pair_images.shape[1:]))
            mask_ids = pair_masks.new_zeros((n, *pair_masks.shape[1:]))
            images[~is_photo], mask_ids[~is_photo] = pair_images, pair_masks
            if len(photo_idx):
                images[is_photo] = self.data.load_batch(photo_idx, photo_flip, mip, masks=False)[0]
        if self.pin:
            images = images.pin_memory()
            mask_ids = mask_ids.pin_memory() if mask_ids is not None else None
        return images, mask_ids

    def _submit(self, st: GrowthState, batch: int, photos: int = 0) -> None:
        pairs = self._pairs(st, batch, photos)
        rewind = [
            (sampler, SamplerState(**asdict(sampler.state)))
            for sampler, n in ((self.image_sampler, batch - pairs), (self.seg_sampler, pairs))
            if n
        ]
        photo_idx, photo_flip = (
            self.image_sampler.next(batch - pairs) if pairs < batch else (np.zeros(0, np.int64), None)
        )
        pair_idx, pair_flip = self.seg_sampler.next(pairs) if pairs else (None, None)
        mip = self.data.mip_factor(self.factor(st))
        future = self.pool.submit(self._read, photo_idx, photo_flip, pair_idx, pair_flip, mip)
        self.pending = _Pending(self._key(st, batch, photos), rewind, future)

    def _put_back(self) -> None:
        if self.pending is not None:
            self.pending.future.cancel()
            for sampler, before in self.pending.rewind:
                sampler.state = before
            self.pending = None

    def next(self, st: GrowthState, batch: int, lookahead: tuple | None, photos: int = 0):
        """(img (B, 3, H_s, W_s) in [-1, 1], seg (B, K, H_s, W_s) area fractions or None) for this step;
        then starts reading the batch for `lookahead` = (growth state, batch[, photos]) of the next step.
        After segmentation starts, `photos` samples are photos (labelled or not) for D's image head, at
        the positions `photo_positions` gives, and the rest labelled pairs; before, every sample is a
        photo."""
        if self.pending is None or self.pending.key != self._key(st, batch, photos):
            self._put_back()
            self._submit(st, batch, photos)
        t0 = time.perf_counter()
        images, masks = self.pending.future.result()
        self.wait_seconds += time.perf_counter() - t0
        self.batches += 1
        mip = self.data.mip_factor(self.factor(st))
        self.pending = None
        if lookahead is not None:
            self._submit(*lookahead)
        factor = self.factor(st)
        img = to_signed(images.to(self.device, non_blocking=True))
        img = downsample(img, factor // mip)  # (B, 3, H_s, W_s)
        seg = None
        if st.seg_level is not None:
            ids = self.level_luts[st.seg_level][masks.long()].to(self.device, non_blocking=True)
            seg = soft_onehot(ids, self.level_sizes[st.seg_level], factor)  # (B, K, H_s, W_s)
        if st.alpha < 1 and st.stage > 0:  # show reals as blurry as the fading-in generator's output
            img = torch.lerp(upsample2(downsample2(img)), img, st.alpha)
            if seg is not None:
                seg = torch.lerp(upsample2(downsample2(seg)), seg, st.alpha)
        return img, seg

    def take_wait(self) -> tuple[float, int]:
        """(seconds waited, batches read) since the last call."""
        out = (self.wait_seconds, self.batches)
        self.wait_seconds, self.batches = 0.0, 0
        return out

    def sampler_states(self) -> dict:
        """Sampler states as if no batch were in flight (what a checkpoint must record)."""
        states = {"image_sampler": asdict(self.image_sampler.state)}
        states["seg_sampler"] = asdict(self.seg_sampler.state) if self.seg_sampler else None
        if self.pending is not None:
            for sampler, before in self.pending.rewind:
                states["image_sampler" if sampler is self.image_sampler else "seg_sampler"] = asdict(before)
        return states

    def load_sampler_states(self, state: dict) -> None:
        self._put_back()
        self.image_sampler.state = SamplerState(**state["image_sampler"])
        if self.seg_sampler and state.get("seg_sampler"):
            self.seg_sampler.state = SamplerState(**state["seg_sampler"])

    def close(self) -> None:
        self._put_back()
        self.pool.shutdown(wait=True)


def build_feeder(cfg: TrainConfig, data: PreparedDataset, levels, data_factor: int, device: torch.device):
    """The feeder of a run and what to record about its real samples (labels.json): which labelled
    samples it keeps (`data.max_labeled`), the share of each batch D's image head judges as photos
    (`data.image_share`; auto: 0.5 when some train photos have no label), rare-class repeat factors."""
    train_photos = data.indices("train")
    labeled = labels_to_keep(data.indices("train", labeled_only=True), cfg.data.max_labeled, cfg.seed)
    image_share = cfg.data.image_share
    if image_share is None:  # auto: unlabelled photos keep teaching through D's image head
        image_share = 0.5 if len(train_photos) > len(labeled) else 0.0
    record = {
        "max_labeled": cfg.data.max_labeled,
        "labeled_kept": len(labeled),
        "train_photos": len(train_photos),
        "image_share": image_share,
        "image_share_from": "config" if cfg.data.image_share is not None else "auto",
        "labeled_indices": labeled.tolist(),
    }
    photo_repeats = pair_repeats = None
    if cfg.data.repeat_threshold and len(labeled):
        photo_repeats, pair_repeats, repeats = sampler_repeat_factors(
            data, train_photos, labeled, levels[-1].num_classes, cfg.data.repeat_threshold
        )
        record.update(repeats)
    rank, world, flip = dist.rank(), dist.world_size(), cfg.data.xflip
    image_sampler = EpochSampler(train_photos, cfg.seed, flip, rank, world, photo_repeats)
    seg_sampler = EpochSampler(labeled, cfg.seed + 1, flip, rank, world, pair_repeats) if len(labeled) else None
    if cfg.schedule.seg_start_kimg is not None and seg_sampler is None:
        raise StylesegError(f"{data.root}: the schedule adds segmentation but the train split has no labeled samples")
    feeder = RealBatchFeeder(data, image_sampler, seg_sampler, levels, cfg.model.num_stages, data_factor, device)
    return feeder, record
