"""Counter-based randomness: rank slices equal one process's global batch, the step is the only
state, and the numbers have the distributions they claim."""

import numpy as np
import pytest
import torch
from scipy import stats

from styleseg.training.randomness import PER_SAMPLE_GENERATOR, CounterRandom


def draws(rand: CounterRandom, step: int, batch: int) -> list:
    rand.start_step(step)
    big = (1, 40, 30)  # past PER_SAMPLE_GENERATOR: the device generator, seeded per sample
    return [rand.randn(batch, 3, 4), rand.rand(batch, 5), rand.randn(batch, *big)]


def test_ranks_draw_their_slice_of_the_single_process_batch():
    whole = draws(CounterRandom(7, 0, 1), step=3, batch=8)
    parts = [draws(CounterRandom(7, r, 4), step=3, batch=2) for r in range(4)]
    for k, value in enumerate(whole):
        assert torch.equal(torch.cat([p[k] for p in parts]), value)


def test_the_step_is_the_only_state():
    a, b = CounterRandom(7), CounterRandom(7)
    for step in range(5):  # a has drawn steps 0-4 (a resumed run had not)
        draws(a, step, 4)
    for x, y in zip(draws(a, 5, 4), draws(b, 5, 4)):
        assert torch.equal(x, y)
    assert not torch.equal(draws(a, 6, 4)[0], draws(b, 5, 4)[0])  # another step, other numbers
    assert not torch.equal(draws(CounterRandom(8), 5, 4)[0], draws(b, 5, 4)[0])  # another seed too


@pytest.mark.parametrize("per_sample", [16, 4096], ids=["hashed", "device-generator"])
def test_normals_and_uniforms_have_their_distributions(per_sample):
    assert (per_sample >= PER_SAMPLE_GENERATOR) == (per_sample == 4096)
    rand = CounterRandom(0)
    rand.start_step(11)
    batch = 2**18 // per_sample
    z = rand.randn(batch, per_sample).numpy()
    u = rand.rand(batch, per_sample).numpy()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01 and abs(z).max() < 6
    assert stats.kstest(z.ravel(), "norm").pvalue > 1e-3
    assert stats.kstest(u.ravel(), "uniform").pvalue > 1e-3 and u.min() >= 0 and u.max() < 1
    # neighbours in a sample, the same element across samples, and consecutive draws are uncorrelated
    pairs = ((z[:, :-1], z[:, 1:]), (z[:-1], z[1:]), (z, rand.randn(batch, per_sample).numpy()), (z, u))
    for a, b in pairs:
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.01


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_a_gpu_draws_on_the_gpu_and_ranks_still_slice_one_batch():
    whole = draws(CounterRandom(3, device="cuda"), 2, 8)
    parts = [draws(CounterRandom(3, r, 2, device="cuda"), 2, 4) for r in range(2)]
    for k, value in enumerate(whole):
        assert value.device.type == "cuda" and torch.equal(torch.cat([p[k] for p in parts]), value)
