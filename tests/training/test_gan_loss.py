"""What D sees of masks, a WGAN-GP step, and the EMA's ramp-up."""

import pytest
import torch

from styleseg.data.store import PreparedDataset
from styleseg.training.ema import ema_beta
from styleseg.training.gan_loss import mask_for_d, step_args
from styleseg.training.loop import Trainer
from styleseg.training.losses import gradient_penalty
from styleseg.training.randomness import CounterRandom
from tests.conftest import tiny_config


def test_noise_mode_adds_the_same_noise_to_real_and_fake_masks():
    probs = torch.softmax(torch.randn(2, 5, 6, 4), 1)
    real = mask_for_d(probs, False, "noise", 0.1, CounterRandom(7))
    fake = mask_for_d(probs, True, "noise", 0.1, CounterRandom(7))
    torch.testing.assert_close(real, fake)  # same draw, same noise: nothing tells them apart but the layout
    noise = real - probs
    assert noise.std() == pytest.approx(0.1, rel=0.2) and noise.mean().abs() < 0.02
    assert torch.equal(mask_for_d(probs, True, "noise", 0.0, CounterRandom(7)), probs)
    assert torch.equal(mask_for_d(probs, True, "soft", 0.1, CounterRandom(7)), probs)


def test_straight_through_shows_fakes_one_hot_with_the_softmax_gradient():
    logits = torch.randn(2, 5, 6, 4, requires_grad=True)
    probs = logits.softmax(1)
    hard = mask_for_d(probs, True, "straight_through", 0.1, CounterRandom(0))
    torch.testing.assert_close(
        hard.detach(), torch.nn.functional.one_hot(probs.argmax(1), 5).permute(0, 3, 1, 2).float()
    )
    weights = torch.randn_like(hard)
    (hard * weights).sum().backward(retain_graph=True)
    want = torch.autograd.grad((probs * weights).sum(), logits)[0]
    torch.testing.assert_close(logits.grad, want)
    real = mask_for_d(probs.detach(), False, "straight_through", 0.1, CounterRandom(0))
    assert torch.equal(real, probs.detach())  # real masks pass as they are


def test_wgan_gp_step_penalises_the_gradient_norm_at_interpolates(prepared_tiny, tmp_path):
    cfg = tiny_config("optim.loss=wgan-gp", "optim.gp_weight=10", "augment.enabled=false")
    trainer = Trainer(cfg, PreparedDataset(prepared_tiny), tmp_path, torch.device("cpu"))
    trainer.logger.enabled = False
    st = trainer.growth()
    trainer.grow_to(st)
    args = step_args(cfg, st)
    real_img, real_seg = trainer.real_inputs(st, args.batch)
    calls = []
    D = trainer.nets.D
    trainer.nets.D_ddp = lambda img, seg, **kw: calls.append(img) or D(img, seg, **kw)
    stats, loss = trainer.loss.d_phase(st, args, real_img, real_seg, 0)
    (batch_in,) = calls
    assert len(batch_in) == 3 * args.batch  # reals, fakes and their interpolates in one D call
    real, fake, mixed = batch_in.split(args.batch)
    assert "gp" in stats and "r1" not in stats
    # each interpolate lies on the segment between its real and its fake
    t = ((mixed - fake) / (real - fake)).flatten(1)
    assert (t.std(1) < 1e-4).all() and ((t.mean(1) >= 0) & (t.mean(1) <= 1)).all()
    logits = D(batch_in.detach(), None, **args.d_args).float()
    real_l, fake_l = logits[: args.batch], logits[args.batch : 2 * args.batch]
    mixed_in = batch_in[2 * args.batch :].detach().requires_grad_(True)
    gp = gradient_penalty(D(mixed_in, None, **args.d_args).float(), [mixed_in])
    want = fake_l.mean() - real_l.mean() + 1e-3 * real_l.square().mean() + 10 * gp
    torch.testing.assert_close(loss, want, rtol=1e-4, atol=1e-5)
    trainer.feeder.close()


def test_d_step_asks_augmentation_for_a_second_derivative_on_r1_steps_only(prepared_tiny, tmp_path, monkeypatch):
    """Only R1's reals need augmentation twice differentiable (gathers on CUDA): fakes and non-R1
    steps keep the plain grid_sample."""
    from styleseg.training import gan_loss

    cfg = tiny_config("optim.r1_interval=4", "optim.r1_gamma=1")
    trainer = Trainer(cfg, PreparedDataset(prepared_tiny), tmp_path, torch.device("cpu"))
    trainer.logger.enabled = False
    st = trainer.growth()
    trainer.grow_to(st)
    args = step_args(cfg, st)
    asked, augment = [], gan_loss.augment

    def spy(*a, second_derivative=False, **kw):
        asked.append(second_derivative)
        return augment(*a, second_derivative=second_derivative, **kw)

    monkeypatch.setattr(gan_loss, "augment", spy)
    for step in (0, 1):
        real_img, real_seg = trainer.real_inputs(st, args.batch)
        asked.clear()
        stats, _ = trainer.loss.d_phase(st, args, real_img, real_seg, step)
        assert ("r1" in stats) is (step == 0)
        assert asked[0] is (step == 0) and not any(asked[1:]), (step, asked)  # reals first, then fakes
    trainer.feeder.close()


def test_gradient_penalty_is_zero_for_a_unit_gradient_and_grows_with_the_norm():
    x = torch.randn(4, 3, requires_grad=True)
    unit = torch.tensor([0.6, 0.8, 0.0])
    assert gradient_penalty(x @ unit, [x]) < 1e-10
    assert gradient_penalty(x @ (3 * unit), [x]) == pytest.approx(4.0)  # (|g| - 1)^2 = 2^2


def test_ema_half_life_ramps_up_with_the_images_seen():
    # ramp-up caps the half-life at 5 % of the images seen: early on G_ema follows G closely
    early = ema_beta(32, images_seen=1000, half_life_kimg=10, rampup=0.05)
    assert early == pytest.approx(0.5 ** (32 / 50))
    late = ema_beta(32, images_seen=1_000_000, half_life_kimg=10, rampup=0.05)
    assert late == pytest.approx(0.5 ** (32 / 10_000))  # past 200 kimg the configured half-life rules
    assert ema_beta(32, 1000, 10, None) == late
    # over one half-life of images, the old weights keep half their influence
    assert late ** (10_000 / 32) == pytest.approx(0.5)
