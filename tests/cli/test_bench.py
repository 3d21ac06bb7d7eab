import json

import pytest

from styleseg.cli.main import main
from tests.conftest import TINY


def test_bench_reports_speed_flops_and_roofline(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--preset", TINY, "--device", "cpu", "--steps", "1", "--batch", "4", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "training" in text and "% of matmul_fp32" in text and "s/kimg" in text
    r = json.loads(out.read_text())
    assert r["timed_steps"] == 4  # tiny.yaml's R1 interval: one step asked, one whole interval timed
    # both figures are rounded to 0.1 from one unrounded speed, so they agree to rounding, not exactly
    assert r["seconds_per_kimg"] * r["train_images_per_s"] == pytest.approx(1000, rel=0.01)
    assert r["train_images_per_s"] > 0 and r["generate_pairs_per_s"] > 0 and r["data_samples_per_s"] > 0
    # the training step (D fwd+bwd twice, R1, G fwd+bwd) costs several generator forwards
    assert r["train_step_gflop_per_image"] > 3 * r["g_forward_gflop_per_image"] > 0
    assert set(r["peak_gflops"]) == {"matmul_fp32", "matmul_bf16", "conv3x3_fp32"}
    assert (r["train_roofline"] is None or 0 < r["train_roofline"] <= 1) and r["peak_rss_mib"] > 0


def test_roofline_ratio_above_one_is_withheld():
    from styleseg.bench import roofline

    assert roofline(50.0, 100.0) == 0.5 and roofline(120.0, 100.0) is None
