"""`styleseg evaluate` and the segmenter commands end to end on tiny data."""

import json

import pytest

from styleseg.cli.main import main
from styleseg.metrics import segmenter as seg_module
from tests.cli.test_generate_explore import checkpoint  # noqa: F401  (fixture)


@pytest.fixture(autouse=True)
def short_segmenter(monkeypatch):
    monkeypatch.setattr(seg_module.SegmenterConfig, "__init__", _short_init)


def _short_init(self, num_classes, width=8, epochs_equiv=1, batch=8, lr=2e-3, seed=0):
    self.num_classes, self.width, self.epochs_equiv, self.batch, self.lr, self.seed = (
        num_classes,
        width,
        epochs_equiv,
        batch,
        lr,
        seed,
    )


@pytest.mark.slow
def test_evaluate_writes_metrics_and_report(checkpoint, prepared_tiny, tmp_path, capsys):  # noqa: F811
    cache = tmp_path / "cache"
    argv = [
        "evaluate",
        "--ckpt",
        str(checkpoint),
        "--data",
        str(prepared_tiny),
        "--out",
        str(tmp_path / "e"),
        "--n",
        "16",
        "--cache",
        str(cache),
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "agreement" in out and "usefulness" in out
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert 0 <= m["agreement"]["miou"] <= 1 and 0 <= m["segmenter"]["val"]["miou"] <= 1
    assert set(m["usefulness"]) == {"real", "generated", "real+generated", "24 real", "24 real+generated"}
    assert m["realism"]["fd_segmenter_image"] >= 0 and 0 <= m["labels"]["js_divergence_bits"] <= 1
    html = (tmp_path / "e" / "report.html").read_text()
    assert "<table>" in html and "data:image/png;base64" in html
    n_cached = len(list(cache.iterdir()))
    assert main(argv) == 0  # the second evaluation reuses every cached segmenter
    assert "reusing cached segmenter" in capsys.readouterr().out
    assert len(list(cache.iterdir())) == n_cached


@pytest.fixture
def trained_segmenter(prepared_tiny, tmp_path):
    out = tmp_path / "s"
    argv = ["segmenter", "train", "--data", str(prepared_tiny), "--out", str(out), "--cache", str(tmp_path / "c")]
    assert main([*argv, "--device", "cpu"]) == 0
    return out


def test_segmenter_train_and_eval(trained_segmenter, prepared_tiny, tmp_path, capsys):
    assert main(["segmenter", "eval", "--ckpt", str(trained_segmenter), "--data", str(prepared_tiny)]) == 0
    assert "val: mIoU" in capsys.readouterr().out
    assert main(["segmenter", "eval", "--ckpt", str(tmp_path), "--data", str(prepared_tiny)]) == 2


def test_in_training_metrics_go_to_the_log(trained_segmenter, prepared_tiny, tmp_path):
    tiny = str(__import__("pathlib").Path(__file__).parents[1] / "training" / "tiny.yaml")
    argv = [
        "train",
        "--data",
        str(prepared_tiny),
        "--out",
        str(tmp_path / "runs"),
        "--preset",
        tiny,
        "--no-progress",
        "--set",
        f"eval_segmenter={trained_segmenter}",
        "--set",
        "eval_samples=16",
    ]
    assert main(argv) == 0
    (run,) = (tmp_path / "runs").iterdir()
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval_agreement_miou" in r]
    assert evals and 0 <= evals[-1]["eval_agreement_miou"] <= 1 and evals[-1]["eval_fd_segmenter"] >= 0


def test_segmenter_eval_reads_styleseg_data(trained_segmenter, prepared_tiny, monkeypatch, capsys):
    monkeypatch.setenv("STYLESEG_DATA", str(prepared_tiny))
    assert main(["segmenter", "eval", "--ckpt", str(trained_segmenter)]) == 0
    assert "val: mIoU" in capsys.readouterr().out
    monkeypatch.delenv("STYLESEG_DATA")
    assert main(["segmenter", "eval", "--ckpt", str(trained_segmenter)]) == 2
    assert "pass --data DIR or set STYLESEG_DATA" in capsys.readouterr().err
