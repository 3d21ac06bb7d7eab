"""Rare-class oversampling of GAN training data (data.repeat_threshold): the sampler repeats each
sample by its factor on average, exactly reproducibly; the trainer feeds the factors of the
labelled samples' rarest classes to both samplers and records them."""

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from styleseg.config import ConfigError, build_config
from styleseg.data.balance import class_presence, repeat_factors
from styleseg.data.store import EpochSampler, PreparedDataset, SamplerState
from styleseg.errors import DataError
from styleseg.training.loop import Trainer
from tests.conftest import TINY


def test_each_epoch_repeats_a_sample_floor_or_ceil_of_its_factor_times_and_on_average_its_factor():
    indices = np.arange(100, 110)
    factors = np.array([1.0, 1.0, 2.0, 2.5, 3.7, 1.0, 1.2, 1.0, 1.0, 4.0])
    sampler = EpochSampler(indices, seed=3, flip=False, repeats=factors)
    totals = np.zeros(len(indices))
    epochs = 400
    for epoch in range(epochs):
        perm, _ = sampler._epoch(epoch)
        counts = np.array([(perm == i).sum() for i in indices])
        assert np.all((counts == np.floor(factors)) | (counts == np.ceil(factors)))
        totals += counts
    # 400 epochs: the mean count of a Bernoulli(0.5) remainder is within 0.08 of its mean at 3.2 sigma
    np.testing.assert_allclose(totals / epochs, factors, atol=0.08)


def test_repeated_epochs_resume_exactly_from_the_sampler_state():
    factors = np.array([1.0, 3.0, 1.5, 1.0])
    uninterrupted = EpochSampler(np.arange(4), seed=1, repeats=factors)
    batches = [uninterrupted.next(3) for _ in range(5)]  # 15 samples: through epochs of 6 or 7
    before = EpochSampler(np.arange(4), seed=1, repeats=factors)
    before.next(3), before.next(3)
    resumed = EpochSampler(np.arange(4), seed=1, repeats=factors)
    resumed.state = SamplerState(**asdict(before.state))  # what a checkpoint records
    for idx, flips in batches[2:]:
        r_idx, r_flips = resumed.next(3)
        assert np.array_equal(idx, r_idx) and np.array_equal(flips, r_flips)
    assert uninterrupted.state.epoch >= 2


def test_a_run_resumed_with_repeats_turned_off_starts_the_next_epoch_instead_of_a_short_batch():
    with_repeats = EpochSampler(np.arange(4), seed=1, repeats=np.array([3.0, 3.0, 1.0, 1.0]))
    with_repeats.next(6)  # an epoch of 8: position 6, past the 4 samples of an epoch without repeats
    resumed = EpochSampler(np.arange(4), seed=1)
    resumed.state = SamplerState(**asdict(with_repeats.state))
    idx, flips = resumed.next(3)
    assert len(idx) == len(flips) == 3 and resumed.state == SamplerState(epoch=1, position=3)
    assert np.array_equal(idx, EpochSampler(np.arange(4), seed=1)._epoch(1)[0][:3])


@pytest.mark.parametrize("bad", [np.array([1.0, 0.5]), np.array([1.0])])
def test_factors_below_one_or_of_the_wrong_length_are_refused(bad):
    with pytest.raises(DataError, match="repeat factors"):
        EpochSampler(np.arange(2), seed=0, repeats=bad)


def test_threshold_outside_zero_one_is_refused():
    with pytest.raises(ConfigError, match="repeat_threshold"):
        build_config(str(TINY), ["data.repeat_threshold=2"])


def _with_a_rare_class(prepared: Path, root: Path) -> PreparedDataset:
    """The tiny store with one class erased from all but two labelled train masks."""
    shutil.copytree(prepared, root)
    data = PreparedDataset(root)
    labeled = data.indices("train", labeled_only=True)
    masks = np.load(root / "masks.npy", mmap_mode="r+")
    shown = np.bincount(np.asarray(masks[labeled]).ravel(), minlength=data.class_map.num_classes)
    rare = int(np.flatnonzero(shown)[-1])
    for i in labeled[2:]:
        masks[i][masks[i] == rare] = 0
    masks.flush()
    return PreparedDataset(root)


def test_trainer_oversamples_the_labelled_samples_with_rare_classes(prepared_tiny, tmp_path):
    data = _with_a_rare_class(prepared_tiny, tmp_path / "data")
    cfg = build_config(str(TINY), ["data.repeat_threshold=0.5"])
    trainer = Trainer(cfg, data, tmp_path, torch.device("cpu"))
    trainer.feeder.close()
    labeled = data.indices("train", labeled_only=True)
    expect = repeat_factors(class_presence(data, labeled, data.class_map.num_classes), 0.5)
    assert np.allclose(expect[:2], np.sqrt(0.5 / (2 / len(labeled)))) and np.all(expect[2:] == 1)
    np.testing.assert_allclose(trainer.feeder.seg_sampler.repeats, expect)
    photos = data.indices("train")
    photo_factors = trainer.feeder.image_sampler.repeats
    for i, f in zip(photos, photo_factors):
        assert f == (expect[list(labeled).index(i)] if i in labeled else 1.0)
    record = json.loads((tmp_path / "labels.json").read_text())
    assert record["repeat_threshold"] == 0.5 and record["repeat_factor_max"] == round(float(expect.max()), 3)


def test_off_by_default_leaves_the_samplers_uniform(prepared_tiny, tmp_path):
    trainer = Trainer(build_config(str(TINY), []), PreparedDataset(prepared_tiny), tmp_path, torch.device("cpu"))
    trainer.feeder.close()
    assert trainer.feeder.seg_sampler.repeats is None and trainer.feeder.image_sampler.repeats is None
    assert "repeat_threshold" not in json.loads((tmp_path / "labels.json").read_text())
