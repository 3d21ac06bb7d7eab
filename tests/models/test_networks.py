"""Shapes at every stage and alpha, and function preservation at every growth event."""

import numpy as np
import pytest
import torch

from styleseg.config import ConfigError, ScheduleConfig, TrainConfig
from styleseg.models.discriminator import Discriminator
from styleseg.models.generator import Generator
from styleseg.models.growth import (
    added_stages,
    growth_at,
    inherit_rgb_projection,
    merge_probabilities,
    parent_index,
    schedule_events,
    split_discriminator_classes,
    split_generator_classes,
)
from styleseg.models.layers import downsample2, upsample2, upsample2_smooth
from tests.conftest import LEVELS, SIZES, latents, tiny_model_config


def make_nets(**changes):
    torch.manual_seed(0)
    cfg = tiny_model_config(**changes)
    G, D = Generator(cfg, SIZES).double(), Discriminator(cfg, SIZES).double()
    # non-zero noise strengths and biases, so the tests exercise every path
    with torch.no_grad():
        for name, p in list(G.named_parameters()) + list(D.named_parameters()):
            if "noise" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return cfg, G, D


@pytest.fixture
def nets():
    return make_nets()


@pytest.fixture
def residual_nets():
    """Stages 2 and 3 residual: each adds its head's output to the stage below's, up-sampled."""
    return make_nets(residual_heads_from=2)


@pytest.mark.parametrize("stage", range(4))
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("seg_level", [None, 0, 2])
def test_shapes_at_every_stage(nets, stage, alpha, seg_level):
    cfg, G, D = nets
    z, noise = latents(G, 4, stage)
    out = G(z, stage, alpha, seg_level, noise=noise)
    h, w = cfg.stage_shape(stage)
    assert out.img.shape == (4, 3, h, w)
    assert out.ws.shape == (4, 2 * cfg.num_stages, cfg.w_dim)
    if seg_level is None:
        assert out.seg is None
    else:
        assert out.seg.shape == (4, SIZES[seg_level], h, w)
    seg = out.seg.softmax(1) if out.seg is not None else None
    assert D(out.img, seg, stage, alpha, seg_level, 0.5).shape == (4, 1)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_resolution_growth_preserves_function(nets, stage):
    """At alpha 0, G's new output is its previous output up-sampled and D sees the previous input."""
    _, G, D = nets
    z, noise = latents(G, 4, stage)
    before = G(z, stage - 1, 1.0, 1, noise=noise[: 2 * stage])
    after = G(z, stage, 0.0, 1, noise=noise)
    torch.testing.assert_close(after.img, upsample2(before.img))
    # the mask as class probabilities (G's logits while fading are log-probabilities)
    torch.testing.assert_close(after.seg.softmax(1), upsample2(before.seg).softmax(1))
    img, seg = after.img, after.seg.softmax(1)
    d_before = D(downsample2(img), downsample2(seg), stage - 1, 1.0, 1, 1.0)
    d_after = D(img, seg, stage, 0.0, 1, 1.0)
    torch.testing.assert_close(d_after, d_before)


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.9])
def test_a_fading_resolution_mixes_the_two_heads_masks_as_probabilities(nets, alpha):
    """Mid-fade, the mask is the alpha-mix of the old head's (up-sampled) and the new head's class
    probabilities, so a new head with small logits has its share of every pixel; the image is the lerp."""
    _, G, _ = nets
    stage = 3
    with torch.no_grad():
        G.heads[stage - 1].seg[1].weight.mul_(40)  # a trained head's logits dwarf a new one's
    z, noise = latents(G, 4, stage)
    old = upsample2(G(z, stage - 1, 1.0, 1, noise=noise[: 2 * stage]).seg).softmax(1)
    new = G(z, stage, 1.0, 1, noise=noise)
    mixed = G(z, stage, alpha, 1, noise=noise)
    torch.testing.assert_close(mixed.seg.softmax(1), torch.lerp(old, new.seg.softmax(1), alpha))
    old_img = upsample2(G(z, stage - 1, 1.0, 1, noise=noise[: 2 * stage]).img)
    torch.testing.assert_close(mixed.img, torch.lerp(old_img, new.img, alpha))


def test_a_residual_stage_adds_its_head_to_the_stage_below_smoothly_up_sampled(residual_nets):
    """At alpha 0 a residual stage's output (image and logits) is the stage below's, smoothly
    up-sampled, and D's too; mid-fade the new head's share is scaled by alpha; at alpha 1 the stage
    below still contributes (and still learns), which is the point."""
    _, G, D = residual_nets
    z, noise = latents(G, 4, 3)
    below = G(z, 2, 1.0, 1, noise=noise[:6])
    grown = G(z, 3, 0.0, 1, noise=noise)
    torch.testing.assert_close(grown.img, upsample2_smooth(below.img))
    torch.testing.assert_close(grown.seg, upsample2_smooth(below.seg))
    d_before = D(downsample2(grown.img), downsample2(grown.seg.softmax(1)), 2, 1.0, 1, 1.0)
    torch.testing.assert_close(D(grown.img, grown.seg.softmax(1), 3, 0.0, 1, 1.0), d_before)
    half, full = G(z, 3, 0.5, 1, noise=noise), G(z, 3, 1.0, 1, noise=noise)
    torch.testing.assert_close(half.img, (grown.img + full.img) / 2)
    torch.testing.assert_close(half.seg, (grown.seg + full.seg) / 2)
    # stage 2 is itself stage 1's output plus its own head: the chain starts at the stage below the first
    stage1 = G(z, 1, 1.0, 1, noise=noise[:4])
    assert not torch.allclose(below.img, upsample2_smooth(stage1.img))
    torch.testing.assert_close(G(z, 2, 0.0, 1, noise=noise[:6]).img, upsample2_smooth(stage1.img))
    full.img.square().mean().backward()
    assert G.heads[1].rgb.weight.grad.abs().sum() > 0 and G.heads[2].rgb.weight.grad.abs().sum() > 0
    assert G.heads[0].rgb.weight.grad is None  # below the chain's start, no head is used


def test_a_detail_only_residual_stage_adds_its_head_less_the_heads_low_pass():
    """model.residual_detail_only: the added image and logits are the head's output less its own
    low-pass (down-sampled, then up-sampled smoothly), so a flat head output adds nothing."""
    _, G, _ = make_nets(residual_heads_from=3, residual_detail_only=True)
    z, noise = latents(G, 4, 3)
    captured = {}
    G.heads[3].register_forward_hook(lambda module, args, output: captured.update(head=output))
    below = G(z, 2, 1.0, 1, noise=noise[:6])
    grown = G(z, 3, 1.0, 1, noise=noise)
    head = captured["head"]
    detail = head - upsample2_smooth(downsample2(head))
    torch.testing.assert_close(grown.img, upsample2_smooth(below.img) + detail[:, :3])
    torch.testing.assert_close(grown.seg, upsample2_smooth(below.seg) + detail[:, 3:])
    with torch.no_grad():  # a head that emits only its bias (a flat colour, flat logits) adds nothing
        G.heads[3].rgb.weight.zero_()
        G.heads[3].seg[1].weight.zero_()
    flat = G(z, 3, 1.0, 1, noise=noise)
    torch.testing.assert_close(flat.img, upsample2_smooth(below.img))
    torch.testing.assert_close(flat.seg, upsample2_smooth(below.seg))
    assert G.heads[3].rgb.bias.abs().sum() > 0  # (the bias is not zero: the low-pass removed it)


def test_a_residual_d_stage_adds_its_block_to_the_stage_below_reading_the_pair_down_sampled():
    """model.residual_d_inputs_from: at alpha 0 D is the stage below's D on the pair down-sampled;
    at alpha 1 the stage below's input layer still reads the down-sampled pair (and still learns),
    and the block's share is scaled by alpha between."""
    _, G, D = make_nets(residual_d_inputs_from=2)
    z, noise = latents(G, 4, 3)
    out = G(z, 3, 1.0, 1, noise=noise)
    img, seg = out.img, out.seg.softmax(1)
    below = D(downsample2(img), downsample2(seg), 2, 1.0, 1, 1.0)
    torch.testing.assert_close(D(img, seg, 3, 0.0, 1, 1.0), below)
    # stage 2 is residual too: at stage 2 itself, alpha 1 still reads the pair at stage 1
    _, _, plain_D = make_nets()
    plain_D.load_state_dict(D.state_dict())
    small_img, small_seg = downsample2(img), downsample2(seg)
    assert not torch.allclose(below, plain_D(small_img, small_seg, 2, 1.0, 1, 1.0))
    trunk_half = D._trunk(img, seg, 3, 0.5, 1, 1.0, None)[1]
    trunk_full = D._trunk(img, seg, 3, 1.0, 1, 1.0, None)[1]
    trunk_zero = D._trunk(img, seg, 3, 0.0, 1, 1.0, None)[1]
    torch.testing.assert_close(trunk_half, (trunk_zero + trunk_full) / 2)
    D(img, seg, 3, 1.0, 1, 1.0).sum().backward()
    assert D.inputs[2].rgb.weight.grad.abs().sum() > 0 and D.inputs[1].rgb.weight.grad.abs().sum() > 0
    assert D.inputs[0].rgb.weight.grad is None  # below the residual chain, no input layer reads


def test_residual_heads_reject_what_would_break_them():
    with pytest.raises(ConfigError, match="stage 0 has no stage below"):
        tiny_model_config(residual_heads_from=0)
    with pytest.raises(ConfigError, match="exclude each other"):
        tiny_model_config(residual_heads_from=2, inherit_rgb_head=True)
    small = tiny_model_config(resolution=(12, 8))  # stages 0-2
    assert added_stages(small, tiny_model_config(residual_heads_from=3)) == 1
    with pytest.raises(ConfigError, match="source's trained stage 2"):
        added_stages(small, tiny_model_config(residual_heads_from=2))
    with pytest.raises(ConfigError, match="residual_detail_only needs model.residual_heads_from"):
        tiny_model_config(residual_detail_only=True)
    residual_small = tiny_model_config(resolution=(12, 8), residual_heads_from=2)
    with pytest.raises(ConfigError, match="residual_detail_only True would change"):
        added_stages(residual_small, tiny_model_config(residual_heads_from=2, residual_detail_only=True))
    assert added_stages(small, tiny_model_config(residual_heads_from=3, residual_detail_only=True)) == 1
    with pytest.raises(ConfigError, match="residual_d_inputs_from is 0"):
        tiny_model_config(residual_d_inputs_from=0)
    assert added_stages(small, tiny_model_config(residual_d_inputs_from=3)) == 1
    with pytest.raises(ConfigError, match="residual_d_inputs_from 2 .* source's trained stage 2"):
        added_stages(small, tiny_model_config(residual_d_inputs_from=2))


def test_segmentation_growth_preserves_function(nets):
    """Adding mask channels leaves G's images and, at seg_alpha 0, D's output unchanged."""
    _, G, D = nets
    z, noise = latents(G, 4, 2)
    images_only = G(z, 2, 1.0, None, noise=noise)
    with_seg = G(z, 2, 1.0, 0, noise=noise)
    torch.testing.assert_close(with_seg.img, images_only.img)
    d_before = D(images_only.img, None, 2, 1.0, None, 0.0)
    d_after = D(with_seg.img, with_seg.seg.softmax(1), 2, 1.0, 0, 0.0)
    torch.testing.assert_close(d_after, d_before)
    # ...and the mask input does matter once faded in
    assert not torch.allclose(D(with_seg.img, with_seg.seg.softmax(1), 2, 1.0, 0, 1.0), d_before)


@pytest.mark.parametrize("level", [0, 1])
@pytest.mark.parametrize("residual_heads_from", [None, 2])
def test_class_split_preserves_function(level, residual_heads_from):
    """Children start from their parent: merged child probabilities equal the parent probability,
    and D gives the same output for the fine mask as for the coarse one. With residual heads the
    children's logits are sums over heads, and the split must keep that too."""
    _, G, D = make_nets(residual_heads_from=residual_heads_from)
    z, noise = latents(G, 4, 3)
    coarse = G(z, 3, 0.7, level, noise=noise)
    parents = parent_index(LEVELS[level], LEVELS[level + 1])
    split_generator_classes(G, level, level + 1, parents)
    split_discriminator_classes(D, level, level + 1, parents)
    fine = G(z, 3, 0.7, level + 1, noise=noise)
    torch.testing.assert_close(fine.img, coarse.img)
    p_coarse = coarse.seg.softmax(1)
    p_fine = fine.seg.softmax(1)
    torch.testing.assert_close(merge_probabilities(p_fine, parents, SIZES[level]), p_coarse)
    d_coarse = D(coarse.img, p_coarse, 3, 0.7, level, 0.8)
    d_fine = D(fine.img, p_fine, 3, 0.7, level + 1, 0.8)
    torch.testing.assert_close(d_fine, d_coarse)
    # a one-hot real mask at the fine level is judged as its merged coarse mask
    ids = torch.randint(0, SIZES[level + 1], (4, 24, 16))
    onehot_fine = torch.nn.functional.one_hot(ids, SIZES[level + 1]).permute(0, 3, 1, 2).double()
    merged = merge_probabilities(onehot_fine, parents, SIZES[level])
    torch.testing.assert_close(D(fine.img, onehot_fine, 3, 1.0, level + 1), D(fine.img, merged, 3, 1.0, level))


def test_style_mixing_and_truncation(nets):
    _, G, _ = nets
    z, noise = latents(G, 2, 3)
    G.w_avg.copy_(torch.randn(G.cfg.w_dim, dtype=torch.float64))
    ws = G.styles(z, psi=0.0)
    torch.testing.assert_close(ws, G.w_avg.expand_as(ws))
    mix = torch.randn_like(z)
    mixed = G.styles(z, mix_z=mix, mix_cut=3)
    torch.testing.assert_close(mixed[:, :3], G.styles(z)[:, :3])
    torch.testing.assert_close(mixed[:, 3:], G.styles(mix)[:, 3:])
    per_sample = G.styles(z, mix_z=mix, mix_cut=torch.tensor([3, G.num_ws]))  # the second sample mixes nothing
    torch.testing.assert_close(per_sample[0], mixed[0])
    torch.testing.assert_close(per_sample[1], G.styles(z)[1])


def test_truncation_cutoff_truncates_only_the_coarsest_layers():
    cfg = tiny_model_config(truncation_cutoff=3)
    G = Generator(cfg, SIZES).double()
    G.w_avg.copy_(torch.randn(cfg.w_dim, dtype=torch.float64))
    z, _ = latents(G, 2, 3)
    raw, cut = G.styles(z), G.styles(z, psi=0.5)
    torch.testing.assert_close(cut[:, :3], G.w_avg.lerp(raw[:, :3], 0.5))
    torch.testing.assert_close(cut[:, 3:], raw[:, 3:])
    # one psi per sample: each sample truncated by its own
    psis = torch.tensor([0.0, 1.0], dtype=torch.float64)
    per_sample = G.styles(z, psi=psis)
    torch.testing.assert_close(per_sample[0, :3], G.w_avg.expand(3, -1))
    torch.testing.assert_close(per_sample[1], raw[1])


def test_growth_schedule():
    sched = ScheduleConfig(
        stable_kimg=10, fade_kimg=10, seg_start_kimg=25, seg_fade_kimg=10, class_split_kimg=[40, 60], total_kimg=100
    )
    st = growth_at(0, sched, 4, 3)
    assert (st.stage, st.alpha, st.seg_level) == (0, 1.0, None)
    st = growth_at(15, sched, 4, 3)
    assert (st.stage, st.alpha) == (1, 0.5)
    st = growth_at(30, sched, 4, 3)
    assert (st.stage, st.alpha, st.seg_level, st.seg_alpha) == (2, 0.0, 0, 0.5)
    assert growth_at(45, sched, 4, 3).seg_level == 1
    st = growth_at(99, sched, 4, 3)
    assert (st.stage, st.alpha, st.seg_level, st.seg_alpha) == (3, 1.0, 2, 1.0)
    kinds = [e.kind for e in schedule_events(sched, tiny_model_config(), LEVELS)]
    assert kinds == ["resolution", "segmentation", "resolution", "class-split", "resolution", "class-split"]


def late_grown_schedule(**changes) -> ScheduleConfig:
    """A model grown from a trained one: its first stages on a 10-kimg rhythm, the added one at 500."""
    fields = dict(stable_kimg=10, fade_kimg=10, seg_start_kimg=25, class_split_kimg=[40, 60], total_kimg=600)
    return ScheduleConfig(**{**fields, "stage_start_kimg": [10, 30, 500], **changes})


def test_explicit_stage_starts_place_a_grown_stage_late():
    """A model grown from a trained one: its first stages on the regular rhythm, the added one at 500."""
    sched = late_grown_schedule()
    assert sched.stage_starts(4) == [10, 30, 500] and sched.stage_starts(3) == [10, 30]
    assert (growth_at(499, sched, 4, 3).stage, growth_at(499, sched, 4, 3).alpha) == (2, 1.0)
    assert (growth_at(505, sched, 4, 3).stage, growth_at(505, sched, 4, 3).alpha) == (3, 0.5)
    events = [(e.kind, e.kimg) for e in schedule_events(sched, tiny_model_config(), LEVELS) if e.kind == "resolution"]
    assert events == [("resolution", 10), ("resolution", 30), ("resolution", 500)]
    with pytest.raises(ConfigError, match="must increase"):
        ScheduleConfig(stage_start_kimg=[10, 5])
    with pytest.raises(ConfigError, match="stage_start_kimg has 2 entries"):
        TrainConfig(model=tiny_model_config(), schedule=ScheduleConfig(stage_start_kimg=[10, 20]))


def test_a_grown_schedule_keeps_the_fades_of_the_source_stages():
    """schedule.stage_fade_kimg: the listed stages fade over their own length, the rest over fade_kimg."""
    sched = late_grown_schedule(fade_kimg=40, stage_fade_kimg=[10, 10])
    assert growth_at(35, sched, 4, 3).alpha == 0.5 and growth_at(510, sched, 4, 3).alpha == 0.25
    texts = [e.detail for e in schedule_events(sched, tiny_model_config(), LEVELS) if e.kind == "resolution"]
    assert [t.split(" over ")[1] for t in texts] == ["10 kimg", "10 kimg", "40 kimg"]
    with pytest.raises(ConfigError, match="stage_fade_kimg has 4 entries"):
        TrainConfig(model=tiny_model_config(), schedule=ScheduleConfig(stage_fade_kimg=[1, 1, 1, 1]))


def test_added_stages_lets_a_model_grow_but_not_change():
    small = tiny_model_config(resolution=(12, 8))
    assert added_stages(small, tiny_model_config()) == 1
    assert added_stages(small, small) == 0
    with pytest.raises(ConfigError, match="model.z_dim"):
        added_stages(small, tiny_model_config(z_dim=8))
    with pytest.raises(ConfigError, match="grow, not shrink"):
        added_stages(tiny_model_config(), small)
    with pytest.raises(ConfigError, match="channels"):  # a wider new stage is fine, wider old ones are not
        added_stages(small, tiny_model_config(channel_base=64, channel_max=64))
    wide = tiny_model_config(resolution=(12, 8), channel_base=128)  # 32 channels at every stage
    assert tiny_model_config(channel_base=128).channels(3) == 16
    assert added_stages(wide, tiny_model_config(channel_base=128, channel_min=32)) == 1


def test_parent_index_of_ccp12():
    parents = parent_index(LEVELS[0], LEVELS[2])
    assert parents[0] == 0 and np.all(parents[1:] == 1)


@pytest.mark.parametrize("stage", [0, 3])
def test_small_output_heads_start_near_flat_grey(stage):
    """head_init_scale shrinks the initial RGB/logit projections, so a fresh head emits a low-contrast
    image instead of unit-variance colour noise."""
    stds = {}
    for scale in (1.0, 0.1):
        torch.manual_seed(0)
        G = Generator(tiny_model_config(head_init_scale=scale), SIZES)
        z, noise = latents(G, 8, stage)
        out = G(z.float(), stage, 1.0, 2, noise=[n.float() for n in noise])
        stds[scale] = (out.img.std().item(), out.seg.std().item())
    assert stds[1.0][0] > 0.5  # StyleGAN's usual init: saturated noise
    for full, small in zip(stds[1.0], stds[0.1]):
        assert small == pytest.approx(full * 0.1, rel=1e-4)  # a 1x1 conv is linear in its weights


def test_an_inherited_rgb_projection_copies_the_bias_always_and_the_weights_where_the_widths_match(nets):
    cfg, G, _ = nets
    assert cfg.channels(1) != cfg.channels(2) and cfg.channels(2) == cfg.channels(3)
    narrower = G.heads[2].rgb.effective_weight.clone()
    for stage in (2, 3):
        inherit_rgb_projection(G, stage)
        torch.testing.assert_close(G.heads[stage].rgb.bias, G.heads[stage - 1].rgb.bias)
    assert torch.equal(G.heads[2].rgb.effective_weight, narrower)  # 16 -> 8 channels: its own weights
    torch.testing.assert_close(G.heads[3].rgb.effective_weight, G.heads[2].rgb.effective_weight)
