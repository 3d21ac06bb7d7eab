"""Training end to end on tiny data: the run folder, growth events, checkpoints, exact resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from styleseg.cli.main import main
from styleseg.models.weights import list_checkpoints
from tests.conftest import TINY


def train_args(data, out, *extra):
    return ["train", "--data", str(data), "--out", str(out), "--preset", TINY, "--no-progress", *extra]


def test_two_step_smoke_run_writes_a_complete_run_folder(prepared_tiny, tmp_path):
    rc = main(train_args(prepared_tiny, tmp_path / "runs", "--set", "schedule.total_kimg=0.016"))
    assert rc == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name == "00000-tiny"
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["resolution"] == [24, 16] and config["schedule"]["total_kimg"] == 0.016
    info = json.loads((run / "run.json").read_text())
    assert {"styleseg_version", "git", "torch", "device", "command"} <= set(info)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss_D" in r]
    assert steps[-1]["step"] == 2 and steps[-1]["kimg"] == 0.016
    assert {"loss_G", "augment_p", "alpha", "resolution", "classes", "images_per_s"} <= set(steps[-1])
    assert steps[-1]["data_wait_ms"] >= 0  # time the training thread waited for the reader
    assert list((run / "tb").iterdir()), "TensorBoard scalars written"
    assert list((run / "samples").glob("grid-*.png"))
    (ckpt,) = list_checkpoints(run / "checkpoints")
    assert {p.name for p in ckpt.iterdir()} == {
        "G.safetensors",
        "D.safetensors",
        "G_ema.safetensors",
        "state.pt",
        "config.json",
        "meta.json",
    }
    state = torch.load(ckpt / "state.pt", weights_only=True)  # no pickled code
    assert state["images_seen"] == 16


def test_full_schedule_logs_every_growth_event(prepared_tiny, tmp_path):
    assert main(train_args(prepared_tiny, tmp_path / "runs")) == 0
    (run,) = (tmp_path / "runs").iterdir()
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in records if r.get("event") == "growth"]
    assert kinds == ["start", "resolution", "resolution", "segmentation", "resolution", "class-split", "class-split"]
    last = [r for r in records if "loss_D" in r][-1]
    assert last["classes"] == 12 and last["resolution"] == 24
    meta = json.loads((list_checkpoints(run / "checkpoints")[-1] / "meta.json").read_text())
    assert meta["growth"] == {"stage": 3, "alpha": 1.0, "seg_level": 2, "seg_alpha": 1.0}


def test_dry_run_prints_schedule(prepared_tiny, tmp_path, capsys):
    assert main(train_args(prepared_tiny, tmp_path / "runs", "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "class-split   5 -> 12 classes" in out and "segmentation" in out
    assert not (tmp_path / "runs").exists()


def _final_weights(run_root: Path) -> dict:
    (run,) = run_root.iterdir()
    ckpt = list_checkpoints(run / "checkpoints")[-1]
    return {name: load_file(ckpt / f"{name}.safetensors") for name in ("G", "D", "G_ema")}, ckpt.name


def _cli(*args):
    return [sys.executable, "-m", "styleseg", *args]


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(prepared_tiny, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(_cli(*train_args(prepared_tiny, tmp_path / "a")), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(
        _cli(*train_args(prepared_tiny, tmp_path / "b")), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline:  # kill mid-run, after the second checkpoint exists
        ckpts = list((tmp_path / "b").glob("*/checkpoints/ckpt-*"))
        if len(ckpts) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (run,) = (tmp_path / "b").iterdir()
    killed_at = list_checkpoints(run / "checkpoints")[-1].name
    assert killed_at != "ckpt-000000320", "the run must be killed before its end"
    subprocess.run(
        _cli(*train_args(prepared_tiny, tmp_path / "b", "--resume", "auto")), check=True, env=env, capture_output=True
    )
    want, want_name = _final_weights(tmp_path / "a")
    got, got_name = _final_weights(tmp_path / "b")
    assert got_name == want_name == "ckpt-000000320"
    for net in want:
        for key in want[net]:
            assert torch.equal(got[net][key], want[net][key]), f"{net}.{key} differs after resume"


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint(prepared_tiny, tmp_path):
    proc = subprocess.Popen(
        _cli(*train_args(prepared_tiny, tmp_path / "r", "--set", "schedule.total_kimg=50")),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "r").glob("*/checkpoints/ckpt-*")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "stopped by signal" in out
    (run,) = (tmp_path / "r").iterdir()
    assert len(list_checkpoints(run / "checkpoints")) >= 1


def test_non_finite_loss_stops_with_a_clear_message(prepared_tiny, tmp_path, capsys):
    rc = main(train_args(prepared_tiny, tmp_path / "runs", "--set", "optim.lr=[1e38]"))  # weights overflow
    assert rc == 2
    assert "non-finite loss" in capsys.readouterr().err


def test_invalid_learning_rate_is_refused(prepared_tiny, tmp_path, capsys):
    assert main(train_args(prepared_tiny, tmp_path / "runs", "--set", "optim.lr=[.nan]")) == 2
    assert "optim.lr must be positive and finite" in capsys.readouterr().err
    assert main(train_args(prepared_tiny, tmp_path / "runs", "--set", "optim.d_lr_mul=0")) == 2
    assert "optim.d_lr_mul must be positive and finite" in capsys.readouterr().err


def test_dtype_auto_measures_chooses_and_records(prepared_tiny, tmp_path):
    rc = main(train_args(prepared_tiny, tmp_path / "runs", "--set", "schedule.total_kimg=0.016", "--set", "dtype=auto"))
    assert rc == 0
    (run,) = (tmp_path / "runs").iterdir()
    chosen = json.loads((run / "config.json").read_text())["dtype"]
    probe = json.loads((run / "run.json").read_text())["dtype_probe"]
    assert chosen == probe["chosen"] in {"fp32", "bf16"}
    faster = "bf16" if probe["fp32_seconds"] / probe["bf16_seconds"] >= 1.1 else "fp32"
    assert chosen == faster
    assert json.loads((run / "run.json").read_text())["tf32"] is False  # a CPU run: TF32 is a CUDA mode


def test_tf32_is_left_alone_off_cuda():
    from styleseg.training.precision import use_tf32

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    assert use_tf32(torch.device("cpu")) is False
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tf32_on_ampere_and_newer():
    from styleseg.training.precision import use_tf32

    device = torch.device("cuda")
    ampere = torch.cuda.get_device_capability(device)[0] >= 8
    assert use_tf32(device) is ampere and torch.backends.cuda.matmul.allow_tf32 is ampere
    assert use_tf32(device, enabled=False) is False and not torch.backends.cudnn.allow_tf32


def test_training_draws_nothing_from_torch_global_generator(prepared_tiny, tmp_path, monkeypatch):
    # Every number a step uses comes from CounterRandom (a function of seed and step), so a checkpoint
    # needs no generator state for an exact resume. Growth and class-split events included.
    from styleseg.training.loop import Trainer

    original, states = Trainer.train, {}

    def recording_train(self, *args, **kwargs):
        states["before"] = torch.get_rng_state()
        code = original(self, *args, **kwargs)
        states["after"] = torch.get_rng_state()
        return code

    monkeypatch.setattr(Trainer, "train", recording_train)
    assert main(train_args(prepared_tiny, tmp_path / "runs")) == 0
    (run,) = (tmp_path / "runs").iterdir()
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    kinds = {r["kind"] for r in records if r.get("event") == "growth"}
    assert {"resolution", "segmentation", "class-split"} <= kinds, kinds
    assert torch.equal(states["before"], states["after"])


@pytest.mark.slow
def test_a_names_only_folder_prepares_and_trains_through_its_growth_events_without_a_preset(tmp_path, capsys):
    """What a new user does: photos, masks and a list of class names; prepare, then train, no options."""
    from tests.conftest import make_paired

    raw = make_paired(tmp_path / "mine", 10, size=(36, 24))
    (raw / "classes.json").write_text(json.dumps(["background", "person", "bag"]))  # names only
    assert main(["prepare", "--data", str(raw), "--out", str(tmp_path / "p")]) == 0
    assert "resolution 24x16" in capsys.readouterr().out  # 3:2 photos, no taller than 36 pixels
    assert main(["train", "--data", str(tmp_path / "p"), "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "no --preset: a recipe derived from" in out
    (run,) = (tmp_path / "r").iterdir()
    config = json.loads((run / "config.json").read_text())
    assert config["preset"] == "auto" and config["model"]["resolution"] == [24, 16]
    assert config["schedule"]["class_split_kimg"] == []  # a names-only class map has no coarse levels
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in records if r.get("event") == "growth"]
    assert kinds[0] == "start" and sorted(kinds[1:]) == ["resolution"] * 3 + ["segmentation"]  # 24x16: 4 stages
    assert records[-1]["kimg"] == pytest.approx(config["schedule"]["total_kimg"], abs=0.05)


def test_the_derived_recipe_leaves_the_matching_aware_discriminator_off():
    """From the first step on a few hundred photos it collapsed G to one person; it is a late fine-tune."""
    from styleseg.config import data_recipe

    assert data_recipe((64, 48), 1, 451, 451)["masks"]["mismatch_share"] == 0.0
