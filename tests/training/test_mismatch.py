"""Mismatched real pairs: one mask class relabelled, shown to D as fakes beside the real pairs."""

from pathlib import Path

import pytest
import torch

from styleseg.config import build_config
from styleseg.data.store import PreparedDataset
from styleseg.errors import StylesegError
from styleseg.training.loop import Trainer
from styleseg.training.mismatch import relabel_one_class

TINY = Path(__file__).parent / "tiny.yaml"


def _one_hot(ids: torch.Tensor, k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(ids, k).permute(0, 3, 1, 2).float()


def test_one_present_class_moves_whole_to_another_class():
    ids = torch.tensor([[[0, 1, 1], [0, 3, 3]], [[0, 0, 0], [0, 0, 0]]])  # sample 2: background only
    seg = _one_hot(ids, 4)
    seg[0, :, 0, 0] = torch.tensor([0.5, 0.0, 0.0, 0.5])  # an area fraction: class 3 present at a border
    u_source = torch.tensor([[0.9, 0.99, 0.1], [0.5, 0.5, 0.5]])  # class 2 has the largest draw but is absent
    out, changed = relabel_one_class(seg, u_source, torch.tensor([0.0, 0.0]))
    assert changed.tolist() == [True, False]
    torch.testing.assert_close(out[1], seg[1])  # nothing to move: unchanged
    torch.testing.assert_close(out.sum(1), seg.sum(1))  # area moves, none is made or lost
    # Class 1 (draw 0.9 beats class 3's 0.1) moves to the next class round the ring with u_target 0: 2.
    assert out[0, 1].sum() == 0 and torch.equal(out[0, 2], seg[0, 1]) and torch.equal(out[0, 3], seg[0, 3])


@pytest.mark.parametrize("k", [2, 5])
def test_target_is_never_the_source_and_every_other_class_can_be_drawn(k):
    n = 400
    ids = torch.full((n, 1, 1), 1)
    u = torch.rand(n, k - 1, generator=torch.Generator().manual_seed(0))
    out, changed = relabel_one_class(_one_hot(ids, k), u, torch.rand(n, generator=torch.Generator().manual_seed(1)))
    targets = out.argmax(1).flatten()
    assert changed.all() and (targets != 1).all()
    assert set(targets.tolist()) == set(range(k)) - {1}  # background included: a region erased


def _trainer(data: Path, run: Path, *overrides: str) -> Trainer:
    cfg = build_config(str(TINY), list(overrides))
    run.mkdir(parents=True, exist_ok=True)
    return Trainer(cfg, PreparedDataset(data), run, torch.device("cpu"))


@pytest.mark.parametrize("labels", ["data.image_share=0", "data.max_labeled=6"])
def test_d_judges_real_images_with_relabelled_masks_as_extra_fakes(prepared_tiny, tmp_path, labels):
    overrides = ["masks.mismatch_share=0.5", "masks.noise_std=0", "augment.enabled=false", labels]
    trainer = _trainer(prepared_tiny, tmp_path / "run", *overrides)
    calls = []
    forward = trainer.D.forward

    def spy_forward(img, seg, *args, pair=None, **kw):
        calls.append((img.detach().clone(), None if seg is None else seg.detach().clone(), pair))
        return forward(img, seg, *args, pair=pair, **kw)

    trainer.D.forward = spy_forward
    stats = []
    for _ in range(16):  # 8 per step: segmentation starts at step 12 (0.096 kimg)
        calls.clear()
        stats.append(trainer.train_step())
    trainer.feeder.close()
    img, seg, pair = calls[0]  # the D step's call (the G step's comes second)
    pairs = 8 if pair is None else int(pair[:8].sum())  # tiny data has unlabelled photos: D has a pair head
    extra = 4  # half of 8 pairs, or of 4 rounded up to one whole minibatch-stddev group of 4
    assert len(img) == 16 + extra
    positions = torch.arange(8) if pair is None else torch.nonzero(pair[:8]).flatten()
    chosen = positions[:extra]
    torch.testing.assert_close(img[16:], img[:8][chosen])  # the same real images
    real_ids, mismatched_ids = seg[:8][chosen].argmax(1), seg[16:].argmax(1)
    for r, m in zip(real_ids, mismatched_ids):
        moved = set(r[r != m].tolist())
        assert len(moved) == 1 and 0 not in moved  # exactly one foreground class relabelled
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
        for _ in range(12):  # identical runs until segmentation starts at step 12
            trainer.train_step()

        def recording(*args, d_step=trainer.d_step):
            stats, loss = d_step(*args)
            losses.append(float(loss.detach()))
            return stats, loss

        trainer.d_step = recording
        trainer.train_step()
        trainer.feeder.close()
    assert len(losses) == 3 and losses[1] - losses[0] > 0.1
    assert losses[2] - losses[1] == pytest.approx(losses[1] - losses[0], rel=1e-4)


def test_off_by_default_d_sees_real_and_fake_only(prepared_tiny, tmp_path):
    trainer = _trainer(prepared_tiny, tmp_path / "run")
    sizes = []
    forward = trainer.D.forward
    trainer.D.forward = lambda img, seg, *a, **kw: sizes.append(len(img)) or forward(img, seg, *a, **kw)
    for _ in range(14):
        trainer.train_step()
    trainer.feeder.close()
    assert sizes[-2] == 16 and "mismatch_score" not in trainer.read_stats()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["masks.mismatch_share=1.5"], r"mismatch_share must be in \[0, 1\]"),
        (["masks.mismatch_share=0.25", "optim.loss=wgan-gp"], "needs optim.loss 'logistic'"),
        (["masks.mismatch_weight=-1"], "mismatch_weight must be at least 0"),
    ],
)
def test_bad_mismatch_settings_are_refused(overrides, message):
    with pytest.raises(StylesegError, match=message):
        build_config(str(TINY), overrides)
