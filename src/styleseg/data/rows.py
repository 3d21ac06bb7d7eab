""".npy files read and written a row (sample) at a time, with plain file I/O.

Why not memory maps: every page of a mapped file that a process touches counts toward its resident
memory until the mapping goes, so one pass over a 1,000,000-sample store (or writing one) would grow a
process to the size of the store. Positioned reads (`os.pread`) of the rows a batch needs keep memory at
the size of the batch; the page cache still serves repeated reads at memory speed. The files stay
standard .npy, readable by `np.load` anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from styleseg.errors import DataError


class RowFile:
    """Read-only rows of a C-ordered .npy file: `rows[idx]` for an int, slice, index or mask array."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(f)
                self.offset = f.tell()
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.path}: not a readable .npy file ({exc})") from exc
        if fortran:
            raise DataError(f"{self.path}: Fortran-ordered arrays are not supported")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        expected = self.offset + self.shape[0] * self.row_bytes
        if os.path.getsize(self.path) < expected:
            raise DataError(f"{self.path}: truncated ({os.path.getsize(self.path)} bytes, header says {expected})")
        self._fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __del__(self):
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def read(self, idx) -> np.ndarray:
        """Rows `idx` (any order, repeats allowed) as a new array; consecutive rows are read together."""
        idx = np.asarray(idx, np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"{self.path}: row index out of range 0..{len(self) - 1}")
        out = np.empty((len(idx), *self.row_shape), self.dtype)
        if not len(idx):
            return out
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        flat = out.reshape(len(idx), -1).view(np.uint8)
        breaks = np.flatnonzero(np.diff(sorted_idx) != 1) + 1  # runs of consecutive rows: one read each
        for run in np.split(np.arange(len(idx)), breaks):
            first, count = int(sorted_idx[run[0]]), len(run)
            data = os.pread(self._fd, count * self.row_bytes, self.offset + first * self.row_bytes)
            block = np.frombuffer(data, np.uint8).reshape(count, self.row_bytes)
            flat[order[run]] = block
        return out

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self.read([key])[0]
        if isinstance(key, slice):
            return self.read(np.arange(len(self))[key])
        key = np.asarray(key)
        if key.dtype == bool:
            key = np.flatnonzero(key)
        return self.read(key)

    def __array__(self, dtype=None, copy=None):
        """The whole array (for small stores and tests; large ones are read by rows)."""
        full = self.read(np.arange(len(self)))
        return full.astype(dtype) if dtype is not None else full


class RowWriter:
    """Writes a .npy file of a known shape row by row, in order; rows not written stay zero."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype=np.uint8):
        self.path, self.shape, self.dtype = Path(path), tuple(shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._f = open(self.path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_1_0(self._f, header)
        self.offset = self._f.tell()
        self._f.truncate(self.offset + self.shape[0] * self.row_bytes)  # sparse zeros for unwritten rows

    def write(self, i: int, row: np.ndarray) -> None:
        row = np.ascontiguousarray(row, self.dtype)
        if row.shape != self.shape[1:]:
            raise ValueError(f"{self.path}: row of shape {row.shape}, expected {self.shape[1:]}")
        self._f.seek(self.offset + i * self.row_bytes)
        self._f.write(row.tobytes())

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()

    def abort(self) -> None:
        """Close without syncing (the file is about to be removed)."""
        if not self._f.closed:
            self._f.close()
