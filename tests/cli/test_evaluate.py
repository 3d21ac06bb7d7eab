"""`styleseg evaluate` and the segmenter commands end to end on tiny data."""

import hashlib
import json

import numpy as np
import pytest
import torch

from styleseg.cli.main import main
from styleseg.config import config_from_json
from styleseg.data.store import PreparedDataset
from styleseg.metrics import segmenter as seg_module
from styleseg.metrics.distribution import js_divergence
from styleseg.metrics.segmentation import mean_iou, miou_over, scored_classes
from styleseg.models.load import load_generator
from styleseg.models.weights import list_checkpoints
from styleseg.training.snapshots import Snapshots
from tests.conftest import TINY


@pytest.fixture(autouse=True)
def short_segmenter(monkeypatch):
    monkeypatch.setattr(seg_module.SegmenterConfig, "__init__", _short_init)


_full_init = seg_module.SegmenterConfig.__init__


def _short_init(self, num_classes, **kwargs):
    kwargs.update(width=8, max_steps=12, eval_every=6, batch=8, dtype="fp32")
    _full_init(self, num_classes, **kwargs)


@pytest.mark.slow
def test_evaluate_writes_metrics_and_report(checkpoint, prepared_tiny, tmp_path, capsys):
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
        "--seeds",
        "2",
        "--low-labels",
        "8",
        "--filter-keep",
        "0.5",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "agreement" in out and "usefulness" in out
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert m["evaluate_version"] == 3 and isinstance(m["agreement"]["never_drawn"], list)
    # the figures are what their confusion matrices say
    agreed, ceiling = np.array(m["agreement"]["confusion"]), np.array(m["segmenter"]["val"]["confusion"])
    assert m["agreement"]["miou"] == pytest.approx(miou_over(agreed, scored_classes(ceiling)))
    assert m["segmenter"]["val"]["miou"] == pytest.approx(mean_iou(ceiling))
    assert set(m["usefulness"]) == {
        "real",
        "generated",
        "real+generated",
        "8 real",
        "8 real+generated",
        "generated->8 real",
        "filtered generated",
        "real+filtered generated",
        "8 real+filtered generated",
        "filtered generated->8 real",
    }
    r = m["usefulness"]["8 real+generated"]
    assert r["val"]["n_seeds"] == 2 and len(r["val"]["values"]) == 2 and r["mix"] == 0.5
    d = r["difference"]["val"]
    assert d["baseline"] == "8 real" and d["low"] <= d["mean"] <= d["high"]
    assert m["usefulness"]["filtered generated"]["generated_pairs"] == 8
    held = m["realism"]["held_out"]
    assert held["fd_image"] >= 0 and held["n_real"] == 2 and held["fd_image_dims"] >= 2
    assert m["realism"]["precision_recall"] == {"skipped": "needs more than 3 held-out reals and generated pairs"}
    lb = m["labels"]
    freq_real, freq_gen = (np.array(list(lb[f"class_frequency_{k}"].values())) for k in ("real", "generated"))
    assert lb["js_divergence_bits"] == pytest.approx(js_divergence(freq_real, freq_gen), abs=1e-4)
    html = (tmp_path / "e" / "report.html").read_text()
    assert "<table>" in html and "data:image/png;base64" in html
    assert "classes both score" in html  # the shared-class ratio beside the plain one
    assert "real val mask pixels" in html  # what each class's IoU rests on
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
    assert "val (report half): mIoU" in capsys.readouterr().out
    assert main(["segmenter", "eval", "--ckpt", str(tmp_path), "--data", str(prepared_tiny)]) == 2


def test_in_training_metrics_go_to_the_log(trained_segmenter, prepared_tiny, tmp_path):
    tiny = TINY
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
    assert evals and evals[-1]["kimg"] == 0.32  # the last snapshot: the end of training
    # the logged figures are those of the final G_ema, measured again from its checkpoint
    ckpt = list_checkpoints(run / "checkpoints")[-1]
    model = load_generator(ckpt, torch.device("cpu"))
    cfg = config_from_json(json.loads((ckpt / "config.json").read_text()))
    data = PreparedDataset(prepared_tiny)
    again = Snapshots(cfg, data, data.class_map.levels(), run, torch.device("cpu")).metrics(model.G, model.growth)
    assert evals[-1]["eval_agreement_miou"] == pytest.approx(again["eval_agreement_miou"], abs=1e-4)
    assert evals[-1]["eval_fd_segmenter"] == pytest.approx(again["eval_fd_segmenter"], rel=1e-3)


def test_segmenter_eval_reads_styleseg_data(trained_segmenter, prepared_tiny, monkeypatch, capsys):
    monkeypatch.setenv("STYLESEG_DATA", str(prepared_tiny))
    assert main(["segmenter", "eval", "--ckpt", str(trained_segmenter)]) == 0
    assert "val (report half): mIoU" in capsys.readouterr().out
    monkeypatch.delenv("STYLESEG_DATA")
    assert main(["segmenter", "eval", "--ckpt", str(trained_segmenter)]) == 2
    assert "pass --data DIR or set STYLESEG_DATA" in capsys.readouterr().err


def test_real_subset_fixes_the_real_samples_of_every_seed(prepared_tiny):
    from styleseg.data.store import PreparedDataset
    from styleseg.evaluate import _train_sets
    from styleseg.metrics.usefulness import Regime

    ds = PreparedDataset(prepared_tiny)
    train = ds.indices("train", labeled_only=True)
    subset = train[[5, 1, 3]].tolist()
    regime = Regime("3 real", 3, False)
    picks = [_train_sets(regime, ds, train, None, None, seed, 0.5, subset)[0][0][1] for seed in range(3)]
    assert all(p.tolist() == sorted(subset) for p in picks)
    drawn = [_train_sets(regime, ds, train, None, None, seed, 0.5)[0][0][1].tolist() for seed in range(3)]
    assert len({tuple(d) for d in drawn}) > 1  # without a subset each seed draws its own


def test_segmenter_init_must_match_classes_and_width(trained_segmenter, prepared_tiny, tmp_path, capsys):
    argv = ["segmenter", "train", "--data", str(prepared_tiny), "--cache", str(tmp_path / "c2"), "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "ok"), "--init", str(trained_segmenter)]) == 0
    assert "started from" in capsys.readouterr().out
    meta = json.loads((tmp_path / "ok" / "segmenter.json").read_text())
    assert (
        meta["init"]["folder"] == str(trained_segmenter) and meta["seconds_including_init"] >= meta["budget"]["seconds"]
    )
    weights = (trained_segmenter / "segmenter.safetensors").read_bytes()
    assert meta["init"]["weights_sha256_16"] == hashlib.sha256(weights).hexdigest()[:16]
    cfg = json.loads((trained_segmenter / "segmenter.json").read_text())
    cfg["config"]["width"] = 16
    (trained_segmenter / "segmenter.json").write_text(json.dumps(cfg))
    assert main([*argv, "--out", str(tmp_path / "bad"), "--init", str(trained_segmenter)]) == 2
    assert "width 16 cannot start this training" in capsys.readouterr().err


def test_a_corrupt_segmenter_file_is_named(trained_segmenter, capsys):
    (trained_segmenter / "segmenter.safetensors").write_bytes(b"not a safetensors file")
    assert main(["segmenter", "eval", "--ckpt", str(trained_segmenter), "--data", "unused", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"{trained_segmenter}/segmenter.safetensors: cannot load" in err


def test_evaluate_refuses_a_subset_outside_the_train_split(checkpoint, prepared_tiny, tmp_path, capsys):
    subset = tmp_path / "labels.json"
    subset.write_text(json.dumps({"labeled_indices": [0, 1, 10_000]}))
    argv = ["evaluate", "--ckpt", str(checkpoint), "--data", str(prepared_tiny), "--out", str(tmp_path / "e")]
    assert main([*argv, "--n", "8", "--cache", str(tmp_path / "c"), "--real-subset", str(subset)]) == 2
    assert "must lie in" in capsys.readouterr().err


def test_evaluate_with_a_given_reference_and_no_usefulness(
    checkpoint,
    trained_segmenter,
    prepared_tiny,
    tmp_path,
    capsys,
):
    argv = ["evaluate", "--ckpt", str(checkpoint), "--data", str(prepared_tiny), "--n", "8", "--seeds", "1"]
    argv += ["--regimes", "none", "--cache", str(tmp_path / "c-eval"), "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "e"), "--reference", str(trained_segmenter)]) == 0
    out = capsys.readouterr().out
    assert "given, not trained here" in out and "reference segmenter on the real training split" not in out
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert m["segmenter"]["path"] == str(trained_segmenter)
    # --regimes none: agreement, realism and labels only; no segmenter trained at all
    assert m["usefulness"] == {} and "usefulness: not measured" in out and not (tmp_path / "c-eval").exists()
    assert (tmp_path / "e" / "report.html").exists()
    # the confusion behind the agreement figure is kept: rows the generated masks' classes, 8 pairs' pixels
    num_classes = len(m["agreement"]["per_class"])
    cm = np.array(m["agreement"]["confusion"])
    pixels = np.prod(np.load(tmp_path / "e" / "generated-prepared" / "masks.npy").shape)
    assert cm.shape == (num_classes, num_classes) and cm.sum() == pixels
    assert np.array(m["segmenter"]["val"]["confusion"]).sum() > 0
    assert ("read otherwise than real masks" in out) == bool(m["agreement"]["excess_confusions"])
    interval = m["agreement"]["interval"]
    assert interval["miou"][0] <= interval["miou"][1] and interval["ceiling"][0] <= interval["ceiling"][1]
    assert "bootstrap intervals (1000 resamples" in out
    # the ceiling is measured here, on this dataset, and is what `segmenter eval` prints for it
    assert main(["segmenter", "eval", "--ckpt", str(trained_segmenter), "--data", str(prepared_tiny)]) == 0
    assert f"mIoU {m['segmenter']['val']['miou']:.3f}" in capsys.readouterr().out

    # another block of generator seeds: new pairs in the same folder (the old ones are not reused)
    first = np.load(tmp_path / "e" / "generated-prepared" / "images.npy")
    assert main([*argv, "--out", str(tmp_path / "e"), "--reference", str(trained_segmenter), "--first-seed", "8"]) == 0
    assert "n=8, seeds 8..15" in capsys.readouterr().out
    again = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert again["options"]["first_seed"] == 8 and "seeds 8..15" in (tmp_path / "e" / "report.html").read_text()
    assert not np.array_equal(np.load(tmp_path / "e" / "generated-prepared" / "images.npy"), first)

    meta = json.loads((trained_segmenter / "segmenter.json").read_text())
    meta["config"]["num_classes"] += 1
    (trained_segmenter / "segmenter.json").write_text(json.dumps(meta))
    assert main([*argv, "--out", str(tmp_path / "bad"), "--reference", str(trained_segmenter)]) == 2
    err = capsys.readouterr().err
    assert str(trained_segmenter) in err and not (tmp_path / "bad" / "metrics.json").exists()


def test_evaluate_trains_every_segmenter_with_the_sampling_and_averaging_asked_for(
    checkpoint,
    prepared_tiny,
    tmp_path,
):
    cache = tmp_path / "c"
    argv = ["evaluate", "--ckpt", str(checkpoint), "--data", str(prepared_tiny), "--out", str(tmp_path / "e")]
    argv += ["--n", "8", "--seeds", "1", "--low-labels", "8", "--regimes", "8 real", "--cache", str(cache)]
    assert main([*argv, "--device", "cpu", "--repeat-threshold", "0.3", "--weight-ema", "0.9"]) == 0
    configs = [json.loads(f.read_text())["config"] for f in cache.glob("*/segmenter.json")]
    assert len(configs) == 2  # the reference and the one usefulness segmenter
    assert all(c["repeat_threshold"] == 0.3 and c["weight_ema"] == 0.9 for c in configs)
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert m["options"]["repeat_threshold"] == 0.3 and m["options"]["weight_ema"] == 0.9


def test_report_per_class_table_of_a_metrics_file_without_confusions():
    from styleseg.report import per_class_rows

    m = {"agreement": {"per_class": {"bg": 0.9, "hat": None}}, "segmenter": {"val": {"iou": {"bg": 0.95, "hat": 0.1}}}}
    rows, header = per_class_rows(m, ["bg", "hat"])  # written before the confusions were kept
    assert header == ["class", "agreement IoU", "segmenter IoU on real val"] and rows[1] == ["hat", None, 0.1]
    m["agreement"]["confusion"] = [[30, 2], [0, 0]]
    m["segmenter"]["val"]["confusion"] = [[50, 1], [3, 4]]
    rows, header = per_class_rows(m, ["bg", "hat"])
    assert header[-2:] == ["generated mask pixels", "real val mask pixels"] and rows[1] == ["hat", None, 0.1, 0, 7]


@pytest.mark.slow
def test_evaluate_stream_regimes_pretrain_once_and_compare_with_their_baselines(checkpoint, prepared_tiny, tmp_path):
    cache = tmp_path / "cache"
    argv = ["evaluate", "--ckpt", str(checkpoint), "--data", str(prepared_tiny), "--out", str(tmp_path / "e")]
    argv += ["--n", "8", "--cache", str(cache), "--device", "cpu", "--seeds", "2", "--low-labels", "8", "--stream"]
    argv += ["--regimes", "streamed,8 real+streamed,streamed->8 real", "--truncation-range", "0.5,1"]
    assert main(argv) == 0
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert set(m["usefulness"]) == {"streamed", "real", "8 real", "8 real+streamed", "streamed->8 real"}
    mixed = m["usefulness"]["8 real+streamed"]
    assert mixed["difference"]["val"]["baseline"] == "8 real" and mixed["stream"]["psi_range"] == [0.5, 1.0]
    assert mixed["budgets"][0]["synthetic_per_batch"] == 4  # half of each batch of 8
    # streamed->8 real starts from the 'streamed' segmenter of its seed: trained once per seed, not twice
    metas = [json.loads(p.read_text()) for p in cache.glob("*/segmenter.json")]
    streamed_only = [meta for meta in metas if meta.get("synthetic") and meta["train_samples"] == 0]
    assert len(streamed_only) == 2
    seeds = {meta["synthetic"]["seed"] for meta in streamed_only}
    assert seeds == {0, 1}  # each segmenter seed draws its own pairs
    # on top: each batch keeps its 8 real samples and adds 8 streamed (a half of 16); only that regime retrains
    argv[argv.index("--out") + 1] = str(tmp_path / "top")
    argv[argv.index("--regimes") + 1] = "8 real+streamed"
    assert main([*argv, "--synthetic-on-top"]) == 0
    top = json.loads((tmp_path / "top" / "metrics.json").read_text())["usefulness"]["8 real+streamed"]
    assert (
        top["budgets"][0]["synthetic_per_batch"] == 8
        and top["budgets"][0]["images_seen"] == 16 * top["budgets"][0]["steps"]
    )
    # blind to the classes the tiny generator never draws: recorded in the streamed segmenters' configs
    # and the regime's stream; the real-only baseline is the one cached above (its key has no stream options)
    from styleseg.models.load import load_generator
    from styleseg.options import StreamOptions
    from styleseg.stream import PairStream, undrawn_classes

    cpu = torch.device("cpu")
    stream = PairStream(load_generator(checkpoint, cpu), StreamOptions(), cpu)
    undrawn = undrawn_classes(stream)
    before = set(cache.glob("*/segmenter.json"))
    argv[argv.index("--out") + 1] = str(tmp_path / "blind")
    assert main([*argv, "--synthetic-blind", "auto"]) == 0
    blind = json.loads((tmp_path / "blind" / "metrics.json").read_text())["usefulness"]["8 real+streamed"]
    new = [json.loads(p.read_text())["config"] for p in set(cache.glob("*/segmenter.json")) - before]
    assert undrawn and len(new) == 2 and all(cfg["synthetic_blind"] == undrawn for cfg in new)  # 2 seeds
    assert blind["stream"]["blind"] == [stream.class_map.classes[c] for c in undrawn]


def test_evaluate_upsample_scores_a_smaller_model_at_the_datas_resolution(checkpoint, tmp_path, capsys):
    """The tiny 24x16 model on 48x32 data: refused without --upsample, measured with it."""
    from styleseg.data.classes import get_class_map
    from styleseg.data.store import write_store

    rng = np.random.default_rng(0)
    n = 12
    images = rng.integers(0, 256, (n, 48, 32, 3), dtype=np.uint8)
    masks = rng.integers(0, 12, (n, 48, 32), dtype=np.uint8)
    split = np.array([0] * 8 + [1] * 4, np.uint8)
    data = write_store(tmp_path / "d48", images, masks, get_class_map("ccp-12"), split=split).root
    argv = ["evaluate", "--ckpt", str(checkpoint), "--data", str(data), "--n", "6", "--regimes", "none"]
    argv += ["--cache", str(tmp_path / "c"), "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 2
    assert "(or --upsample" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "b"), "--upsample"]) == 0
    gen = np.load(tmp_path / "b" / "generated-prepared" / "images.npy")
    assert gen.shape[1:3] == (48, 32)  # the pairs were scored at the data's resolution
    assert main([*argv, "--out", str(tmp_path / "s"), "--upsample", "smooth"]) == 0
    smooth = np.load(tmp_path / "s" / "generated-prepared" / "images.npy")
    assert smooth.shape == gen.shape and not np.array_equal(smooth, gen)  # bilinear, not Lanczos
    assert json.loads((tmp_path / "s" / "generated" / "generation.json").read_text())["upsample"] == 1


def test_evaluate_refuses_blind_classes_without_a_stream_or_unknown_and_an_unused_stream_before_writing(
    checkpoint, prepared_tiny, tmp_path, capsys
):
    argv = ["evaluate", "--ckpt", str(checkpoint), "--data", str(prepared_tiny), "--out", str(tmp_path / "e")]
    argv += ["--n", "4", "--cache", str(tmp_path / "c"), "--device", "cpu", "--regimes", "none"]
    assert main([*argv, "--synthetic-blind", "auto"]) == 2
    assert "need --stream" in capsys.readouterr().err
    assert main([*argv, "--stream", "--synthetic-blind", "auto"]) == 2  # a stream no regime would use
    assert "--regimes none measures none" in capsys.readouterr().err
    assert main([*argv, "--stream", "--synthetic-blind", "cape", "--regimes", "streamed"]) == 2
    assert "unknown classes ['cape']" in capsys.readouterr().err
    assert not (tmp_path / "e").exists() and not (tmp_path / "c").exists()  # refused before any work
