"""On the real Clothing Co-Parsing dataset (skipped where it is absent)."""

import numpy as np
import pytest

from styleseg.cli.main import main
from styleseg.data.readers import open_source
from styleseg.data.store import PreparedDataset

pytestmark = pytest.mark.ccp


def test_ccp_reader_counts(real_ccp):
    reader = open_source(real_ccp)
    labeled = [s for s in reader.samples if s.mask_path is not None]
    assert len(labeled) == 904 and len(reader.samples) - len(labeled) == 1094
    assert sum(s.split == "val" for s in labeled) == 100
    assert reader.read_mask(labeled[0]).shape == (832, 550)


@pytest.mark.slow
def test_prepare_ccp_counts_and_alignment(real_ccp, tmp_path, capsys):
    out = tmp_path / "ccp"
    assert main(["prepare", "--data", str(real_ccp), "--out", str(out), "--resolution", "24x16"]) == 0
    text = capsys.readouterr().out
    assert "904 labeled, 1094 unlabeled" in text
    ds = PreparedDataset(out)
    assert ds.meta["counts"]["train"] == {"labeled": 804, "unlabeled": 1094}
    assert ds.meta["counts"]["val"] == {"labeled": 100, "unlabeled": 0}
    # people stand in the middle of the frame: the centre column is mostly person, the border background
    masks = np.asarray(ds.masks[ds.labeled])
    assert (masks[:, 6:18, 7:9] > 0).mean() > 0.5
    assert (masks[:, :, 0] == 0).mean() > 0.95
    assert main(["info", "--data", str(out), "--preview", str(tmp_path / "p.png"), "--n", "4"]) == 0
    assert (tmp_path / "p.png").stat().st_size > 0
