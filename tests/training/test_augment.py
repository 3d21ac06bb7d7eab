"""ADA: p follows its overfitting statistic both ways, and every geometric operation moves the image
and the mask together (a marked pixel lands where its label lands)."""

import pytest
import torch

from styleseg.config import AugmentConfig
from styleseg.training.augment import AdaController, augment
from styleseg.training.randomness import CounterRandom

GEOMETRY = ("translate", "scale", "rotate", "aniso", "xflip")


def test_p_rises_while_d_is_sure_of_reals_and_falls_when_it_is_not():
    cfg = AugmentConfig(target=0.6, adjust_kimg=1.0, interval=2)
    ada = AdaController(cfg)
    step_size = 16 * 2 / 1000  # global batch x interval / adjust images
    for step in range(20):  # D calls every real real: r_t = 1 > 0.6
        ada.accumulate(torch.full((16, 1), 3.0))
        ada.maybe_adjust(step, 16)
    assert ada.last_rt == 1.0 and ada.p == pytest.approx(10 * step_size)
    for step in range(20, 26):  # D calls most reals fake: r_t = -0.5 < 0.6
        ada.accumulate(torch.tensor([[1.0]] * 4 + [[-1.0]] * 12))
        ada.maybe_adjust(step, 16)
    assert ada.last_rt == -0.5 and ada.p == pytest.approx(7 * step_size)
    for step in range(26, 500):
        ada.accumulate(-torch.ones(16, 1))
        ada.maybe_adjust(step, 16)
    assert ada.p == 0.0  # clamped at zero, never negative


def _marked_pair():
    """A 4-sample batch: a bright 3x3 square in the image where the mask says class 1."""
    img = -torch.ones(4, 3, 24, 16)
    seg = torch.zeros(4, 2, 24, 16)
    seg[:, 0] = 1
    img[:, :, 5:8, 3:6] = 1
    seg[:, 1, 5:8, 3:6], seg[:, 0, 5:8, 3:6] = 1, 0
    return img, seg


@pytest.mark.parametrize("op", GEOMETRY)
def test_each_geometric_operation_moves_image_and_mask_together(op):
    off = {name: 0.0 for name in GEOMETRY + ("brightness", "contrast", "saturation")}
    cfg = AugmentConfig(**{**off, op: 1.0})
    img, seg = _marked_pair()
    out_img, out_seg = augment(img, seg, 1.0, cfg, CounterRandom(3))
    moved = (out_seg[:, 1] - seg[:, 1]).abs().amax((1, 2)) > 0.5
    assert moved.any(), f"{op} left every sample where it was"
    # where the mask now says class 1, the image is bright, and the other way round
    label = out_seg[:, 1] > 0.5
    bright = out_img.mean(1) > 0.0
    agree = (label == bright).float().mean()
    assert agree > 0.97, f"{op}: image and mask parted ({agree:.3f} of pixels agree)"
    # the mask stays a distribution over classes (bilinear weights sum to one)
    torch.testing.assert_close(out_seg.sum(1), torch.ones(4, 24, 16))


def test_colour_operations_leave_the_mask_alone():
    off = {name: 0.0 for name in GEOMETRY}
    cfg = AugmentConfig(**off)
    img, seg = _marked_pair()
    out_img, out_seg = augment(img, seg, 1.0, cfg, CounterRandom(0))
    torch.testing.assert_close(out_seg, seg)  # resampled through the identity: the same mask
    assert (out_img - img).abs().amax() > 0.05
