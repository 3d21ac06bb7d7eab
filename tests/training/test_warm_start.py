"""`styleseg train --init`: a new run from a trained generator (exported file or checkpoint), with the
discriminator where the source has one, and a fresh D trained alone first where it has none."""

import json

import pytest
import torch
from safetensors.torch import load_file

from styleseg.cli.main import main
from styleseg.config import ConfigError, config_from_json
from styleseg.data.prepare import prepare_dataset
from styleseg.data.store import PreparedDataset
from styleseg.models.discriminator import Discriminator
from styleseg.models.generator import Generator
from styleseg.models.layers import downsample2, upsample2, upsample2_smooth
from styleseg.models.load import load_generator
from styleseg.models.weights import list_checkpoints
from styleseg.models.zoo import load_exported, load_exported_for_training
from styleseg.training.checkpoint import load_state
from styleseg.training.loop import Trainer
from styleseg.training.warm_start import apply_warm_start, read_warm_start, warm_start_config
from tests.conftest import TINY


def export(ckpt, path, *extra):
    assert main(["models", "export", "--ckpt", str(ckpt), "--out", str(path), "--name", "t", "--fp32", *extra]) == 0
    return path


def init_run(data, source, out, *extra):
    argv = ["train", "--data", str(data), "--out", str(out), "--init", str(source), "--no-progress", *extra]
    return main(argv)


def final_checkpoint(out):
    (run,) = out.iterdir()
    return run, list_checkpoints(run / "checkpoints")[-1]


def test_export_with_discriminator_round_trips(checkpoint, tmp_path):
    plain = export(checkpoint, tmp_path / "g.safetensors")
    full = export(checkpoint, tmp_path / "gd.safetensors", "--with-discriminator")
    assert load_exported_for_training(plain, torch.device("cpu"))[1:] == (None, None)
    _, d_state, ada_p = load_exported_for_training(full, torch.device("cpu"))
    want = load_file(checkpoint / "D.safetensors")
    assert set(d_state) == set(want) and all(torch.equal(d_state[k], want[k]) for k in want)
    assert ada_p == load_state(checkpoint / "state.pt")["ada"]["p"]
    # the generator reads the same from either file
    a, b = load_exported(plain, torch.device("cpu")).G.state_dict(), load_exported(full, torch.device("cpu")).G
    assert all(torch.equal(b.state_dict()[k], v) for k, v in a.items())
    assert full.stat().st_size > 1.5 * plain.stat().st_size


def test_fresh_discriminator_trains_alone_first_and_the_generator_is_kept(prepared_tiny, checkpoint, tmp_path):
    source = export(checkpoint, tmp_path / "g.safetensors")
    start = load_file(checkpoint / "G_ema.safetensors")
    # 10 steps of batch 8 after kimg 0.32, all of them D alone: G and G_ema must be the source's
    assert init_run(prepared_tiny, source, tmp_path / "a", "--set", "schedule.total_kimg=0.4") == 0
    run, ckpt = final_checkpoint(tmp_path / "a")
    assert ckpt.name == "ckpt-000000400"
    info = json.loads((run / "run.json").read_text())["initialised_from"]
    assert info["kimg"] == pytest.approx(0.32) and info["discriminator"] is False and info["d_only_kimg"] == 5
    for name in ("G", "G_ema"):
        got = load_file(ckpt / f"{name}.safetensors")
        assert all(torch.equal(got[k], v) for k, v in start.items()), f"{name} changed while D trained alone"
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss_D" in r]
    assert steps and all("loss_G" not in r for r in steps)
    # no growth event re-ran on the grown networks
    assert not [r for r in records if r.get("kind") in ("resolution", "segmentation", "class-split")]

    # with D alone for 0.04 kimg (5 steps), the generator trains in the other 5
    assert (
        init_run(prepared_tiny, source, tmp_path / "b", "--set", "schedule.total_kimg=0.4", "--d-only-kimg", "0.04")
        == 0
    )
    run, ckpt = final_checkpoint(tmp_path / "b")
    got = load_file(ckpt / "G.safetensors")
    assert any(not torch.equal(got[k], v) for k, v in start.items())
    steps = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [("loss_G" in r) for r in steps if "loss_D" in r] == [False, True]


def test_checkpoint_source_brings_its_discriminator(prepared_tiny, checkpoint, tmp_path):
    warm = read_warm_start(str(checkpoint))
    want = load_file(checkpoint / "D.safetensors")
    assert all(torch.equal(warm.discriminator[k], v) for k, v in want.items())
    assert init_run(prepared_tiny, checkpoint, tmp_path / "r", "--set", "schedule.total_kimg=0.336") == 0
    run, _ = final_checkpoint(tmp_path / "r")
    info = json.loads((run / "run.json").read_text())["initialised_from"]
    assert info["discriminator"] is True and info["d_only_kimg"] == 0


def test_init_refuses_what_does_not_fit(prepared_tiny, checkpoint, tmp_path, capsys):
    source = export(checkpoint, tmp_path / "g.safetensors")
    assert init_run(prepared_tiny, source, tmp_path / "a", "--set", "model.w_dim=8") == 2
    assert "g.safetensors: model config differs from the source's in model.w_dim" in capsys.readouterr().err
    assert init_run(prepared_tiny, source, tmp_path / "b", "--preset", "demo") == 2
    assert "differs from the source's in model.resolution" not in capsys.readouterr().err
    assert init_run(prepared_tiny, source, tmp_path / "b2", "--resume", "auto") == 2
    assert "give one of them" in capsys.readouterr().err
    assert init_run(prepared_tiny, source, tmp_path / "b3", "--set", "model.resolution=[12,8]") == 2
    assert "a model can grow, not shrink" in capsys.readouterr().err
    # a schedule under which the source would not yet be grown
    assert init_run(prepared_tiny, source, tmp_path / "c", "--set", "schedule.class_split_kimg=[0.16,0.5]") == 2
    assert "but this run's schedule gives" in capsys.readouterr().err
    assert init_run(prepared_tiny, tmp_path / "missing.safetensors", tmp_path / "d") == 2
    assert "missing.safetensors: model file not found" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").glob("*/checkpoints/ckpt-*"))


@pytest.fixture(scope="module")
def prepared_tiny_x2(prepared_tiny, tmp_path_factory):
    """The tiny CCP store's source prepared again at twice the resolution (48x32)."""
    out = tmp_path_factory.mktemp("prep48") / "prepared"
    prepare_dataset(prepared_tiny.parent / "ccp", out, (48, 32), "ccp-12", workers=1)
    return out


def test_growing_a_trained_model_adds_a_stage_that_fades_in_from_its_output(
    prepared_tiny_x2,
    checkpoint,
    tmp_path,
):
    """--init with a larger resolution: the source's stages keep their weights (G, G_ema, D, ADA p);
    at the growth instant G's output is the source's up-sampled and D's score of an up-sampled pair
    is the source D's score of the pair, for image and mask alike."""
    warm = read_warm_start(str(checkpoint))
    cfg = warm_start_config(warm, None, ["model.resolution=[48,32]"], 0.0)
    assert cfg.model.num_stages == warm.config.model.num_stages + 1
    assert cfg.schedule.stage_start_kimg[-1] == pytest.approx(warm.kimg)  # the new stage starts where it stopped
    # the source's stages fade as they did there, the added one over this config's fade_kimg
    longer = warm_start_config(warm, None, ["model.resolution=[48,32]", "schedule.fade_kimg=0.07"], 0.0).schedule
    source = warm.config.schedule
    assert longer.stage_fade_kimg == [source.fade_kimg] * (warm.config.model.num_stages - 1) != [0.07]
    assert longer.fade_of(warm.config.model.num_stages) == 0.07
    data = PreparedDataset(prepared_tiny_x2)
    (tmp_path / "run").mkdir()
    trainer = Trainer(cfg, data, tmp_path / "run", torch.device("cpu"))
    apply_warm_start(trainer, warm)
    st = trainer.growth()
    assert (st.stage, st.alpha, st.seg_level) == (4, 0.0, 2)
    assert trainer.ada.p == warm.ada_p
    source = load_generator(checkpoint, torch.device("cpu")).G
    source_D = Discriminator(
        warm.config.model, trainer.nets.D.level_sizes, pair_head=trainer.nets.D.final.has_pair_head
    )
    source_D.load_state_dict(warm.discriminator)
    for name, tensor in source.state_dict().items():
        assert torch.equal(trainer.nets.G_ema.state_dict()[name], tensor), name

    gen = torch.Generator().manual_seed(3)
    z = torch.randn(4, cfg.model.z_dim, generator=gen)
    noise = trainer.nets.G.make_noise(4, 4, generator=gen)
    with torch.no_grad():
        before = source(z, 3, 1.0, 2, noise=noise[:8])
        after = trainer.nets.G_ema(z, 4, 0.0, 2, noise=noise)
        torch.testing.assert_close(after.img, upsample2(before.img))
        torch.testing.assert_close(after.seg.softmax(1), upsample2(before.seg).softmax(1))  # as probabilities
        probs = before.seg.softmax(1)
        d_args = dict(seg_level=2, seg_alpha=1.0, mbstd_group=4)
        d_before = source_D(before.img, probs, 3, 1.0, **d_args)
        d_after = trainer.nets.D(upsample2(before.img), upsample2(probs), 4, 0.0, **d_args)
        torch.testing.assert_close(d_after, d_before)
        # the new stage is really there: once faded in, the output is no longer the up-sampled one
        faded = trainer.nets.G_ema(z, 4, 1.0, 2, noise=noise)
        assert not torch.allclose(faded.img, upsample2(before.img), atol=1e-3)


def test_grown_run_logs_the_new_stage_at_the_sources_kimg(prepared_tiny_x2, checkpoint, tmp_path):
    out = tmp_path / "g"
    extra = ["--set", "model.resolution=[48,32]", "--set", "schedule.total_kimg=0.344"]
    assert init_run(prepared_tiny_x2, checkpoint, out, *extra) == 0
    run, ckpt = final_checkpoint(out)
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["resolution"] == [48, 32] and config["schedule"]["stage_start_kimg"][-1] == 0.32
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    events = [(r["kind"], r["kimg"], r["detail"]) for r in records if r.get("event") == "growth"]
    assert events == [("resolution", 0.32, "48x32 fades in")]
    steps = [r for r in records if "loss_D" in r]
    assert steps[-1]["resolution"] == 48 and 0 < steps[-1]["alpha"] < 1 and "loss_G" in steps[-1]
    assert json.loads((ckpt / "meta.json").read_text())["growth"]["stage"] == 4


def test_an_inherited_rgb_head_starts_as_the_previous_stages(prepared_tiny_x2, checkpoint, tmp_path):
    """model.inherit_rgb_head: at the growth event the new stage's RGB projection becomes the previous
    stage's, in G and G_ema; the mask heads keep their small start, and the growth instant stays
    function-preserving (alpha 0)."""
    warm = read_warm_start(str(checkpoint))
    cfg = warm_start_config(warm, None, ["model.resolution=[48,32]", "model.inherit_rgb_head=true"], 0.0)
    (tmp_path / "run").mkdir()
    trainer = Trainer(cfg, PreparedDataset(prepared_tiny_x2), tmp_path / "run", torch.device("cpu"))
    apply_warm_start(trainer, warm)
    G = trainer.nets.G_ema
    fresh_seg = [conv.effective_weight.clone() for conv in G.heads[4].seg]
    z = torch.randn(2, cfg.model.z_dim, generator=torch.Generator().manual_seed(1))
    noise = G.make_noise(2, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = G(z, 4, 0.0, 2, noise=noise)
    assert not torch.allclose(G.heads[4].rgb.bias, G.heads[3].rgb.bias)
    trainer.grow_to(trainer.growth())
    for net in (trainer.nets.G, G):
        old, new = net.heads[3].rgb, net.heads[4].rgb
        torch.testing.assert_close(new.bias, old.bias)
        torch.testing.assert_close(new.effective_weight, old.effective_weight)
    for conv, start in zip(G.heads[4].seg, fresh_seg):
        assert torch.equal(conv.effective_weight, start)
    with torch.no_grad():
        after = G(z, 4, 0.0, 2, noise=noise)
    torch.testing.assert_close(after.img, before.img)


def test_a_residual_stage_grown_onto_a_trained_model_starts_as_its_output_smoothly_up_sampled(
    prepared_tiny_x2, checkpoint, tmp_path
):
    """model.residual_heads_from and residual_d_inputs_from on the added stage: just after the growth
    event (alpha 0) the grown G_ema's image and logits are the source's, bilinearly up-sampled, and D
    judges the pair as the source's D judges it down-sampled; the source's stages may not become
    residual."""
    warm = read_warm_start(str(checkpoint))
    with pytest.raises(ConfigError, match="source's trained stage 3"):
        warm_start_config(warm, None, ["model.resolution=[48,32]", "model.residual_heads_from=3"], 0.0)
    with pytest.raises(ConfigError, match="residual_d_inputs_from 3 would change"):
        warm_start_config(warm, None, ["model.resolution=[48,32]", "model.residual_d_inputs_from=3"], 0.0)
    residual = ["model.residual_heads_from=4", "model.residual_d_inputs_from=4"]
    cfg = warm_start_config(warm, None, ["model.resolution=[48,32]", *residual], 0.0)
    (tmp_path / "run").mkdir()
    trainer = Trainer(cfg, PreparedDataset(prepared_tiny_x2), tmp_path / "run", torch.device("cpu"))
    apply_warm_start(trainer, warm)
    trainer.grow_to(trainer.growth())
    source = load_generator(checkpoint, torch.device("cpu")).G
    G = trainer.nets.G_ema
    z = torch.randn(2, cfg.model.z_dim, generator=torch.Generator().manual_seed(1))
    noise = G.make_noise(2, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = source(z, 3, 1.0, 2, noise=noise[:8])
        after = G(z, 4, 0.0, 2, noise=noise)
    torch.testing.assert_close(after.img, upsample2_smooth(before.img))
    torch.testing.assert_close(after.seg, upsample2_smooth(before.seg))
    D, seg = trainer.nets.D, after.seg.softmax(1)
    with torch.no_grad():
        judged_below = D(downsample2(after.img), downsample2(seg), 3, 1.0, 2, 1.0)
        torch.testing.assert_close(D(after.img, seg, 4, 0.0, 2, 1.0), judged_below)
        assert not torch.allclose(D(after.img, seg, 4, 1.0, 2, 1.0), judged_below)


def test_a_frozen_source_keeps_its_weights_while_the_added_stage_trains(prepared_tiny_x2, checkpoint, tmp_path):
    """optim.freeze_g_below_stage: after a few steps of a grown run, G's mapping network and the
    source's stages are the source's, bit for bit, while the added stage has moved."""
    out = tmp_path / "f"
    extra = ["--set", "model.resolution=[48,32]", "--set", "schedule.total_kimg=0.344"]
    assert init_run(prepared_tiny_x2, checkpoint, out, *extra, "--set", "optim.freeze_g_below_stage=4") == 0
    _, ckpt = final_checkpoint(out)
    # G and G_ema both start from the source's G_ema
    source, grown = load_file(checkpoint / "G_ema.safetensors"), load_file(ckpt / "G.safetensors")
    for name, tensor in source.items():
        assert name == "w_avg" or torch.equal(grown[name], tensor), name  # w_avg is tracked, not trained
    added = [name for name in grown if name not in source]
    assert added and all(name.startswith(("blocks.4.", "heads.4.")) for name in added)
    run = ckpt.parent.parent
    cfg = config_from_json(json.loads((run / "config.json").read_text()))
    torch.manual_seed(cfg.seed)  # as build_networks makes the initial weights
    start = Generator(cfg.model, load_generator(checkpoint, torch.device("cpu")).G.level_sizes).state_dict()
    assert any(not torch.equal(grown[name], start[name]) for name in added)
    # without the option the source's stages train too (the check above can fail)
    assert init_run(prepared_tiny_x2, checkpoint, tmp_path / "u", *extra) == 0
    unfrozen = load_file(final_checkpoint(tmp_path / "u")[1] / "G.safetensors")
    assert any(not torch.equal(unfrozen[name], tensor) for name, tensor in source.items())
    # the optimiser holds the same parameters either way: the frozen run resumes unfrozen
    resume = ["train", "--resume", str(run), "--no-progress", "--set", "optim.freeze_g_below_stage=null"]
    assert main([*resume, "--set", "schedule.total_kimg=0.4"]) == 0
    resumed = load_file(final_checkpoint(out)[1] / "G.safetensors")
    assert any(not torch.equal(resumed[name], tensor) for name, tensor in source.items() if name != "w_avg")


def test_freezing_every_stage_a_run_trains_is_refused_with_a_clear_error(prepared_tiny, tmp_path, capsys):
    argv = ["train", "--data", str(prepared_tiny), "--out", str(tmp_path / "r"), "--preset", TINY, "--no-progress"]
    assert main([*argv, "--set", "optim.freeze_g_below_stage=2", "--set", "schedule.total_kimg=0.1"]) != 0
    assert "optim.freeze_g_below_stage is 2 but training is at stage 0" in capsys.readouterr().err
