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
    # both come from one unrounded speed: images/s rounded to 0.1, s/kimg to 3 significant figures, so
    # their product is 1000 to within those two roundings (a fast machine gives ~1 s/kimg), not exactly
    ips = r["train_images_per_s"]
    assert r["seconds_per_kimg"] * ips == pytest.approx(1000, rel=0.05 / ips + 0.005 + 1e-9)
    assert r["train_images_per_s"] > 0 and r["generate_pairs_per_s"] > 0 and r["data_samples_per_s"] > 0
    # the training step (D fwd+bwd twice, R1, G fwd+bwd) costs several generator forwards
    assert r["train_step_gflop_per_image"] > 3 * r["g_forward_gflop_per_image"] > 0
    assert set(r["peak_gflops"]) == {"matmul_fp32", "matmul_bf16", "conv3x3_fp32"}
    # achieved FLOP/s = FLOPs per image x images per second, and the roofline is that over the peak of
    # the math mode training used (fp32 here)
    assert r["peak_used"] == "matmul_fp32"
    assert r["train_gflops"] == pytest.approx(r["train_step_gflop_per_image"] * r["train_images_per_s"], rel=0.02)
    peak = r["peak_gflops"]["matmul_fp32"]
    if r["train_gflops"] <= peak:
        assert r["train_roofline"] == pytest.approx(r["train_gflops"] / peak, rel=0.02)
    else:
        assert r["train_roofline"] is None
    assert r["peak_rss_mib"] > 0


def test_roofline_ratio_above_one_is_withheld():
    from styleseg.bench import roofline

    assert roofline(50.0, 100.0) == 0.5 and roofline(120.0, 100.0) is None


def test_flops_only_weighs_the_r1_step_by_its_interval_and_estimates_from_the_peak(tmp_path, capsys):
    out = tmp_path / "flops.json"
    assert main(["bench", "--preset", TINY, "--device", "cpu", "--flops-only", "--json", str(out)]) == 0
    assert "one H100 SXM, estimated" in capsys.readouterr().out
    r = json.loads(out.read_text())
    with_r1, plain, interval = r["train_gflop_per_image_r1_step"], r["train_gflop_per_image_plain_step"], 4
    assert r["r1_interval"] == interval and with_r1 > plain > 0  # R1's double backward costs FLOPs
    assert r["train_gflop_per_image"] == pytest.approx((with_r1 + (interval - 1) * plain) / interval, abs=2e-3)
    # images/s = utilisation x published dense peak / FLOPs per image
    est = r["h100_estimate_images_per_s"]
    assert est["bf16_40pct"] == pytest.approx(0.4 * 989e3 / r["train_gflop_per_image"], rel=1e-3)
    assert est["tf32_20pct"] == pytest.approx(0.2 * 494e3 / r["train_gflop_per_image"], rel=1e-3)
