"""Every shipped preset resolves to a valid config (a preset that combines exclusive options, or
whose lists do not match its stages, fails here rather than at a user's first step)."""

import pytest

from styleseg.config import build_config, preset_names


@pytest.mark.parametrize("name", preset_names())
def test_a_shipped_preset_builds_a_valid_config(name):
    cfg = build_config(name)
    assert cfg.preset == name
    assert cfg.model.num_stages >= 1


def test_viton128_grows_its_added_stage_residually():
    model = build_config("viton128").model
    assert model.residual_heads_from == model.num_stages - 1 and not model.inherit_rgb_head
