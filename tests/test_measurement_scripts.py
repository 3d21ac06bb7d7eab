"""The measurement scripts the docs cite: they run and print figures with known answers."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def run_script(name: str, *args) -> str:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *map(str, args)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def segmenter_run(folder: Path, miou: float, legs: float) -> str:
    folder.mkdir()
    val = {"miou": miou, "iou": {"background": 0.9, "legs": legs}}
    (folder / "segmenter.json").write_text(json.dumps({"val": val}))
    return str(folder)


def test_paired_segmenters_prints_the_mean_paired_difference_and_its_interval(tmp_path):
    base = [segmenter_run(tmp_path / f"a{s}", m, 0.2) for s, m in enumerate((0.40, 0.50, 0.45))]
    regime = [segmenter_run(tmp_path / f"e{s}", m, 0.3) for s, m in enumerate((0.42, 0.53, 0.46))]
    out = run_script("paired-segmenters.py", "--baseline", ",".join(base), "--regime", ",".join(regime))
    # differences +0.02, +0.03, +0.01: mean +0.02, sd 0.01, t(0.975, 2) = 4.303 -> half-width 0.0248
    assert "paired diff +0.020 [-0.005, +0.045] (no clear difference, 3 seeds)" in out
    assert "legs           0.200 -> 0.300  +0.100 [+0.100, +0.100]" in out


def test_fade_heads_reports_both_heads_of_a_fading_checkpoint(checkpoint, tmp_path):
    out = run_script("fade-heads.py", checkpoint, "--seeds", "4", "--picture", tmp_path / "heads.png")
    assert out.startswith(f"{checkpoint}: kimg ") and "logit std old" in out and "follows the new head on" in out
    assert "image std old" in out and "mean colour gap" in out
    h, w = json.loads((checkpoint / "config.json").read_text())["model"]["resolution"]
    picture = np.asarray(Image.open(tmp_path / "heads.png"))
    assert picture.shape == (3 * h, 4 * w, 3)  # old, new, difference; one column per seed


def test_detail_placement_finds_a_step_edge_on_its_mask_boundary(prepared_tiny, checkpoint):
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("detail_placement", REPO / "scripts" / "detail-placement.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    masks = torch.zeros(1, 8, 8, dtype=torch.long)
    masks[..., 4:] = 1
    step = -torch.ones(1, 3, 8, 8)
    step[..., 4:] = 1  # the picture changes where its mask does: all its detail is on the boundary
    on, off, share = script.detail_placement(step, masks)
    assert on > 0.2 and off == 0 and share == 0.25  # columns 3 and 4 of 8
    grain = step.clone()
    grain[..., ::2, 0] += 0.5  # a stripe inside the left region: detail off the boundary
    assert script.detail_placement(grain, masks)[1] > 0
    out = run_script("detail-placement.py", "--data", prepared_tiny, "--n", "4", checkpoint)
    assert out.startswith("2 real validation photos: detail on boundaries ")
    assert f"{checkpoint} (kimg " in out and out.count("ratio") == 2


def test_agreement_gap_splits_the_gap_by_class_and_bounds_it(tmp_path):
    iou = {"background": 0.9, "skirt": 0.5, "footwear": 0.4}
    metrics = {  # footwear: in no generated mask and never predicted, so no agreement score (None)
        "agreement": {"per_class": {"background": 0.9, "skirt": 0.2, "footwear": None}, "miou": 0.55},
        "segmenter": {"val": {"iou": iou, "miou": 0.6}},
        "labels": {
            "class_frequency_real": {"background": 0.9, "skirt": 0.09, "footwear": 0.01},
            "class_frequency_generated": {"background": 0.9, "skirt": 0.1, "footwear": 0.0},
        },
    }
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(metrics))
    out = run_script("agreement-gap.py", path, "--target", "0.85")
    # the recorded means; footwear is never drawn (counts 0): the bound is (0.9 + 0.5) / 3 = 0.467 < 0.51
    assert "footwear         0.01000  0.00000         –    0.400   +0.133" in out
    assert "agreement 0.550, ceiling 0.600, ratio 0.917" in out
    assert "never drawn: footwear" in out
    assert "bound if every drawn class reached the ceiling: 0.467 (below the target)" in out
    assert "ratio over the drawn classes alone: 0.786" in out  # 1.1 / 1.4


def test_step_ops_counts_do_not_grow_with_the_batch_on_accelerator_paths():
    def plain_step_ops(*args) -> int:
        out = run_script("step-ops.py", "--preset", "demo", "--set", "augment.fixed_p=0.2", *args)
        line = next(row for row in out.splitlines() if "plain step:" in row)
        assert "training/randomness.py" in line
        return int(line.split("plain step: ")[1].split(" operations")[0])

    small, large = plain_step_ops("--batch", 4, "--accelerator"), plain_step_ops("--batch", 8, "--accelerator")
    assert small == large > 1000
    # the CPU's per-sample seeding of large draws does grow with the batch
    assert plain_step_ops("--batch", 8) > plain_step_ops("--batch", 4)


def load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), REPO / "scripts" / name)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_image_gap_measures_spectrum_blur_and_batch_norm_statistics(prepared_tiny, checkpoint, tmp_path):
    import torch

    from styleseg.metrics.segmenter import save_segmenter
    from styleseg.metrics.segnet import ResUNet
    from styleseg.options import SegmenterConfig

    script = load_script("image-gap.py")
    # vertical stripes at 0.25 cycles per pixel: all their power in the band [0.25, 0.30)
    x = torch.arange(40, dtype=torch.float32)
    stripes = torch.cos(2 * torch.pi * 0.25 * x).expand(2, 3, 40, 40)
    power = script.radial_power(stripes)
    assert power.argmax() == 5 and power[5] > 1e3 * (power[:5].max() + power[6:].max())
    # the blur keeps a flat picture and smooths stripes
    flat = torch.full((1, 3, 8, 8), 7.0)
    assert torch.allclose(script.gaussian_blur(flat, 1.0), flat)
    assert script.gradient_magnitude(script.gaussian_blur(stripes, 1.0)) < 0.5 * script.gradient_magnitude(stripes)
    # AdaBN: after the re-estimate the running statistics are those of the batches, weights untouched
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.BatchNorm2d(2))
    weight = net[0].weight.clone()
    batches = [torch.randn(4, 3, 5, 5) * 3 + 1 for _ in range(3)]
    script.reestimate_batch_norm(net, batches, torch.autocast("cpu", enabled=False))
    with torch.no_grad():
        feats = torch.cat([net[0](b) for b in batches])
    assert torch.allclose(net[1].running_mean, feats.mean((0, 2, 3)), atol=1e-5)
    assert torch.equal(net[0].weight, weight) and not net.training
    # the whole script on the tiny store, an untrained segmenter as the reader
    cfg = SegmenterConfig(num_classes=12, width=8)
    save_segmenter(ResUNet(cfg.num_classes, cfg.width), cfg, tmp_path / "seg", {})
    out = run_script(
        "image-gap.py",
        "--model",
        checkpoint,
        "--data",
        prepared_tiny,
        "--n",
        8,
        "--n-adabn",
        8,
        "--sigmas",
        "0.5",
        tmp_path / "seg",
    )
    assert out.startswith("8 real train photos, 8 generated pairs")
    assert "power real / generated by band" in out and "mean gradient magnitude real" in out
    assert f"{tmp_path / 'seg'}: report mIoU " in out and "AdaBN on 8 unlabelled real photos" in out
    assert "sigma 0.5 " in out


def test_class_mix_figure_shows_each_row_generated_real_and_mixed(prepared_tiny, checkpoint, tmp_path):
    from styleseg.viz import grid, upscale

    out = run_script(
        "class-mix-figure.py",
        "--data",
        prepared_tiny,
        "--generator",
        checkpoint,
        "--out",
        tmp_path / "mix.png",
        "--first",
        0,
    )
    assert out.startswith("wrote ")
    h, w = json.loads((checkpoint / "config.json").read_text())["model"]["resolution"]
    tiles = upscale(grid([np.zeros((h, w, 3), np.uint8)] * 6 * 2, cols=6), 2)  # two rows of six tiles
    picture = np.asarray(Image.open(tmp_path / "mix.png"))
    assert picture.shape[1] == tiles.shape[1] and picture.shape[0] > 3 * tiles.shape[0]  # six rows and a legend
