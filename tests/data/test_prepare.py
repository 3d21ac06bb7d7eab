import json

import numpy as np
import pytest
import scipy.io
from PIL import Image

from styleseg.data.prepare import prepare_dataset
from styleseg.data.store import EpochSampler, PreparedDataset
from styleseg.errors import DataError


def test_prepare_round_trip(tiny_ccp, tmp_path):
    meta = prepare_dataset(tiny_ccp, tmp_path / "out", (24, 16), "ccp-12", workers=1)
    assert meta["counts"]["train"] == {"labeled": 12, "unlabeled": 4}
    assert meta["counts"]["val"] == {"labeled": 3, "unlabeled": 0}
    assert abs(sum(meta["class_pixel_frequency"].values()) - 1) < 1e-6
    ds = PreparedDataset(tmp_path / "out")
    assert len(ds) == 19 and ds.resolution == (24, 16)
    assert ds.class_map.name == "ccp-12"
    assert [lvl.num_classes for lvl in ds.class_map.levels()] == [2, 5, 12]
    idx = ds.indices("train", labeled_only=True)
    images, masks = ds.load_batch(idx[:4])
    assert images.shape == (4, 3, 24, 16) and images.dtype.is_floating_point is False
    assert masks.shape == (4, 24, 16) and int(masks.max()) < 12
    # the person occupies the middle: ccp 'jeans' -> pants (6), 't-shirt' -> top (3)
    assert {3, 6} <= set(np.unique(masks.numpy()))
    flipped_images, flipped_masks = ds.load_batch(idx[:4], flip=np.array([True, False, True, False]))
    assert np.array_equal(flipped_masks[0].numpy(), masks[0].numpy()[:, ::-1])
    assert np.array_equal(flipped_images[1].numpy(), images[1].numpy())
    assert not ds.labeled[ds.indices("train")].all()


def test_prepare_paired_with_source_classes(tiny_paired, tmp_path):
    meta = prepare_dataset(tiny_paired, tmp_path / "out", (24, 16), None, workers=1)
    assert meta["classes"]["name"] == "tiny"
    assert sum(c["labeled"] for c in meta["counts"].values()) == 12


def test_prepare_in_parallel_matches_serial(tiny_ccp, tmp_path):
    prepare_dataset(tiny_ccp, tmp_path / "a", (24, 16), "ccp-12", workers=1)
    prepare_dataset(tiny_ccp, tmp_path / "b", (24, 16), "ccp-12", workers=2)
    a, b = PreparedDataset(tmp_path / "a"), PreparedDataset(tmp_path / "b")
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)


def test_existing_store_is_not_overwritten(tiny_ccp, tmp_path):
    prepare_dataset(tiny_ccp, tmp_path / "out", (24, 16), "ccp-12", workers=1)
    before = (tmp_path / "out" / "dataset.json").read_text()
    with pytest.raises(DataError, match="already exists"):
        prepare_dataset(tiny_ccp, tmp_path / "out", (24, 16), "ccp-12", workers=1)
    assert (tmp_path / "out" / "dataset.json").read_text() == before


def test_failed_prepare_keeps_the_old_store(tiny_ccp, tmp_path):
    prepare_dataset(tiny_ccp, tmp_path / "out", (24, 16), "ccp-12", workers=1)
    before = json.loads((tmp_path / "out" / "dataset.json").read_text())
    (tiny_ccp / "photos" / "0007.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    with pytest.raises(DataError, match=r"0007\.jpg: corrupt or unreadable image"):
        prepare_dataset(tiny_ccp, tmp_path / "out", (24, 16), "ccp-12", workers=1, force=True)
    assert json.loads((tmp_path / "out" / "dataset.json").read_text()) == before
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_mask_of_wrong_size(tiny_ccp, tmp_path):
    scipy.io.savemat(
        tiny_ccp / "annotations" / "pixel-level" / "0005.mat", {"groundtruth": np.zeros((10, 10), np.uint8)}
    )
    with pytest.raises(DataError, match=r"0005\.mat: mask is 10x10 \(HxW\) but its photo 0005\.jpg is 66x44"):
        prepare_dataset(tiny_ccp, tmp_path / "out", (24, 16), "ccp-12", workers=1)


def test_label_id_outside_label_list(tiny_ccp, tmp_path):
    mask = np.zeros((66, 44), np.uint8)
    mask[3, 3] = 77
    scipy.io.savemat(tiny_ccp / "annotations" / "pixel-level" / "0006.mat", {"groundtruth": mask})
    with pytest.raises(DataError, match=r"0006\.mat: label id 77 is outside the 59 labels"):
        prepare_dataset(tiny_ccp, tmp_path / "out", (24, 16), "ccp-12", workers=1)


def test_paired_mask_id_outside_classes(tiny_paired, tmp_path):
    Image.fromarray(np.full((48, 32), 9, np.uint8), mode="L").save(tiny_paired / "masks" / "s004.png")
    with pytest.raises(DataError, match=r"s004\.png: label id 9 is outside the 3 labels"):
        prepare_dataset(tiny_paired, tmp_path / "out", (24, 16), None, workers=1)


def test_sampler_is_resumable_and_rank_slices_match():
    full = EpochSampler(np.arange(10), seed=3)
    batches = [full.next_global(4) for _ in range(6)]  # crosses epochs
    resumed = EpochSampler(np.arange(10), seed=3)
    for _ in range(3):
        resumed.next_global(4)
    state = resumed.state
    again = EpochSampler(np.arange(10), seed=3)
    again.state = state
    for want in batches[3:]:
        got = again.next_global(4)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    r0, r1 = EpochSampler(np.arange(10), 3, rank=0, world_size=2), EpochSampler(np.arange(10), 3, rank=1, world_size=2)
    for want in batches[:3]:
        assert np.array_equal(np.concatenate([r0.next(2)[0], r1.next(2)[0]]), want[0])


def test_bounded_map_keeps_order_and_submits_a_bounded_window():
    from concurrent.futures import Future

    from styleseg.data.prepare import bounded_map

    class CountingPool:
        submitted = 0

        def submit(self, fn, *args):
            self.submitted += 1
            future = Future()
            future.set_result(fn(*args))
            return future

    pool, out = CountingPool(), []
    for i, value in enumerate(bounded_map(pool, abs, list(range(0, -100, -1)), chunk=7, ahead=3)):
        out.append(value)
        assert pool.submitted <= i // 7 + 1 + 3  # chunks consumed + the window, never all 15 at once
    assert out == list(range(100)) and pool.submitted == 15
