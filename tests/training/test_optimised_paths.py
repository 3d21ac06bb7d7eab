"""Speed options must not change results: channels_last gives the same training step as the plain
memory format, to float tolerance."""

import copy

import pytest
import torch

from styleseg.config import build_config
from styleseg.data.store import PreparedDataset
from styleseg.training.loop import Trainer
from tests.conftest import TINY


def _weights_after_steps(prepared, tmp_path, channels_last: bool, steps: int = 3):
    cfg = build_config(
        TINY,
        [
            f"channels_last={str(channels_last).lower()}",
            "schedule.stable_kimg=0",
            "schedule.fade_kimg=0",
            "schedule.seg_start_kimg=0",
            "schedule.class_split_kimg=[]",
            "schedule.seg_fade_kimg=0",
            "optim.eps=1e-4",  # damps Adam's full steps on rounding-only gradients (see test_distributed)
        ],
    )
    tmp_path.mkdir()
    trainer = Trainer(cfg, PreparedDataset(prepared), tmp_path, torch.device("cpu"))
    trainer.logger.enabled = False
    for _ in range(steps):
        trainer.train_step()
    return copy.deepcopy(trainer.nets.G.state_dict()), copy.deepcopy(trainer.nets.D.state_dict())


def test_channels_last_matches_plain_memory_format(prepared_tiny, tmp_path):
    g_plain, d_plain = _weights_after_steps(prepared_tiny, tmp_path / "a", False)
    g_cl, d_cl = _weights_after_steps(prepared_tiny, tmp_path / "b", True)
    for plain, fast in ((g_plain, g_cl), (d_plain, d_cl)):
        for key in plain:
            torch.testing.assert_close(fast[key].contiguous(), plain[key].contiguous(), atol=1e-4, rtol=1e-4, msg=key)


def test_discriminator_learning_rate_multiplier(prepared_tiny, tmp_path):
    cfg = build_config(TINY, ["optim.lr=[0.002]", "optim.d_lr_mul=2.5"])
    trainer = Trainer(cfg, PreparedDataset(prepared_tiny), tmp_path, torch.device("cpu"))
    trainer.logger.enabled = False
    trainer.train_step()
    assert [g["lr"] for g in trainer.nets.opt_G.param_groups] == [0.002]
    assert [g["lr"] for g in trainer.nets.opt_D.param_groups] == [pytest.approx(0.005)]
