"""Shipped/exported models: one fp16 file that rebuilds the generator, `--model` wherever `--ckpt`
works, and a hosted model fetched once from a local HTTP server, checked and cached."""

import functools
import hashlib
import http.server
import json
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from styleseg.cli.main import main
from styleseg.errors import CheckpointError
from styleseg.models.load import load_generator
from styleseg.models.registry import fetch_model, registry
from styleseg.models.zoo import export_generator, load_exported
from styleseg.sampling import synthesize


@pytest.fixture
def exported(checkpoint, tmp_path):
    path = tmp_path / "tiny.safetensors"
    assert main(["models", "export", "--ckpt", str(checkpoint), "--out", str(path), "--name", "tiny"]) == 0
    return path


def test_export_round_trip_is_the_same_generator_in_fp16(checkpoint, exported):
    full = load_generator(checkpoint, torch.device("cpu"))
    small = load_exported(exported, torch.device("cpu"))
    assert small.class_map == full.class_map and small.growth == full.growth and small.kimg == full.kimg
    st = full.growth
    a = synthesize(full.G, [0, 1, 2], st.stage, st.alpha, st.seg_level, device=torch.device("cpu"))
    b = synthesize(small.G, [0, 1, 2], st.stage, st.alpha, st.seg_level, device=torch.device("cpu"))
    # fp16 weights, fp32 compute: within 1 % of the image's range
    assert (b.img - a.img).abs().max() <= 0.01 * a.img.abs().max()
    assert (b.seg.argmax(1) == a.seg.argmax(1)).float().mean() > 0.98
    fp32 = sum(v.numel() * 4 for v in full.G.state_dict().values())
    assert exported.stat().st_size < 0.6 * fp32


def test_model_flag_works_in_generate_and_explore(exported, tmp_path):
    assert (
        main(["generate", "--model", str(exported), "--n", "4", "--out", str(tmp_path / "g"), "--device", "cpu"]) == 0
    )
    assert len(list((tmp_path / "g" / "masks").iterdir())) == 4
    assert main(["truncation", "--model", str(exported), "--out", str(tmp_path / "t"), "--seeds", "0,1"]) == 0
    assert main(["generate", "--model", "no-such-model", "--n", "1", "--out", str(tmp_path / "x")]) == 2


def test_hosted_model_is_fetched_checked_and_cached(exported, tmp_path, monkeypatch, capsys):
    www = tmp_path / "www"
    www.mkdir()
    (www / "tiny.safetensors").write_bytes(exported.read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    digest = hashlib.sha256(exported.read_bytes()).hexdigest()
    extra = tmp_path / "models.json"
    extra.write_text(
        json.dumps(
            {
                "hosted-tiny": {"description": "test model", "url": f"{base}/tiny.safetensors", "sha256": digest},
                "bad-sum": {"description": "wrong checksum", "url": f"{base}/tiny.safetensors", "sha256": "0" * 64},
            }
        )
    )
    monkeypatch.setenv("STYLESEG_MODELS", str(extra))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    try:
        assert main(["models"]) == 0
        assert "hosted-tiny" in capsys.readouterr().out
        out = tmp_path / "g"
        assert main(["generate", "--model", "hosted-tiny", "--n", "2", "--out", str(out), "--device", "cpu"]) == 0
        cached = list((tmp_path / "cache" / "styleseg" / "models").glob("hosted-tiny-*.safetensors"))
        assert len(cached) == 1
        with pytest.raises(CheckpointError, match="checksum"):
            fetch_model(registry()["bad-sum"], tmp_path / "cache2")
        assert not any((tmp_path / "cache2").iterdir())  # nothing half-written is left
    finally:
        httpd.shutdown()
    # with the server gone the cached copy still serves
    assert (
        main(["generate", "--model", "hosted-tiny", "--n", "3", "--out", str(tmp_path / "g2"), "--device", "cpu"]) == 0
    )
    Image.open(tmp_path / "g2" / "masks" / "000000.png").load()
    assert np.asarray(Image.open(tmp_path / "g2" / "masks" / "000000.png")).ndim == 2


def test_corrupt_or_foreign_model_file_is_named(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="bad.safetensors: corrupt"):
        load_exported(bad, torch.device("cpu"))
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="not an exported styleseg model"):
        load_exported(tmp_path / "other.safetensors", torch.device("cpu"))


def test_fp32_export_is_exact(checkpoint, tmp_path):
    full = load_generator(checkpoint, torch.device("cpu"))
    path = export_generator(full, tmp_path / "m.safetensors", "m", half=False)
    again = load_exported(path, torch.device("cpu")).G.state_dict()
    for key, value in full.G.state_dict().items():
        assert torch.equal(again[key], value), key


def test_every_shipped_model_loads_and_generates_offline(tmp_path, monkeypatch):
    """The models inside the package: listed, at most 10 MiB each, loadable, and `generate --model`
    writes pairs of the model's classes with no network (a packaged file needs none)."""
    from styleseg.models.registry import model_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    packaged = {name: e for name, e in registry().items() if e.file}
    if not packaged:
        pytest.skip("no model is shipped in this version")
    for name, entry in packaged.items():
        path = model_path(name)
        assert path.stat().st_size <= 10 * 2**20, name
        model = load_exported(path, torch.device("cpu"))
        assert model.level is not None and model.level.num_classes == model.class_map.num_classes
        if entry.card:
            from importlib import resources

            assert resources.files("styleseg.zoo").joinpath(entry.card).is_file()
        out = tmp_path / name
        assert main(["generate", "--model", name, "--n", "8", "--out", str(out), "--device", "cpu"]) == 0
        classes = json.loads((out / "classes.json").read_text())
        assert [c["name"] for c in classes["classes"]] == list(model.class_map.classes)
        assert len(list((out / "masks").iterdir())) == 8


def test_demo_draws_the_shipped_models_grid(tmp_path):
    from styleseg.cli.demo_cmd import shipped_model_grid

    packaged = sorted(name for name, e in registry().items() if e.file)
    if not packaged:
        pytest.skip("no model is shipped in this version")
    path = shipped_model_grid(SimpleNamespace(run_command=main), tmp_path)
    assert path == tmp_path / f"grid-{packaged[0]}.png"
    assert Image.open(path).size[0] > 4 * 3 * 48  # four triplets of 48-pixel-wide tiles, enlarged
