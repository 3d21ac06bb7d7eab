"""Mismatched real pairs: two mask classes swapped, shown to D as fakes beside the real pairs."""

from pathlib import Path

import pytest
import torch

from styleseg.config import build_config
from styleseg.data.store import PreparedDataset
from styleseg.errors import StylesegError
from styleseg.training.loop import Trainer
from styleseg.training.mismatch import masks_of_others, swap_two_classes
from tests.conftest import TINY


def _one_hot(ids: torch.Tensor, k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(ids, k).permute(0, 3, 1, 2).float()


def test_two_present_classes_swap_their_areas():
    ids = torch.tensor([[[0, 1, 1], [0, 3, 3]], [[0, 0, 2], [0, 0, 0]]])  # sample 2: one foreground class
    seg = _one_hot(ids, 4)
    seg[0, :, 0, 0] = torch.tensor([0.5, 0.0, 0.0, 0.5])  # an area fraction: class 3 present at a border
    u_first = torch.tensor([[0.9, 0.99, 0.1], [0.5, 0.5, 0.5]])  # class 2 has the largest draw but is absent
    out, changed = swap_two_classes(seg, u_first, torch.rand(2, 3))
    assert changed.tolist() == [True, False]
    torch.testing.assert_close(out[1], seg[1])  # nothing to swap: unchanged
    assert torch.equal(out[0, 1], seg[0, 3]) and torch.equal(out[0, 3], seg[0, 1])  # 1 (0.9) and 3, the other present
    assert torch.equal(out[0, [0, 2]], seg[0, [0, 2]])


def test_every_pair_of_present_classes_can_be_swapped_and_absent_ones_never():
    n, k = 600, 6
    ids = torch.tensor([[[0, 1, 2, 4]]]).repeat(n, 1, 1)  # classes 1, 2 and 4 present; 3 and 5 absent
    g = torch.Generator().manual_seed(0)
    out, changed = swap_two_classes(
        _one_hot(ids, k), torch.rand(n, k - 1, generator=g), torch.rand(n, k - 1, generator=g)
    )
    assert changed.all()
    assert torch.equal(out.sum((2, 3)).sort(1).values, _one_hot(ids, k).sum((2, 3)).sort(1).values)  # areas only move
    swapped = {tuple(sorted(set(row[row != ids[0, 0]].tolist()))) for row in out.argmax(1)[:, 0]}
    assert swapped == {(1, 2), (1, 4), (2, 4)}


def _trainer(data: Path, run: Path, *overrides: str) -> Trainer:
    cfg = build_config(str(TINY), list(overrides))
    run.mkdir(parents=True, exist_ok=True)
    return Trainer(cfg, PreparedDataset(data), run, torch.device("cpu"))


@pytest.mark.parametrize("labels", ["data.image_share=0", "data.max_labeled=6"])
def test_d_judges_real_images_with_swapped_mask_classes_as_extra_fakes(prepared_tiny, tmp_path, labels):
    overrides = ["masks.mismatch_share=0.5", "masks.noise_std=0", "augment.enabled=false", labels]
    trainer = _trainer(prepared_tiny, tmp_path / "run", *overrides)
    calls = []
    forward = trainer.nets.D.forward

    def spy_forward(img, seg, *args, pair=None, **kw):
        calls.append((img.detach().clone(), None if seg is None else seg.detach().clone(), pair))
        return forward(img, seg, *args, pair=pair, **kw)

    trainer.nets.D.forward = spy_forward
    d_calls = {}
    for step in range(22):  # 8 per step: segmentation starts at step 12 (0.096 kimg), 5 classes at 20 (0.16)
        calls.clear()
        trainer.train_step()
        d_calls[step] = calls[0]  # the D step's call (the G step's comes second)
    trainer.feeder.close()
    assert len(d_calls[15][0]) == 16  # background and person only: no two classes to swap, no extra fakes
    img, seg, pair = d_calls[21]
    pairs = 8 if pair is None else int(pair[:8].sum())  # tiny data has unlabelled photos: D has a pair head
    extra = 4  # half of 8 pairs, or of 4 rounded up to one whole minibatch-stddev group of 4
    assert len(img) == 16 + extra
    positions = torch.arange(8) if pair is None else torch.nonzero(pair[:8]).flatten()
    chosen = positions[:extra]
    torch.testing.assert_close(img[16:], img[:8][chosen])  # the same real images
    real_ids, mismatched_ids = seg[:8][chosen].argmax(1), seg[16:].argmax(1)
    swaps = 0
    for r, m in zip(real_ids, mismatched_ids):
        pairs_moved = {(int(a), int(b)) for a, b in zip(r[r != m], m[r != m])}
        assert set(r.unique().tolist()) == set(m.unique().tolist())  # the same classes, in swapped places
        if pairs_moved:
            (a, b), swaps = min(pairs_moved), swaps + 1
            assert pairs_moved == {(a, b), (b, a)} and 0 not in (a, b)
    assert swaps > 0
    assert (pair is None) == (labels == "data.image_share=0")
    if pair is not None:
        assert pairs == 4 and pair[16:].all()  # only labelled pairs are mismatched
    assert "mismatch_score" in trainer.read_stats()


def test_the_weight_scales_the_mismatched_pairs_part_of_d_loss(prepared_tiny, tmp_path):
    losses = []
    for weight in (0, 1, 2):
        trainer = _trainer(
            prepared_tiny, tmp_path / str(weight), "masks.mismatch_share=0.5", f"masks.mismatch_weight={weight}"
        )
        for _ in range(20):  # identical runs until the first split at step 20 gives classes to swap
            trainer.train_step()

        def recording(*args, d_phase=trainer.loss.d_phase):
            stats, loss = d_phase(*args)
            losses.append(float(loss.detach()))
            return stats, loss

        trainer.loss.d_phase = recording
        trainer.train_step()
        trainer.feeder.close()
    assert len(losses) == 3 and losses[1] - losses[0] > 0.1
    assert losses[2] - losses[1] == pytest.approx(losses[1] - losses[0], rel=1e-4)


def test_shuffle_pairs_each_image_with_another_real_mask(prepared_tiny, tmp_path):
    seg = torch.rand(3, 4, 2, 2)
    others, changed = masks_of_others(seg)
    assert changed.all() and torch.equal(others, seg[[2, 0, 1]])
    assert not masks_of_others(seg[:1])[1].any()  # a batch of one has no other mask
    trainer = _trainer(
        prepared_tiny,
        tmp_path / "run",
        "masks.mismatch_share=0.5",
        "masks.mismatch=shuffle",
        "masks.noise_std=0",
        "augment.enabled=false",
        "data.image_share=0",
    )
    calls = []
    forward = trainer.nets.D.forward
    trainer.nets.D.forward = lambda img, seg, *a, **kw: calls.append((img, seg)) or forward(img, seg, *a, **kw)
    for _ in range(14):  # segmentation starts at step 12: two classes are enough to shuffle
        calls.clear()
        trainer.train_step()
    trainer.feeder.close()
    img, seg = calls[0]
    assert len(img) == 20
    torch.testing.assert_close(img[16:], img[:4])
    torch.testing.assert_close(seg[16:], seg[[3, 0, 1, 2]])


def test_off_by_default_d_sees_real_and_fake_only(prepared_tiny, tmp_path):
    trainer = _trainer(prepared_tiny, tmp_path / "run")
    sizes = []
    forward = trainer.nets.D.forward
    trainer.nets.D.forward = lambda img, seg, *a, **kw: sizes.append(len(img)) or forward(img, seg, *a, **kw)
    for _ in range(22):
        trainer.train_step()
    trainer.feeder.close()
    assert sizes[-2] == 16 and "mismatch_score" not in trainer.read_stats()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["masks.mismatch_share=1.5"], r"mismatch_share must be in \[0, 1\]"),
        (["masks.mismatch_share=0.25", "optim.loss=wgan-gp"], "needs optim.loss 'logistic'"),
        (["masks.mismatch_weight=-1"], "mismatch_weight must be at least 0"),
        (["masks.mismatch=other"], "masks.mismatch must be swap or shuffle"),
    ],
)
def test_bad_mismatch_settings_are_refused(overrides, message):
    with pytest.raises(StylesegError, match=message):
        build_config(str(TINY), overrides)
