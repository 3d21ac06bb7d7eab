"""The prepared device check runs end to end on the CPU as a smoke test (tiny preset, no compile)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_script_smoke_on_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "BIN": str(Path(sys.executable).parent)}
    proc = subprocess.run(
        ["bash", "scripts/gpu-check.sh", "--device", "cpu", "--smoke"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "gpu-check done" in proc.stdout
    assert (tmp_path / "out" / "bench-tiny-fp32-eager.json").is_file()
    assert "done: 0.2 kimg" in (tmp_path / "out" / "train.log").read_text()
