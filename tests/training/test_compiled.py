"""`compile=true`: G and D compile once per growth phase, never per step, and train as eager does."""

import functools

import torch

from styleseg.config import build_config
from styleseg.data.store import PreparedDataset
from styleseg.training import compiled
from styleseg.training.loop import Trainer
from tests.conftest import TINY


def _run(prepared, tmp_path, compile_: bool, steps: int):
    cfg = build_config(TINY, [f"compile={str(compile_).lower()}"])
    tmp_path.mkdir()
    trainer = Trainer(cfg, PreparedDataset(prepared), tmp_path, torch.device("cpu"))
    trainer.logger.enabled = False
    new_graphs = []  # (step, growth phase, graphs built by that step)
    for i in range(steps):
        st = trainer.growth()
        if i == steps - 6:  # ADA switching on mid-phase (augment then hands D channel slices) must not recompile
            trainer.ada.p = 0.5
        before = compiled.compiled_graphs()
        trainer.train_step()
        phase = (st.stage, st.alpha < 1, st.seg_level, 0 < st.seg_alpha < 1)
        new_graphs.append((trainer.step, phase, compiled.compiled_graphs() - before))
    return trainer, new_graphs


def test_compiles_once_per_growth_phase_and_trains_as_eager(prepared_tiny, tmp_path, monkeypatch):
    # Dynamo's capture and guards decide recompilation whatever the backend; "eager" skips code
    # generation, so the test takes seconds and the arithmetic is eager's.
    monkeypatch.setattr(compiled.torch, "compile", functools.partial(torch.compile, backend="eager"))
    torch._dynamo.reset()
    steps = 40  # tiny.yaml passes every growth event: 4 stages, segmentation, two class splits
    fast, log = _run(prepared_tiny, tmp_path / "c", True, steps)
    phases = {phase for _, phase, _ in log}
    compiling_steps = [(step, phase) for step, phase, n in log if n]
    # a phase compiles on its first step, and a fade once more when alpha first moves off 0
    assert len(compiling_steps) <= 2 * len(phases), compiling_steps
    for phase in phases:
        steps_in_phase = [n for _, p, n in log if p == phase]
        assert sum(1 for n in steps_in_phase[2:] if n) == 0, (phase, steps_in_phase)
    assert any(n for _, _, n in log)  # it did compile

    plain, _ = _run(prepared_tiny, tmp_path / "e", False, steps)
    for name in ("G", "D"):
        ours, theirs = getattr(fast.nets, name).state_dict(), getattr(plain.nets, name).state_dict()
        for key in theirs:
            torch.testing.assert_close(ours[key], theirs[key], atol=1e-5, rtol=1e-5, msg=f"{name}.{key}")
