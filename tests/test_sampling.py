"""Sample seeds: every seed below 2**32 keeps the latent it always had, and larger seeds do not fall
back onto the low 32 bits PyTorch's CPU generator keeps."""

import pytest
import torch

from styleseg.models.generator import Generator
from styleseg.sampling import seed_latents, seed_z, torch_seed
from tests.conftest import SIZES, tiny_model_config


@pytest.fixture(scope="module")
def G():
    return Generator(tiny_model_config(), SIZES)


def test_small_seeds_draw_what_torch_draws_for_them(G):
    for seed in (0, 7, 100_000, 2**32 - 1):
        assert torch_seed(seed) == seed
        expected = torch.randn(1, G.cfg.z_dim, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(seed_z(G, [seed], torch.device("cpu")), expected, rtol=0, atol=0)


def test_seeds_that_share_their_low_32_bits_draw_different_latents_and_noise(G):
    seeds = [5, 5 + 2**32, 5 + 2**40, 5 + 7 * 2**48]
    assert len({torch_seed(s) for s in seeds}) == 4 and all(torch_seed(s) < 2**32 for s in seeds)
    z, noise = seed_latents(G, seeds, 1, torch.device("cpu"))
    for i in range(4):
        for j in range(i):
            assert not torch.allclose(z[i], z[j]) and not torch.allclose(noise[0][i], noise[0][j])
    torch.testing.assert_close(z, seed_z(G, seeds, torch.device("cpu")), rtol=0, atol=0)
    # a bijection of the low half for each high half: one step's slots never share a latent
    assert len({torch_seed(2**40 + 3 * 2**32 + i) for i in range(10_000)}) == 10_000
    with pytest.raises(ValueError, match="sample seed"):
        torch_seed(-1)
