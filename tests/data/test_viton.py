"""On the real VITON set (skipped where it is absent: set STYLESEG_VITON or place it at
../shared/datasets/viton)."""

import numpy as np
import pytest

from styleseg.cli.main import main
from styleseg.data.readers import open_source
from styleseg.data.store import PreparedDataset

pytestmark = pytest.mark.viton


def test_viton_reader_counts_split_and_labels(real_viton):
    reader = open_source(real_viton)
    assert reader.name == "viton" and reader.default_class_map == "lip-12"
    assert len(reader.samples) == 14221 and all(s.mask_path is not None for s in reader.samples)
    assert sum(s.split == "val" for s in reader.samples) == 1415  # the documented name-hash split
    seen = set()
    for sample in reader.samples[::500]:
        mask = reader.read_mask(sample)
        assert mask.shape == (256, 192)
        seen |= set(np.unique(mask).tolist())
    assert seen <= {0, 2, 5, 6, 7, 8, 9, 12, 13, 14, 15, 16, 17}  # the ids the dataset's README lists
    assert {0, 2, 5, 13, 14, 15} <= seen


@pytest.mark.slow
def test_prepare_viton_without_class_option(real_viton, tmp_path, capsys):
    out = tmp_path / "viton"
    assert main(["prepare", "--data", str(real_viton), "--out", str(out), "--resolution", "16x12"]) == 0
    text = capsys.readouterr().out
    assert "14221 samples from viton layout" in text and "classes 'lip-12'" in text
    ds = PreparedDataset(out)
    assert ds.meta["counts"]["train"]["labeled"] == 12806 and ds.meta["counts"]["val"]["labeled"] == 1415
    # catalogue photos: the person fills the centre, the border is background
    masks = np.asarray(ds.masks[::50])
    assert (masks[:, 4:12, 5:7] > 0).mean() > 0.8 and (masks[:, :, 0] == 0).mean() > 0.8
