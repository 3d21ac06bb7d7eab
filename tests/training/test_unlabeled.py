"""Few labels, many photos: after segmentation starts, unlabelled photos reach D's image head and
never its pair head; the label budget is deterministic and recorded; the pair head's arrival keeps
D's function."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from styleseg.config import build_config
from styleseg.data.budget import labels_to_keep
from styleseg.data.store import EpochSampler, PreparedDataset
from styleseg.errors import StylesegError
from styleseg.models.discriminator import Discriminator
from styleseg.models.generator import Generator
from styleseg.models.growth import GrowthState
from styleseg.training.feeder import RealBatchFeeder, photo_positions
from styleseg.training.loop import Trainer
from tests.conftest import SIZES, TINY, latents, tiny_model_config


def test_label_budget_is_a_fixed_subset_by_count_or_fraction():
    labeled = np.arange(100, 200)
    a = labels_to_keep(labeled, 10, seed=3)
    assert len(a) == 10 and set(a) <= set(labeled) and np.all(np.diff(a) > 0)
    assert np.array_equal(a, labels_to_keep(labeled[::-1], 10, seed=3))  # order of the input does not matter
    assert not np.array_equal(a, labels_to_keep(labeled, 10, seed=4))
    assert len(labels_to_keep(labeled, 0.25, seed=0)) == 25
    assert np.array_equal(labels_to_keep(labeled, None, seed=0), labeled)
    with pytest.raises(StylesegError, match="more labels than the 100"):
        labels_to_keep(labeled, 101, seed=0)


def test_photo_positions_are_spread_evenly_and_split_across_processes():
    one = photo_positions(8, 4)
    assert one.tolist() == [False, True] * 4
    assert np.array_equal(np.tile(photo_positions(4, 2), 2), one)  # 2 processes x 4 route as 1 x 8
    assert np.array_equal(np.tile(photo_positions(6, 2), 3), photo_positions(18, 6))
    assert photo_positions(5, 0).sum() == 0 and photo_positions(5, 5).all() and photo_positions(7, 3).sum() == 3


def test_feeder_mixes_photos_and_labelled_pairs(prepared_tiny):
    ds = PreparedDataset(prepared_tiny)
    photos_sampler = EpochSampler(ds.indices("train"), 0)
    pairs_sampler = EpochSampler(ds.indices("train", labeled_only=True), 1)
    feeder = RealBatchFeeder(ds, photos_sampler, pairs_sampler, ds.class_map.levels(), 3, 1, torch.device("cpu"))
    st = GrowthState(2, 1.0, 0, 1.0)
    img, seg = feeder.next(st, 6, None, photos=2)
    feeder.close()
    p_idx, p_flip = EpochSampler(ds.indices("train"), 0).next(2)
    q_idx, q_flip = EpochSampler(ds.indices("train", labeled_only=True), 1).next(4)
    photos, _ = ds.load_batch(p_idx, p_flip)
    pairs, masks = ds.load_batch(q_idx, q_flip)
    is_photo = torch.from_numpy(photo_positions(6, 2))
    torch.testing.assert_close(img[is_photo], photos.float() / 127.5 - 1)
    torch.testing.assert_close(img[~is_photo], pairs.float() / 127.5 - 1)
    lut = torch.as_tensor(ds.class_map.levels()[0].fine_to_group)
    assert torch.equal(seg[~is_photo].argmax(1), lut[masks.long()])


def _trainer(data: Path, run: Path, *overrides: str) -> Trainer:
    cfg = build_config(str(TINY), list(overrides))
    run.mkdir(parents=True, exist_ok=True)
    return Trainer(cfg, PreparedDataset(data), run, torch.device("cpu"))


def test_unlabelled_photos_reach_the_image_head_never_the_pair_head(prepared_tiny, tmp_path):
    trainer = _trainer(prepared_tiny, tmp_path / "run", "data.max_labeled=6")
    kept = set(json.loads((tmp_path / "run" / "labels.json").read_text())["labeled_indices"])
    assert len(kept) == 6 and trainer.loss.image_share == 0.5
    reads, flags_seen = [], []
    read = trainer.feeder._read

    def spy_read(photo_idx, photo_flip, pair_idx, pair_flip, mip):
        reads.append((np.asarray(photo_idx).tolist(), None if pair_idx is None else np.asarray(pair_idx).tolist()))
        return read(photo_idx, photo_flip, pair_idx, pair_flip, mip)

    forward = trainer.nets.D.forward

    def spy_forward(img, seg, *args, pair=None, **kw):
        flags_seen.append((len(img), None if pair is None else pair.tolist()))
        return forward(img, seg, *args, pair=pair, **kw)

    trainer.feeder._read, trainer.nets.D.forward = spy_read, spy_forward
    for _ in range(30):  # 8 per step: segmentation starts at step 12 (0.096 kimg)
        trainer.train_step()
    trainer.feeder.close()
    after = [r for r in reads if r[1] is not None]
    assert after, "segmentation never started"
    assert all(set(pairs) <= kept for _, pairs in after), "a pair was drawn from outside the label budget"
    assert all(len(photos) == 4 and len(pairs) == 4 for photos, pairs in after)
    photos_after = {i for photos, _ in after for i in photos}
    assert photos_after - kept, "no unlabelled photo reached D after segmentation started"
    # D judges as pairs exactly the positions where the feeder put labelled pairs, in every part of its call.
    pattern = (~photo_positions(8, 4)).tolist()
    segmented_calls = [f for n, f in flags_seen if f is not None and any(f)]
    assert segmented_calls and all(f == pattern * (len(f) // 8) for f in segmented_calls)


def test_label_budget_is_recorded_and_the_same_for_the_same_config(prepared_tiny, tmp_path):
    a = _trainer(prepared_tiny, tmp_path / "a", "data.max_labeled=0.5")
    b = _trainer(prepared_tiny, tmp_path / "b", "data.max_labeled=0.5")
    c = _trainer(prepared_tiny, tmp_path / "c", "data.max_labeled=0.5", "seed=1")
    for t in (a, b, c):
        t.feeder.close()
    rec = [json.loads((tmp_path / r / "labels.json").read_text()) for r in "abc"]
    assert rec[0] == rec[1] and rec[0]["labeled_indices"] != rec[2]["labeled_indices"]
    labeled = PreparedDataset(prepared_tiny).indices("train", labeled_only=True)
    assert rec[0]["labeled_kept"] == round(len(labeled) / 2) and rec[0]["image_share_from"] == "auto"


def test_pair_only_training_keeps_one_head(prepared_tiny, tmp_path):
    t = _trainer(prepared_tiny, tmp_path / "run", "data.image_share=0")
    t.feeder.close()
    assert not t.nets.D.final.has_pair_head and t.loss.pair_flags(GrowthState(2, 1.0, 0, 1.0), 8) is None


def _pair_nets():
    torch.manual_seed(0)
    cfg = tiny_model_config()
    G, D = Generator(cfg, SIZES).double(), Discriminator(cfg, SIZES, pair_head=True).double()
    with torch.no_grad():
        for name, p in D.named_parameters():
            if name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return G, D


def test_pair_head_arrives_without_changing_d():
    """At the segmentation event the pair head is a copy of the image head and the mask input is
    faded out, so every sample scores as before, photo or pair."""
    G, D = _pair_nets()
    z, noise = latents(G, 8, 2)
    out = G(z, 2, 1.0, 0, noise=noise)
    before = D(out.img, None, 2, 1.0, None, 0.0)
    D.final.start_pair_head()
    flags = torch.arange(8) >= 4
    after = D(out.img, out.seg.softmax(1), 2, 1.0, 0, 0.0, pair=flags)
    torch.testing.assert_close(after, before)


def test_photos_are_judged_on_the_image_alone():
    """A photo's score ignores its mask (zero gradient, placeholder rows) and comes from the image
    head; a pair's score reads its mask."""
    G, D = _pair_nets()
    D.final.start_pair_head()
    with torch.no_grad():
        D.final.pair_out.weight.add_(0.5)  # the heads have diverged in training
    z, noise = latents(G, 8, 2)
    out = G(z, 2, 1.0, 0, noise=noise)
    seg = out.seg.softmax(1).detach().requires_grad_(True)
    flags = torch.arange(8) >= 4
    logits = D(out.img, seg, 2, 1.0, 0, 1.0, pair=flags)
    (grad,) = torch.autograd.grad(logits.sum(), seg)
    assert grad[:4].abs().max() == 0 and grad[4:].abs().max() > 0
    images_only = D(out.img, None, 2, 1.0, None, 0.0)
    torch.testing.assert_close(logits[:4], images_only[:4])
    assert not torch.allclose(logits[4:], images_only[4:])


def test_segmenter_labels_are_a_function_of_seed_and_budget():
    from styleseg.data.budget import segmenter_labels

    pool = np.arange(100, 140)
    a = segmenter_labels(pool, 10, 0)
    assert a.tolist() == sorted(a.tolist()) and len(set(a.tolist())) == 10 and set(a) <= set(pool)
    assert np.array_equal(a, segmenter_labels(pool, 10, 0))  # the same photos every time
    assert not np.array_equal(a, segmenter_labels(pool, 10, 1))  # another seed, other photos
    assert np.array_equal(segmenter_labels(pool, 99, 0), pool)  # a budget above the pool keeps all of it
