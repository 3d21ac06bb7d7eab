"""The prefetching feeder gives exactly the batches a plain read gives, in the same order, also
across growth events that change what a step needs; flips of real and generated masks swap sides."""

import torch

from styleseg.config import AugmentConfig
from styleseg.data.classes import LIP_LABELS
from styleseg.data.store import EpochSampler, PreparedDataset
from styleseg.models.growth import GrowthState
from styleseg.training.augment import augment
from styleseg.training.feeder import RealBatchFeeder
from styleseg.training.randomness import CounterRandom


def _feeder(ds: PreparedDataset) -> RealBatchFeeder:
    images = EpochSampler(ds.indices("train"), 0)
    labeled = EpochSampler(ds.indices("train", labeled_only=True), 1)
    return RealBatchFeeder(ds, images, labeled, ds.class_map.levels(), 3, 1, torch.device("cpu"))


def test_prefetch_with_wrong_guess_matches_plain_reads(prepared_tiny):
    ds = PreparedDataset(prepared_tiny)
    plan = [GrowthState(0, 1.0, None, 0.0), GrowthState(1, 0.5, None, 0.0), GrowthState(2, 1.0, 0, 1.0)] * 2
    batches = [4, 4, 2, 4, 4, 2]
    # Feeder A guesses the next step right; feeder B always guesses a wrong stage (its prefetch is put back).
    a, b = _feeder(ds), _feeder(ds)
    out_a, out_b = [], []
    for i, (st, n) in enumerate(zip(plan, batches)):
        nxt = (plan[i + 1], batches[i + 1]) if i + 1 < len(plan) else None
        out_a.append(a.next(st, n, nxt))
        out_b.append(b.next(st, n, (GrowthState(0, 1.0, 2, 1.0), 3)))
        assert a.sampler_states() == b.sampler_states()
    for (ia, sa), (ib, sb) in zip(out_a, out_b):
        torch.testing.assert_close(ia, ib, rtol=0, atol=0)
        assert (sa is None) == (sb is None) and (sa is None or torch.equal(sa, sb))
    # ...and the first batch is what a plain read of the sampler's first draw gives
    idx, flip = EpochSampler(ds.indices("train"), 0).next(4)
    images, _ = ds.load_batch(idx, flip, ds.mip_factor(4))
    expect = torch.nn.functional.avg_pool2d(images.float() / 127.5 - 1, 4 // ds.mip_factor(4))
    torch.testing.assert_close(out_a[0][0], expect)
    a.close()
    b.close()


def test_checkpoint_records_samplers_before_the_batch_in_flight(prepared_tiny):
    ds = PreparedDataset(prepared_tiny)
    f = _feeder(ds)
    st = GrowthState(2, 1.0, None, 0.0)
    f.next(st, 4, (st, 4))  # one batch consumed, one in flight
    assert f.sampler_states()["image_sampler"] == {"epoch": 0, "position": 4}
    assert f.image_sampler.state.position == 8
    f.close()


def test_augment_flip_swaps_left_and_right_channels():
    left, right = LIP_LABELS.index("left-arm"), LIP_LABELS.index("right-arm")
    mirror = torch.arange(20)
    mirror[left], mirror[right] = right, left
    seg = torch.zeros(8, 20, 8, 6)
    seg[:, left, 2:5, 0:2] = 1.0  # a left arm at the image's left edge
    seg[:, 0] = 1 - seg[:, left]
    img = torch.zeros(8, 3, 8, 6)
    off = dict(translate=0, scale=0, rotate=0, aniso=0, brightness=0, contrast=0, saturation=0)
    cfg = AugmentConfig(xflip=1.0, **off)
    out_img, out_seg = augment(img, seg, 1.0, cfg, CounterRandom(0), mirror)
    flipped = out_seg[:, left].sum((1, 2)) == 0
    assert flipped.any() and (~flipped).any()  # about half the samples were flipped
    torch.testing.assert_close(out_seg[flipped][:, right, 2:5, 4:6], torch.ones(int(flipped.sum()), 3, 2))
    torch.testing.assert_close(out_seg[~flipped][:, left, 2:5, 0:2], torch.ones(int((~flipped).sum()), 3, 2))
