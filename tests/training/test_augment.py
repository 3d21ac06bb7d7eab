"""ADA: p follows its overfitting statistic both ways, and every geometric operation moves the image
and the mask together (a marked pixel lands where its label lands)."""

import pytest
import torch
import torch.nn.functional as F

from styleseg.config import AugmentConfig
from styleseg.training.augment import AdaController, affine_theta, augment, sample_bilinear_reflect
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


def test_affine_theta_equals_the_composed_pixel_space_matrices():
    """The written-out theta is to_norm @ F @ T @ S @ R @ A @ from_norm, each a 3x3 matrix in pixels."""
    gen = torch.Generator().manual_seed(0)
    b, h, w = 16, 24, 16
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0).double()
    shift = torch.randn(b, 2, generator=gen).double() * 0.125
    scale, aniso = (torch.exp2(torch.randn(b, generator=gen).double() * 0.2) for _ in range(2))
    angle = (torch.rand(b, generator=gen).double() * 2 - 1) * torch.pi

    def matrix(entries):
        m = torch.eye(3, dtype=torch.float64).repeat(b, 1, 1)
        for (i, j), value in entries.items():
            m[:, i, j] = value
        return m

    c, s = torch.cos(angle), torch.sin(angle)
    composed = (
        matrix({(0, 0): 2 / w, (1, 1): 2 / h})
        @ matrix({(0, 0): flip})
        @ matrix({(0, 2): shift[:, 0] * w, (1, 2): shift[:, 1] * h})
        @ matrix({(0, 0): scale, (1, 1): scale})
        @ matrix({(0, 0): c, (0, 1): -s, (1, 0): s, (1, 1): c})
        @ matrix({(0, 0): aniso, (1, 1): 1 / aniso})
        @ matrix({(0, 0): w / 2, (1, 1): h / 2})
    )
    torch.testing.assert_close(
        affine_theta(flip, shift, scale, angle, aniso, h, w), composed[:, :2], rtol=0, atol=1e-12
    )


def _random_affine_grid(b: int, c: int, h: int, w: int) -> torch.Tensor:
    """Rotations, scales and shifts large enough to sample well outside the image (reflection)."""
    gen = torch.Generator().manual_seed(3)
    angle, scale = torch.rand(b, generator=gen) * 6.28, torch.exp(torch.randn(b, generator=gen) * 0.5)
    theta = torch.zeros(b, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle) * scale, -torch.sin(angle) * scale
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle) * scale, torch.cos(angle) * scale
    theta[:, :, 2] = torch.randn(b, 2, generator=gen) * 1.5
    return F.affine_grid(theta, [b, c, h, w], align_corners=False)


def test_gather_sampler_equals_grid_sample_values_and_second_derivatives():
    """The CUDA path of augment (gathers) samples as grid_sample does, and its double backward (what
    R1 through augmentation takes) equals the CPU grid_sample's."""
    b, c, h, w = 3, 4, 10, 7
    grid = _random_affine_grid(b, c, h, w)
    weights = torch.randn(b, c, h, w, dtype=torch.float64)

    def r1_like(sample) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(b, c, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
        out = sample(x)
        (grad,) = torch.autograd.grad((out.tanh() * weights).sum(), x, create_graph=True)
        (grad2,) = torch.autograd.grad(grad.square().sum(), x)
        return out.detach(), grad2

    def reference(x):
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    out_ref, grad2_ref = r1_like(reference)
    out, grad2 = r1_like(lambda x: sample_bilinear_reflect(x, grid))
    torch.testing.assert_close(out, out_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(grad2, grad2_ref, atol=1e-10, rtol=1e-10)
    assert grad2.abs().max() > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_r1_through_augmentation_differentiates_twice_on_cuda():
    """What lazy R1 does with ADA on: D's gradient w.r.t. un-augmented reals, differentiated again."""
    img, seg = (t.cuda().requires_grad_() for t in _marked_pair())
    out_img, out_seg = augment(img, seg, 1.0, AugmentConfig(), CounterRandom(3, device="cuda"), second_derivative=True)
    score = (out_img.tanh().sum((1, 2, 3)) + out_seg[:, 1].sum((1, 2))).sum()
    grads = torch.autograd.grad(score, [img, seg], create_graph=True)
    sum(g.square().sum() for g in grads).backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
