"""Counter-based randomness: rank slices equal one process's global batch, the step is the only
state, and the numbers have the distributions they claim."""

import numpy as np
import pytest
import torch
from scipy import stats

from styleseg.training.randomness import PER_SAMPLE_GENERATOR, CounterRandom, per_sample_threshold


def draws(rand: CounterRandom, step: int, batch: int) -> list:
    rand.start_step(step)
    big = (1, 40, 30)  # past PER_SAMPLE_GENERATOR: on a CPU the generator, seeded per sample
    return [rand.randn(batch, 3, 4), rand.rand(batch, 5), rand.randn(batch, *big)]


@pytest.mark.parametrize("per_sample_from", [None, float("inf")], ids=["cpu-default", "hash-only"])
def test_ranks_draw_their_slice_of_the_single_process_batch(per_sample_from):
    whole = draws(CounterRandom(7, 0, 1, per_sample_from=per_sample_from), step=3, batch=8)
    parts = [draws(CounterRandom(7, r, 4, per_sample_from=per_sample_from), step=3, batch=2) for r in range(4)]
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


@pytest.mark.parametrize(
    "per_sample, per_sample_from",
    [(16, None), (4096, None), (4096, float("inf"))],
    ids=["hashed", "device-generator", "hashed-large"],
)
def test_normals_and_uniforms_have_their_distributions(per_sample, per_sample_from):
    rand = CounterRandom(0, per_sample_from=per_sample_from)
    assert (per_sample >= rand.per_sample_from) == (per_sample_from is None and per_sample == 4096)
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


def test_counters_past_32_bits_do_not_repeat_the_first_numbers():
    # rank 2**20 of a batch of one sample of 4096 numbers starts at counter 2**32: without mixing in
    # the counter's upper bits it would draw rank 0's numbers again
    first, far = (CounterRandom(5, rank, 2**21, per_sample_from=float("inf")) for rank in (0, 2**20))
    for rand in (first, far):
        rand.start_step(1)
    a, b = first.randn(1, 4096), far.randn(1, 4096)
    assert torch.isfinite(b).all() and abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.1
    assert (a != b).float().mean() > 0.99


def test_accelerators_hash_every_draw_and_cpus_seed_large_ones_per_sample():
    assert per_sample_threshold(torch.device("cpu")) == PER_SAMPLE_GENERATOR
    assert CounterRandom(0).per_sample_from == PER_SAMPLE_GENERATOR
    for kind in ("cuda", "mps", "xpu"):
        assert per_sample_threshold(torch.device(kind)) == float("inf")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_a_gpu_draws_on_the_gpu_and_ranks_still_slice_one_batch():
    whole = draws(CounterRandom(3, device="cuda"), 2, 8)
    parts = [draws(CounterRandom(3, r, 2, device="cuda"), 2, 4) for r in range(2)]
    for k, value in enumerate(whole):
        assert value.device.type == "cuda" and torch.equal(torch.cat([p[k] for p in parts]), value)
