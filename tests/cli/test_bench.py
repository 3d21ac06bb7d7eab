import json
from pathlib import Path

from styleseg.cli.main import main

TINY = str(Path(__file__).parents[1] / "training" / "tiny.yaml")


def test_bench_reports_speed_flops_and_roofline(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--preset", TINY, "--device", "cpu", "--steps", "1", "--batch", "4", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "training" in text and "% of peak" in text
    r = json.loads(out.read_text())
    assert r["train_images_per_s"] > 0 and r["generate_pairs_per_s"] > 0 and r["data_samples_per_s"] > 0
    # the training step (D fwd+bwd twice, R1, G fwd+bwd) costs several generator forwards
    assert r["train_step_gflop_per_image"] > 3 * r["g_forward_gflop_per_image"] > 0
    assert set(r["peak_gflops"]) == {"matmul_fp32", "matmul_bf16", "conv3x3_fp32"}
    assert 0 < r["train_roofline"] < 1.5 and r["peak_rss_mib"] > 0
