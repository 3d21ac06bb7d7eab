"""`styleseg compare`: differences marked within or beyond the measured spread."""

import json

import pytest

from styleseg.cli.main import main
from styleseg.compare import welch_interval


def _metrics(useful: list[float], kid: float, kid_std: float) -> dict:
    regime = {"name": "real", "real": "all", "generated": False, "finetune": False, "baseline": None}
    mean = sum(useful) / len(useful)
    return {
        "evaluate_version": 2,
        "checkpoint": "ckpt",
        "kimg": 100.0,
        "n": 1000,
        "options": {"seeds": len(useful)},
        "segmenter": {"val": {"miou": 0.7}},
        "agreement": {"miou": 0.6, "ratio_to_ceiling": 0.86},
        "usefulness": {
            "100 real+generated": {
                "regime": regime,
                "generated_pairs": 2000,
                "val": {"mean": mean, "std": 0.01, "values": useful},
            }
        },
        "realism": {
            "held_out": {
                "kid_image": kid,
                "kid_image_std": kid_std,
                "kid_image_mask": kid,
                "kid_image_mask_std": kid_std,
                "fd_image": 1.0,
                "fd_image_mask": 2.0,
            }
        },
        "labels": {
            "js_divergence_bits": 0.004,
            "person_area": {"real": 0.3, "generated": 0.31},
            "person_height": {"real": 0.9, "generated": 0.88},
        },
    }


def test_welch_interval_sees_a_real_difference_and_not_noise():
    assert welch_interval([0.5], [0.6]) is None
    d, low, high = welch_interval([0.50, 0.51, 0.49], [0.60, 0.61, 0.59])
    assert d == pytest.approx(0.10) and low > 0
    d, low, high = welch_interval([0.50, 0.55, 0.45], [0.51, 0.46, 0.54])
    assert low < 0 < high


def test_compare_cli(tmp_path, capsys):
    dirs = []
    for i, (useful, kid) in enumerate(
        [([0.50, 0.51, 0.49], 0.010), ([0.60, 0.61, 0.59], 0.0101), ([0.5, 0.52, 0.48], 0.03)]
    ):
        d = tmp_path / f"e{i}"
        d.mkdir()
        m = _metrics(useful, kid, 0.001)
        if i == 1:  # evaluations since the bootstrap intervals carry them; older ones do not
            m["agreement"]["interval"] = {"miou": [0.58, 0.62], "ratio": [0.8, 0.9], "ceiling": [0.6, 0.8]}
        (d / "metrics.json").write_text(json.dumps(m))
        dirs.append(str(d))
    assert main(["compare", *dirs, "--out", str(tmp_path / "c.html")]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("usefulness: 100 real+generated"))
    assert "beyond spread" in line and "within spread" in line
    agreement_line = next(x for x in out.splitlines() if x.startswith("agreement / ceiling"))
    assert "0.86 " in agreement_line + " " and "0.860 [0.800, 0.900]" in agreement_line
    kid_line = next(x for x in out.splitlines() if x.startswith("KID image (held-out)"))
    assert "within 2x spread" in kid_line and "beyond 2x spread" in kid_line
    assert "<table>" in (tmp_path / "c.html").read_text()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.json").write_text(json.dumps({"checkpoint": "x"}))
    assert main(["compare", dirs[0], str(tmp_path / "old")]) == 2
