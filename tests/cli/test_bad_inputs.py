"""Every bad input a user has met, run as the user runs it (a subprocess of the command line): a
non-zero exit, one line on stderr naming the file or the option, no traceback, and nothing new or
changed where the command would have written."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from styleseg.data.classes import ClassMap, get_class_map
from styleseg.data.store import write_store
from tests.conftest import TINY, make_coco, make_paired

pytestmark = pytest.mark.slow


def run_cli(*argv, cwd=None, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "styleseg", *map(str, argv)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def snapshot(*paths: Path) -> dict:
    """Every file under the paths, with size and modification time (absent paths: absent)."""
    seen = {}
    for root in paths:
        if not root.exists():
            seen[str(root)] = None
            continue
        for p in [root, *root.rglob("*")]:
            st = p.stat()
            seen[str(p)] = (p.is_dir(), st.st_size if p.is_file() else 0, st.st_mtime_ns if p.is_file() else 0)
    return seen


def store(root: Path, names: list[str], val: int = 2, size=(24, 16)) -> Path:
    """A tiny prepared store with the given class names, 8 train samples and `val` labelled val ones."""
    n = 8 + val
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, *size, 3), dtype=np.uint8)
    masks = rng.integers(0, len(names), (n, *size), dtype=np.uint8)
    split = np.array([0] * 8 + [1] * val, np.uint8)
    write_store(root, images, masks, ClassMap.from_names(names, "other"), split=split)
    return root


def coco_with(tmp, polygon) -> Path:
    ann = {"id": 7, "image_id": 1, "category_id": 3, "area": 10.0, "iscrowd": 0, "segmentation": [polygon]}
    return make_coco(tmp / "coco", [ann])


CCP12 = list(get_class_map("ccp-12").classes)


# Each case: (id, builder(tmp, ckpt, prepared) -> (argv, paths the command must leave as they are),
# text the one stderr line must contain)
CASES = [
    ("coco-odd-polygon", lambda t, c, p: (["prepare", "--data", coco_with(t, [1, 2, 3, 4, 5, 6, 7]),
     "--out", t / "o"], [t / "o", t / "coco"]), "7 coordinates, an odd number"),
    ("coco-nested-polygon", lambda t, c, p: (["prepare", "--data", coco_with(t, [[1, 2], [3, 4], [5, 6]]),
     "--out", t / "o"], [t / "o", t / "coco"]), "a polygon is a flat list of numbers"),
    ("coco-four-numbers", lambda t, c, p: (["prepare", "--data", coco_with(t, [1, 2, 3, 4]),
     "--out", t / "o"], [t / "o", t / "coco"]), "annotation 7, polygon 0: 2 point(s)"),
    ("coco-no-annotations-list", lambda t, c, p: _coco_without_annotations(t), "no annotations list"),
    ("generate-n-0", lambda t, c, p: (["generate", "--ckpt", c, "--n", "0", "--out", t / "g"], [t / "g"]),
     "argument --n: must be at least 1, not 0"),
    ("generate-n-negative", lambda t, c, p: (["generate", "--ckpt", c, "--n", "-5", "--out", t / "g"], [t / "g"]),
     "argument --n: must be at least 1, not -5"),
    ("generate-truncation-nan", lambda t, c, p: (["generate", "--ckpt", c, "--n", "2", "--truncation", "nan",
     "--out", t / "g"], [t / "g"]), "argument --truncation: must be a finite number"),
    ("generate-batch-0", lambda t, c, p: (["generate", "--ckpt", c, "--n", "2", "--batch", "0", "--out", t / "g"],
     [t / "g"]), "argument --batch: must be at least 1, not 0"),
    ("grid-out-is-a-folder", lambda t, c, p: (["grid", "--ckpt", c, "--out", _folder(t / "gf")], [t / "gf"]),
     "is a folder; name the PNG file"),
    ("grid-seeds-backwards", lambda t, c, p: (["grid", "--ckpt", c, "--out", t / "g.png", "--seeds", "5-2"],
     [t / "g.png"]), "argument --seeds: the range 5-2 is empty"),
    ("mix-rows-empty", lambda t, c, p: (["mix", "--ckpt", c, "--out", t / "m", "--rows", ""], [t / "m"]),
     "argument --rows: expected at least one number"),
    ("interpolate-seeds-not-numbers", lambda t, c, p: (["interpolate", "--ckpt", c, "--out", t / "i",
     "--seeds", "a,b"], [t / "i"]), "argument --seeds: expected comma-separated whole numbers"),
    ("out-not-writable", lambda t, c, p: (["generate", "--ckpt", c, "--n", "2", "--out", "/proc/styleseg-test/g"],
     []), "argument --out: cannot write into /proc"),
    ("ckpt-is-dot", lambda t, c, p: (["generate", "--ckpt", ".", "--n", "2", "--out", t / "g"], [t / "g"]),
     ".: holds no checkpoint"),
    ("ckpt-corrupt-weights", lambda t, c, p: _corrupt_checkpoint(t, c), "G_ema.safetensors: corrupt"),
    ("evaluate-other-class-names", lambda t, c, p: (["evaluate", "--ckpt", c, "--data",
     store(t / "s", ["background"] + [f"class{i}" for i in range(11)]), "--out", t / "e", "--regimes", "none"],
     [t / "e", t / "s"]),
     "are not the model's"),
    ("evaluate-fewer-classes", lambda t, c, p: (["evaluate", "--ckpt", c, "--data", store(t / "s", CCP12[:3]),
     "--out", t / "e", "--regimes", "none"], [t / "e", t / "s"]), "--classes ccp-12"),
    ("evaluate-one-val-sample", lambda t, c, p: (["evaluate", "--ckpt", c, "--data", store(t / "s", CCP12, val=1),
     "--out", t / "e", "--regimes", "none"], [t / "e", t / "s"]), "validation split has 1 labelled sample"),
    ("train-preset-splits-names-only-classes", lambda t, c, p: (["train", "--data",
     store(t / "s", ["background", "top", "bag"]), "--out", t / "r", "--preset", TINY], [t / "r", t / "s"]),
     "--set schedule.class_split_kimg=[]"),
    ("train-preset-other-resolution", lambda t, c, p: (["train", "--data",
     store(t / "s", CCP12, size=(20, 15)), "--out", t / "r", "--preset", TINY], [t / "r", t / "s"]),
     "--set model.resolution=[20,15]"),
    ("train-data-missing", lambda t, c, p: (["train", "--data", t / "nothing", "--out", t / "r"], [t / "r"]),
     "nothing: dataset folder not found"),
    ("generate-other-options-in-out", lambda t, c, p: _earlier_generation(t, c), "psi 1.0 there, 0.5 now"),
    ("generate-files-without-record", lambda t, c, p: _foreign_folder(t, c), "but no generation.json"),
    ("generate-unknown-class", lambda t, c, p: (["generate", "--ckpt", c, "--n", "2", "--out", t / "g",
     "--classes", "cape", "--class-rate", "0.5"], [t / "g"]), "unknown classes ['cape']"),
    ("prepare-resolution-garbled", lambda t, c, p: (["prepare", "--data", make_paired(t / "d", 4), "--out", t / "o",
     "--resolution", "big"], [t / "o", t / "d"]), "--resolution: resolution must look like HxW"),
    ("prepare-rgb-mask", lambda t, c, p: _paired_with(t, "rgb"), "s001.png: mask must be a single-channel"),
    ("prepare-mask-wrong-size", lambda t, c, p: _paired_with(t, "size"), "s001.png"),
    ("prepare-corrupt-image", lambda t, c, p: _paired_with(t, "corrupt"), "s001.png: corrupt or unreadable image"),
    ("prepare-malformed-classes-json", lambda t, c, p: _paired_with(t, "classes"), "classes.json"),
    ("prepare-unknown-label-id", lambda t, c, p: _paired_with(t, "id"), "s001.png"),
    ("segmenter-truncation-range-backwards", lambda t, c, p: (["segmenter", "train", "--data", p, "--generator", c,
     "--truncation-range", "1,0.5", "--out", t / "sg", "--cache", t / "sc"], [t / "sg", t / "sc"]),
     "truncation range must be 0 <= low <= high"),
    ("segmenter-labels-0", lambda t, c, p: (["segmenter", "train", "--data", p, "--labels", "0", "--out", t / "sg",
     "--cache", t / "sc"], [t / "sg", t / "sc"]), "--labels must be in 1.."),
    ("segmenter-patience-negative", lambda t, c, p: (["segmenter", "train", "--data", p, "--patience", "-1",
     "--out", t / "sg", "--cache", t / "sc"], [t / "sg", t / "sc"]), "argument --patience: must be at least 0, not -1"),
]  # fmt: skip


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _coco_without_annotations(tmp: Path):
    root = make_coco(tmp / "coco")
    path = root / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    del data["annotations"]
    path.write_text(json.dumps(data))
    return ["prepare", "--data", root, "--out", tmp / "o"], [tmp / "o", root]


def _corrupt_checkpoint(tmp: Path, ckpt: Path):
    bad = tmp / "ckpt-000000320"
    bad.mkdir()
    for f in ckpt.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "G_ema.safetensors").write_bytes(b"not weights")
    return ["generate", "--ckpt", bad, "--n", "2", "--out", tmp / "g"], [tmp / "g", bad]


def _earlier_generation(tmp: Path, ckpt: Path):
    assert run_cli("generate", "--ckpt", ckpt, "--n", "2", "--out", tmp / "g").returncode == 0
    return ["generate", "--ckpt", ckpt, "--n", "4", "--truncation", "0.5", "--out", tmp / "g"], [tmp / "g"]


def _foreign_folder(tmp: Path, ckpt: Path):
    (tmp / "g" / "images").mkdir(parents=True)
    (tmp / "g" / "images" / "mine.png").write_bytes(b"a user's file")
    return ["generate", "--ckpt", ckpt, "--n", "2", "--out", tmp / "g"], [tmp / "g"]


def _paired_with(tmp: Path, fault: str):
    root = make_paired(tmp / "d", 4)
    mask = root / "masks" / "s001.png"
    if fault == "rgb":
        Image.new("RGB", Image.open(mask).size).save(mask)
    elif fault == "size":
        Image.new("L", (7, 5)).save(mask)
    elif fault == "corrupt":
        (root / "images" / "s001.png").write_bytes(b"\x89PNG broken")
    elif fault == "classes":
        (root / "classes.json").write_text('{"classes": [')
    elif fault == "id":
        m = np.asarray(Image.open(mask)).copy()
        m[0, 0] = 9  # classes.json names 3 classes
        Image.fromarray(m).save(mask)
    return ["prepare", "--data", root, "--out", tmp / "o", "--workers", "1"], [tmp / "o", root]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_bad_input_gets_one_clear_line_and_leaves_everything_as_it_was(case, checkpoint, prepared_tiny, tmp_path):
    _, build, expected = case
    argv, watched = build(tmp_path, checkpoint, prepared_tiny)
    before = snapshot(*watched)
    result = run_cli(*argv, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert expected in lines[0], lines[0]
    assert snapshot(*watched) == before, "the refused command changed files"
    assert not list(tmp_path.rglob(".styleseg-probe-*"))


def test_sigint_during_generate_exits_130_and_a_rerun_finishes_the_same_pairs(checkpoint, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "styleseg", "generate", "--ckpt", str(checkpoint), "--batch", "2"]
    proc = subprocess.Popen([*argv, "--n", "400", "--out", str(tmp_path / "g")], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)  # fmt: skip
    manifest = tmp_path / "g" / "manifest.jsonl"
    deadline = time.time() + 120
    while not (manifest.exists() and manifest.read_text().count("\n") >= 4):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and err.strip().endswith("interrupted")
    done = [json.loads(line) for line in manifest.read_text().splitlines() if line.endswith("}")]
    assert 4 <= len(done) < 400
    cut = min(len(done) + 6, 400)
    assert subprocess.run([*argv, "--n", str(cut), "--out", str(tmp_path / "g")], env=env).returncode == 0
    assert subprocess.run([*argv, "--n", str(cut), "--out", str(tmp_path / "whole")], env=env).returncode == 0
    for sub in ("images", "masks"):
        names = sorted(p.name for p in (tmp_path / "whole" / sub).iterdir())
        assert names == sorted(p.name for p in (tmp_path / "g" / sub).iterdir())
        for name in names:
            assert (tmp_path / "g" / sub / name).read_bytes() == (tmp_path / "whole" / sub / name).read_bytes()
