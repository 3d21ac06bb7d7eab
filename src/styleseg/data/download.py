"""`styleseg data download`: fetch a public dataset archive, check it, extract it atomically, cache it.

The archive is streamed to a temporary file, its checksum compared when one is known, extracted
into a temporary folder beside the destination, checked for the expected layout, then renamed into
place. A second call finds the complete folder and does nothing.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from styleseg.errors import DataError


@dataclass(frozen=True)
class DatasetSource:
    name: str
    url: str
    folder: str  # folder name under --root
    sha256: str | None = None  # None: the upstream archive is a branch snapshot whose hash may change


DATASETS = {
    "ccp": DatasetSource(
        "ccp",
        "https://github.com/bearpaw/clothing-co-parsing/archive/refs/heads/master.zip",
        "clothing-co-parsing",
    ),
}


def _fetch(url: str, dest: Path, progress: Callable[[int, int], None] | None) -> str:
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    except (OSError, ValueError) as exc:  # URLError is an OSError
        raise DataError(f"{url}: download failed ({exc})") from exc
    return digest.hexdigest()


def _dataset_root(extracted: Path) -> Path:
    """The folder inside an archive that holds the layout (archives often wrap it in one folder)."""
    entries = [p for p in extracted.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return extracted


def download_dataset(
    name: str,
    root: Path,
    url: str | None = None,
    sha256: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Path, bool]:
    """Make `root/<folder>` hold the dataset. Returns (path, downloaded_now)."""
    from styleseg.data.readers import open_source  # numpy, scipy, PIL: imported when a dataset is fetched

    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}': choose from {sorted(DATASETS)}")
    source = DATASETS[name]
    dest = Path(root) / source.folder
    if dest.is_dir():
        open_source(dest)  # raises if the cached copy is incomplete
        return dest, False
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{source.folder}.partial-", dir=dest.parent))
    try:
        archive = work / "archive.zip"
        actual = _fetch(url or source.url, archive, progress)
        expected = sha256 or source.sha256
        if expected and actual != expected:
            raise DataError(f"{url or source.url}: checksum {actual} does not match expected {expected}")
        try:
            with zipfile.ZipFile(archive) as zf:
                bad = [n for n in zf.namelist() if n.startswith("/") or ".." in Path(n).parts]
                if bad:
                    raise DataError(f"{archive}: refuses unsafe member path {bad[0]}")
                zf.extractall(work / "extracted")
        except zipfile.BadZipFile as exc:
            raise DataError(f"{url or source.url}: not a valid zip archive ({exc})") from exc
        archive.unlink()
        content = _dataset_root(work / "extracted")
        open_source(content)  # the layout must be complete before it is moved into place
        content.rename(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest, True
