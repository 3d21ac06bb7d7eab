"""One D step's lazy-R1 term and one EMA update recomputed by hand: changing the R1 weight
(gamma / 2 x interval) or the EMA rate makes these fail."""

import copy

import torch
import torch.nn.functional as F

from styleseg.config import build_config
from styleseg.data.store import PreparedDataset
from styleseg.training.gan_loss import step_args
from styleseg.training.loop import Trainer
from tests.conftest import TINY


def _trainer(prepared, tmp_path, *overrides):
    cfg = build_config(TINY, ["augment.enabled=false", "optim.r1_gamma=3.0", "optim.r1_interval=4", *overrides])
    trainer = Trainer(cfg, PreparedDataset(prepared), tmp_path, torch.device("cpu"))
    trainer.logger.enabled = False
    return trainer


def _captured_d_step(trainer):
    """Run one D step; return D's input batch, its call arguments and D's gradients at the optimiser step."""
    seen, grads = {}, {}
    D = trainer.nets.D

    def spy(img, seg, **kwargs):
        seen.update(img=img, seg=seg, kwargs=kwargs)
        return D(img, seg, **kwargs)

    def capture():
        grads.update({n: p.grad.detach().clone() for n, p in D.named_parameters() if p.grad is not None})

    trainer.nets.D_ddp = spy
    st = trainer.growth()
    trainer.grow_to(st)
    args = step_args(trainer.cfg, st)
    real_img, real_seg = trainer.real_inputs(st, args.batch)
    trainer.nets.opt_D.zero_grad(set_to_none=True)
    trainer.loss.d_phase(st, args, real_img, real_seg, trainer.step)
    capture()  # D's gradient as the optimiser would see it; the weights stay as they were
    return seen, grads, args.batch


def _by_hand(D, seen, batch, r1_weight):
    real = seen["img"][:batch].detach().requires_grad_(True)
    fake = seen["img"][batch:].detach()
    kwargs = dict(seen["kwargs"])
    pair = kwargs.pop("pair", None)  # per-sample head routing of the whole call: cut it like the inputs
    real_logits = D(real, None, **kwargs, pair=None if pair is None else pair[:batch])
    fake_logits = D(fake, None, **kwargs, pair=None if pair is None else pair[batch:])
    loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
    if r1_weight:
        (g,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
        loss = loss + r1_weight * g.square().flatten(1).sum(1).mean()
    D.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad for n, p in D.named_parameters() if p.grad is not None}


def test_lazy_r1_weight_is_gamma_over_two_times_interval(prepared_tiny, tmp_path):
    trainer = _trainer(prepared_tiny, tmp_path)
    assert trainer.step == 0  # step 0 is an R1 step (every 4th)
    seen, grads, batch = _captured_d_step(trainer)
    expected = _by_hand(trainer.nets.D, seen, batch, r1_weight=3.0 / 2 * 4)
    wrong = _by_hand(trainer.nets.D, seen, batch, r1_weight=3.0 / 2)
    assert grads.keys() == expected.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], expected[name], rtol=1e-4, atol=1e-6)
    assert any(not torch.allclose(grads[n], wrong[n], rtol=1e-3, atol=1e-5) for n in grads)
    trainer.step = 1  # not an R1 step: the plain logistic loss only
    seen, grads, batch = _captured_d_step(trainer)
    plain = _by_hand(trainer.nets.D, seen, batch, r1_weight=0)
    for name in grads:
        torch.testing.assert_close(grads[name], plain[name], rtol=1e-4, atol=1e-6)


def test_one_ema_update_by_hand(prepared_tiny, tmp_path):
    trainer = _trainer(prepared_tiny, tmp_path, "optim.ema_rampup=null", "optim.ema_kimg=0.05")
    before = copy.deepcopy(trainer.nets.G_ema.state_dict())
    trainer.train_step()
    batch = trainer.cfg.optim.batch[0]
    beta = 0.5 ** (batch / 50)  # half-life 0.05 kimg = 50 images
    after_G = trainer.nets.G.state_dict()
    for name, value in trainer.nets.G_ema.state_dict().items():
        if name in dict(trainer.nets.G_ema.named_parameters()):
            torch.testing.assert_close(value, before[name] + (after_G[name] - before[name]) * (1 - beta))


HOST_READS = ("item", "tolist", "__float__", "__int__", "__bool__", "cpu")


def test_a_training_step_never_reads_a_tensor_on_the_host(prepared_tiny, tmp_path, monkeypatch):
    """Statistics and the finiteness check are read at log lines and checkpoints, not inside a step
    (on a GPU each read would stall the step): every Tensor-to-Python conversion raises meanwhile,
    except host-side work that no device waits for: draws of the CPU generator (whether and where to
    mix styles) and Adam's step counters (CPU tensors unless the optimiser is capturable)."""
    trainer = _trainer(prepared_tiny, tmp_path, "augment.enabled=true", "augment.interval=1000")
    originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def host_side(fn):
        def call(*args, **kwargs):
            refusing = {name: getattr(torch.Tensor, name) for name in HOST_READS}
            for name, method in originals.items():
                setattr(torch.Tensor, name, method)
            try:
                return fn(*args, **kwargs)
            finally:
                for name, method in refusing.items():
                    setattr(torch.Tensor, name, method)

        return call

    trainer.nets.opt_G.step, trainer.nets.opt_D.step = (
        host_side(trainer.nets.opt_G.step),
        host_side(trainer.nets.opt_D.step),
    )
    for _ in range(14):  # through the segmentation event (step 12), with R1 steps among them
        with monkeypatch.context() as m:
            for name in HOST_READS:
                m.setattr(torch.Tensor, name, _refuse(name))
            trainer.train_step()
    trainer.feeder.close()
    means = trainer.read_stats()
    assert {"loss_D", "loss_G", "r1", "real_score"} <= means.keys()
    assert trainer.stats.sums == {}  # read and reset


def _refuse(name):
    def refuse(*args, **kwargs):
        raise AssertionError(f"Tensor.{name} called inside a training step")

    return refuse
