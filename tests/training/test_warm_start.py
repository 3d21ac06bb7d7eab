"""`styleseg train --init`: a new run from a trained generator (exported file or checkpoint), with the
discriminator where the source has one, and a fresh D trained alone first where it has none."""

import json

import pytest
import torch
from safetensors.torch import load_file

from styleseg.cli.main import main
from styleseg.models.zoo import load_exported, load_exported_for_training
from styleseg.training.checkpoint import list_checkpoints, load_state
from styleseg.training.warm_start import read_warm_start
from tests.cli.test_generate_explore import checkpoint  # noqa: F401  (fixture: tiny run, ends at kimg 0.32)


def export(ckpt, path, *extra):
    assert main(["models", "export", "--ckpt", str(ckpt), "--out", str(path), "--name", "t", "--fp32", *extra]) == 0
    return path


def init_run(data, source, out, *extra):
    argv = ["train", "--data", str(data), "--out", str(out), "--init", str(source), "--no-progress", *extra]
    return main(argv)


def final_checkpoint(out):
    (run,) = out.iterdir()
    return run, list_checkpoints(run / "checkpoints")[-1]


def test_export_with_discriminator_round_trips(checkpoint, tmp_path):  # noqa: F811
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


def test_fresh_discriminator_trains_alone_first_and_the_generator_is_kept(prepared_tiny, checkpoint, tmp_path):  # noqa: F811
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


def test_checkpoint_source_brings_its_discriminator(prepared_tiny, checkpoint, tmp_path):  # noqa: F811
    warm = read_warm_start(str(checkpoint))
    want = load_file(checkpoint / "D.safetensors")
    assert all(torch.equal(warm.discriminator[k], v) for k, v in want.items())
    assert init_run(prepared_tiny, checkpoint, tmp_path / "r", "--set", "schedule.total_kimg=0.336") == 0
    run, _ = final_checkpoint(tmp_path / "r")
    info = json.loads((run / "run.json").read_text())["initialised_from"]
    assert info["discriminator"] is True and info["d_only_kimg"] == 0


def test_init_refuses_what_does_not_fit(prepared_tiny, checkpoint, tmp_path, capsys):  # noqa: F811
    source = export(checkpoint, tmp_path / "g.safetensors")
    assert init_run(prepared_tiny, source, tmp_path / "a", "--set", "model.w_dim=8") == 2
    assert "g.safetensors: its model config differs" in capsys.readouterr().err
    assert init_run(prepared_tiny, source, tmp_path / "b", "--preset", "demo") == 2
    assert "leave out --resume and --preset" in capsys.readouterr().err
    # a schedule under which the source would not yet be grown
    assert init_run(prepared_tiny, source, tmp_path / "c", "--set", "schedule.class_split_kimg=[0.16,0.5]") == 2
    assert "but this run's schedule gives" in capsys.readouterr().err
    assert init_run(prepared_tiny, tmp_path / "missing.safetensors", tmp_path / "d") == 2
    assert "missing.safetensors: model file not found" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").glob("*/checkpoints/ckpt-*"))
