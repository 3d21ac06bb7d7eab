"""generate / interpolate / mix / truncation on a tiny trained checkpoint."""

import json

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image

from styleseg.cli.main import main
from styleseg.data.prepare import prepare_dataset
from styleseg.data.store import PreparedDataset
from styleseg.models.load import load_generator
from styleseg.sampling import synthesize, to_class_ids, to_uint8_images, upsample_pair


def generate(ckpt, out, *extra):
    return main(["generate", "--ckpt", str(ckpt), "--out", str(out), "--device", "cpu", *extra])


def test_layout_and_palette_pngs(checkpoint, tmp_path):
    assert generate(checkpoint, tmp_path / "g", "--n", "5", "--overlays", "--seed", "7") == 0
    names = sorted(p.stem for p in (tmp_path / "g" / "masks").iterdir())
    assert names == [f"{s:06d}" for s in range(7, 12)]
    classes = json.loads((tmp_path / "g" / "classes.json").read_text())
    assert [c["name"] for c in classes["classes"]][:3] == ["background", "skin", "hair"]
    mask = Image.open(tmp_path / "g" / "masks" / "000007.png")
    assert mask.mode == "P" and mask.size == (16, 24)
    palette = np.array(mask.getpalette()[: 3 * len(classes["classes"])]).reshape(-1, 3)
    assert palette.tolist() == [c["color"] for c in classes["classes"]]
    assert np.asarray(mask).max() < len(classes["classes"])
    assert Image.open(tmp_path / "g" / "images" / "000007.png").mode == "RGB"
    assert len(list((tmp_path / "g" / "overlays").iterdir())) == 5
    records = [json.loads(line) for line in (tmp_path / "g" / "manifest.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in records] == list(range(7, 12))
    assert all(abs(sum(r["class_fractions"].values()) - 1) < 1e-4 for r in records)


def test_generated_set_prepares_like_a_real_one(checkpoint, tmp_path):
    assert generate(checkpoint, tmp_path / "g", "--n", "12") == 0
    prepare_dataset(tmp_path / "g", tmp_path / "p", (24, 16), None, workers=1)
    ds = PreparedDataset(tmp_path / "p")
    assert len(ds) == 12 and ds.labeled.all()
    original = np.asarray(Image.open(tmp_path / "g" / "masks" / f"{int(ds.ids[0]):06d}.png"))
    assert np.array_equal(ds.masks[0], original)  # same resolution: ids survive the round trip exactly


def test_same_options_give_byte_identical_files(checkpoint, tmp_path):
    for name in ("a", "b"):
        assert generate(checkpoint, tmp_path / name, "--n", "6", "--batch", "4") == 0
    for sub in ("images", "masks"):
        for path in (tmp_path / "a" / sub).iterdir():
            assert path.read_bytes() == (tmp_path / "b" / sub / path.name).read_bytes()
    # one sample regenerated alone: the same pair up to float rounding, which depends on the batch it
    # is computed in (at most one level in an image value; a mask pixel only where two classes tie)
    assert generate(checkpoint, tmp_path / "one", "--n", "1", "--seed", "3") == 0
    for sub, tolerance in (("images", 1), ("masks", 0)):
        alone = np.asarray(Image.open(tmp_path / "one" / sub / "000003.png")).astype(int)
        batch = np.asarray(Image.open(tmp_path / "a" / sub / "000003.png")).astype(int)
        assert np.abs(alone - batch).max() <= tolerance or (sub == "masks" and (alone == batch).mean() > 0.999)


def test_upsample_writes_the_pairs_bilinearly_up_sampled_before_the_argmax(checkpoint, tmp_path, capsys):
    """--upsample 1: image and logits up-sampled bilinearly, then the mask's argmax; a folder made
    without it is not continued with it."""
    assert generate(checkpoint, tmp_path / "g", "--n", "2", "--upsample", "1") == 0
    model = load_generator(checkpoint, torch.device("cpu"))
    st = model.growth
    out = synthesize(model.G, [0, 1], st.stage, st.alpha, st.seg_level)
    img, seg = upsample_pair(out.img, out.seg, 1)
    assert img.shape[-2:] == (48, 32)
    for i in range(2):
        written = np.asarray(Image.open(tmp_path / "g" / "images" / f"{i:06d}.png")).astype(int)
        assert np.abs(written - to_uint8_images(img)[i].astype(int)).max() <= 1
        mask = np.asarray(Image.open(tmp_path / "g" / "masks" / f"{i:06d}.png"))
        assert (mask == to_class_ids(seg)[i]).mean() > 0.999  # a pixel may differ only where classes tie
    # not a nearest-neighbour copy of the model's own pair
    assert not np.array_equal(to_class_ids(seg)[0], to_class_ids(out.seg)[0].repeat(2, 0).repeat(2, 1))
    assert generate(checkpoint, tmp_path / "g", "--n", "3") == 2
    assert "upsample" in capsys.readouterr().err


def test_interrupted_export_continues_without_regenerating(checkpoint, tmp_path):
    assert generate(checkpoint, tmp_path / "g", "--n", "3") == 0
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "g" / "images").iterdir()}
    with open(tmp_path / "g" / "manifest.jsonl", "a") as f:
        f.write('{"name": "000003", "seed": 3, "ps')  # a write cut short by the interruption
    assert generate(checkpoint, tmp_path / "g", "--n", "6") == 0
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "g" / "images").iterdir()}
    assert len(after) == 6 and all(after[k] == v for k, v in before.items())
    assert generate(checkpoint, tmp_path / "fresh", "--n", "6") == 0
    for name in after:
        assert (tmp_path / "g" / "masks" / name).read_bytes() == (tmp_path / "fresh" / "masks" / name).read_bytes()


def test_filters_report_dropped(checkpoint, tmp_path, capsys):
    assert generate(checkpoint, tmp_path / "g", "--n", "4", "--min-person-fraction", "0.05") == 0
    out = capsys.readouterr().out
    records = [json.loads(line) for line in (tmp_path / "g" / "manifest.jsonl").read_text().splitlines()]
    kept = [r for r in records if r["kept"]]
    assert len(kept) == 4 and all(r["person_fraction"] >= 0.05 for r in kept)
    assert f"dropped {len(records) - 4} by the filters" in out
    assert generate(checkpoint, tmp_path / "h", "--n", "2", "--min-person-fraction", "1.0") == 2
    assert "relax --min-person-fraction" in capsys.readouterr().err


def test_confidence_and_agreement_filters(checkpoint, prepared_tiny, tmp_path, capsys):
    assert generate(checkpoint, tmp_path / "all", "--n", "12") == 0
    records = [json.loads(line) for line in (tmp_path / "all" / "manifest.jsonl").read_text().splitlines()]
    conf = sorted(r["confidence"] for r in records)
    model = load_generator(checkpoint, torch.device("cpu"))
    st = model.growth
    out = synthesize(model.G, [records[0]["seed"]], st.stage, st.alpha, st.seg_level)
    mean_top = float(out.seg.softmax(1).amax(1).mean())  # the generator's own mean top probability
    assert records[0]["confidence"] == pytest.approx(mean_top, abs=1e-5)
    cut = conf[len(conf) // 2]  # the median: some samples fall below it
    assert generate(checkpoint, tmp_path / "c", "--n", "3", "--min-confidence", str(cut)) == 0
    kept = [json.loads(x) for x in (tmp_path / "c" / "manifest.jsonl").read_text().splitlines()]
    assert all(r["confidence"] >= cut for r in kept if r["kept"]) and any(not r["kept"] for r in kept)
    assert generate(checkpoint, tmp_path / "a", "--n", "2", "--min-agreement", "0.5") == 2
    assert "--min-agreement needs --filter-segmenter" in capsys.readouterr().err
    seg = tmp_path / "seg"
    argv = ["segmenter", "train", "--data", str(prepared_tiny), "--out", str(seg), "--cache", str(tmp_path / "sc")]
    assert main([*argv, "--max-steps", "10", "--device", "cpu"]) == 0
    filtered = ["--filter-segmenter", str(seg), "--min-agreement"]
    assert generate(checkpoint, tmp_path / "s", "--n", "12", *filtered, "0.0") == 0
    every = [json.loads(x) for x in (tmp_path / "s" / "manifest.jsonl").read_text().splitlines()]
    assert all(r["kept"] for r in every)  # a threshold of 0 drops nothing
    agreements = sorted(r["agreement"] for r in every)
    cut = agreements[len(agreements) // 2]  # half of these samples fall below the median
    assert agreements[0] < cut
    assert generate(checkpoint, tmp_path / "m", "--n", "4", *filtered, str(cut)) == 0
    records = [json.loads(x) for x in (tmp_path / "m" / "manifest.jsonl").read_text().splitlines()]
    assert all(r["agreement"] >= cut for r in records if r["kept"])
    assert any(not r["kept"] for r in records) and all(r["agreement"] <= cut for r in records if not r["kept"])


def test_wrong_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert generate(tmp_path, tmp_path / "g", "--n", "1") == 2
    assert "holds no checkpoint" in capsys.readouterr().err


def test_exploration_commands_write_valid_files(checkpoint, tmp_path):
    out = tmp_path / "x"
    assert main(["interpolate", "--ckpt", str(checkpoint), "--out", str(out), "--seeds", "0,1,2", "--steps", "3"]) == 0
    gif = imageio.mimread(out / "interpolate-z.gif")
    assert len(gif) == 7 and gif[0].shape[1] > 2 * 16
    assert main(["interpolate", "--ckpt", str(checkpoint), "--out", str(out), "--space", "w", "--steps", "2"]) == 0
    assert Image.open(out / "interpolate-w.png").size[0] > 0
    assert main(["mix", "--ckpt", str(checkpoint), "--out", str(out), "--cols", "0,1", "--rows", "5"]) == 0
    assert main(["truncation", "--ckpt", str(checkpoint), "--out", str(out), "--psi", "1,0.5,0"]) == 0
    assert (
        main(["grid", "--ckpt", str(checkpoint), "--out", str(out / "grid.png"), "--seeds", "0-5", "--cols", "3"]) == 0
    )
    assert Image.open(out / "grid.png").size[0] > 3 * 3 * 16
    for name in ("style-mix.png", "truncation.png"):
        assert Image.open(out / name).mode == "RGB"


def _recording_tiles(monkeypatch):
    """Record the styles every picture of an exploration command is drawn from."""
    from styleseg import explore

    seen, tiles = [], explore.Renderer.tiles
    monkeypatch.setattr(explore.Renderer, "tiles", lambda self, ws, noise: seen.append(ws) or tiles(self, ws, noise))
    return seen


def test_truncation_at_psi_zero_draws_every_seed_from_the_average_style(checkpoint, tmp_path, monkeypatch):
    seen = _recording_tiles(monkeypatch)
    assert (
        main(["truncation", "--ckpt", str(checkpoint), "--out", str(tmp_path), "--psi", "1,0", "--seeds", "0,1,2"]) == 0
    )
    raw, zero = seen
    w_avg = load_generator(checkpoint, torch.device("cpu")).G.w_avg
    torch.testing.assert_close(zero, w_avg.expand_as(zero))  # the same styles for every seed
    assert (raw[0] - raw[1]).abs().amax() > 0.1  # while psi 1 keeps the seeds apart


def test_a_style_mix_row_takes_its_coarse_styles_from_the_row_seed(checkpoint, tmp_path, monkeypatch):
    seen = _recording_tiles(monkeypatch)
    assert main(["mix", "--ckpt", str(checkpoint), "--out", str(tmp_path), "--cols", "0,1", "--rows", "5"]) == 0
    source, row, coarse, middle, fine = seen
    layers = 2 * load_generator(checkpoint, torch.device("cpu")).growth.stage + 2  # styles in use: 8
    a, b = layers // 3, 2 * layers // 3  # coarse: layers 0-1, middle 2-4, fine 5-7
    assert torch.equal(coarse[:, :a], row[:, :a]) and torch.equal(coarse[:, a:], source[:, a:])
    assert torch.equal(middle[:, a:b], row[:, a:b]) and torch.equal(middle[:, :a], source[:, :a])
    assert torch.equal(fine[:, b:layers], row[:, b:layers]) and torch.equal(fine[:, :b], source[:, :b])
    assert not torch.equal(row[0], source[0])  # the row seed's styles really differ


@pytest.mark.parametrize(
    "command",
    [
        ["interpolate", "--model", "viton64-lip12"],
        ["generate", "--model", "viton64-lip12"],
        ["evaluate", "--model", "viton64-lip12", "--data", "."],
        ["train", "--data", ".", "--preset", "demo"],
    ],
)
def test_an_out_folder_that_is_a_file_is_refused_before_any_work(tmp_path, capsys, command):
    existing = tmp_path / "existing.gif"
    existing.write_bytes(b"GIF89a kept")
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--out", str(existing)])
    assert exit_info.value.code == 2
    assert f"{existing} is a file; this command writes a folder there" in capsys.readouterr().err
    assert existing.read_bytes() == b"GIF89a kept"


def test_grid_beside_draws_two_models_at_the_same_seeds(checkpoint, tmp_path):
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    assert main(["grid", "--ckpt", str(checkpoint), "--out", str(one), "--seeds", "0-3", "--cols", "2"]) == 0
    argv = ["grid", "--ckpt", str(checkpoint), "--out", str(two), "--seeds", "0-3", "--cols", "2"]
    assert main([*argv, "--beside", str(checkpoint)]) == 0
    a, b = np.asarray(Image.open(one)), np.asarray(Image.open(two))
    assert b.shape[1] > 1.9 * a.shape[1]  # two triplets a seed (the legend below wraps to the width)
    # side by side the tiles are those of the model alone: the same colours, no other
    assert np.array_equal(np.unique(a.reshape(-1, 3), axis=0), np.unique(b.reshape(-1, 3), axis=0))
