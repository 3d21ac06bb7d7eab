"""Row-wise .npy reading and writing: the same arrays as numpy's own, any index order."""

import numpy as np
import pytest

from styleseg.data.rows import RowFile, RowWriter
from styleseg.errors import DataError


def test_rows_round_trip_and_match_numpy(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (50, 6, 4, 3), dtype=np.uint8)
    writer = RowWriter(tmp_path / "a.npy", data.shape)
    for i in rng.permutation(50):  # any write order
        writer.write(int(i), data[i])
    writer.close()
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), data)  # a standard .npy file
    rows = RowFile(tmp_path / "a.npy")
    idx = np.array([7, 3, 3, 49, 0, 8, 9, 10])  # unsorted, repeated, runs
    np.testing.assert_array_equal(rows[idx], data[idx])
    np.testing.assert_array_equal(rows[5], data[5])
    np.testing.assert_array_equal(rows[10:20:3], data[10:20:3])
    keep = rng.random(50) < 0.3
    np.testing.assert_array_equal(rows[keep], data[keep])
    np.testing.assert_array_equal(np.asarray(rows), data)
    with pytest.raises(IndexError):
        rows[[50]]


def test_unwritten_rows_are_zero_and_truncation_is_named(tmp_path):
    writer = RowWriter(tmp_path / "b.npy", (4, 2, 2))
    writer.write(1, np.ones((2, 2), np.uint8))
    writer.close()
    assert np.load(tmp_path / "b.npy").sum() == 4
    raw = (tmp_path / "b.npy").read_bytes()
    (tmp_path / "c.npy").write_bytes(raw[:-3])
    with pytest.raises(DataError, match=r"c\.npy: truncated"):
        RowFile(tmp_path / "c.npy")
    (tmp_path / "d.npy").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"d\.npy: not a readable \.npy file"):
        RowFile(tmp_path / "d.npy")
