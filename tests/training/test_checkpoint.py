import json

import pytest
import torch

from styleseg.errors import CheckpointError
from styleseg.models.generator import Generator
from styleseg.models.load import load_generator
from styleseg.models.weights import list_checkpoints, load_weights, resolve_checkpoint
from styleseg.training.checkpoint import save_checkpoint
from tests.conftest import SIZES, tiny_model_config


def _save(folder, name, G, keep=2):
    meta = {
        "kimg": 1.0,
        "growth": {"stage": 3, "alpha": 1.0, "seg_level": 2, "seg_alpha": 1.0},
        "classes": __import__("styleseg.data.classes", fromlist=["x"]).get_class_map("ccp-12").to_json(),
    }
    from styleseg.config import TrainConfig, to_dict

    cfg = TrainConfig(model=tiny_model_config())
    return save_checkpoint(folder, name, {"G": G, "D": G, "G_ema": G}, {"images_seen": 1000}, to_dict(cfg), meta, keep)


def test_round_trip_and_pruning(tmp_path):
    torch.manual_seed(0)
    G = Generator(tiny_model_config(), SIZES)
    for i in range(3):
        _save(tmp_path, f"ckpt-{i:09d}", G)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-000000001", "ckpt-000000002"]
    loaded = load_generator(tmp_path / "ckpt-000000002", torch.device("cpu"))
    for (k, a), b in zip(G.state_dict().items(), loaded.G.state_dict().values()):
        assert torch.equal(a, b), k
    assert loaded.level.num_classes == 12 and loaded.growth.stage == 3
    assert resolve_checkpoint(tmp_path / "ckpt-000000002" / "G_ema.safetensors").name == "ckpt-000000002"


def test_failed_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    G = Generator(tiny_model_config(), SIZES)
    _save(tmp_path, "ckpt-000000001", G)

    def zip_writer_full(*args, **kwargs):  # what torch.save raises on a full disk
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 4096 vs 3988\nmore")

    monkeypatch.setattr(torch, "save", zip_writer_full)
    with pytest.raises(CheckpointError) as info:
        _save(tmp_path, "ckpt-000000002", G)
    message = str(info.value)
    assert "ckpt-000000002.partial/state.pt: could not write the checkpoint (RuntimeError: " in message
    assert "MiB are free" in message and "ckpt-000000001 is intact" in message and "\n" not in message
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-000000001"]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt-000000001"]
    monkeypatch.undo()

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("styleseg.training.checkpoint.save_file", no_space)
    with pytest.raises(CheckpointError, match=r"G\.safetensors: could not write the checkpoint \(OSError"):
        _save(tmp_path, "ckpt-000000003", G)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt-000000001"]


def test_wrong_checkpoint_is_named(tmp_path):
    G = Generator(tiny_model_config(), SIZES)
    path = _save(tmp_path, "ckpt-000000001", G)
    other = Generator(tiny_model_config(channel_max=16, channel_base=16), SIZES)
    with pytest.raises(CheckpointError, match=r"G\.safetensors: '.*' has shape"):
        load_weights(other, path / "G.safetensors")
    (path / "G_ema.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="G_ema.safetensors: corrupt"):
        load_generator(path, torch.device("cpu"))
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        resolve_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        resolve_checkpoint(tmp_path / "empty")
    (path / "config.json").write_text(json.dumps({"model": {"resolution": [7, 5]}}))
    with pytest.raises(CheckpointError, match="its metadata does not describe a styleseg model"):
        load_generator(path, torch.device("cpu"))
