"""The download path, against a local HTTP server serving a small archive of CCP's layout."""

import functools
import hashlib
import http.server
import shutil
import threading

import pytest

from styleseg.cli.main import main
from styleseg.data.download import download_dataset
from styleseg.errors import DataError
from tests.conftest import make_ccp


@pytest.fixture
def server(tmp_path):
    src = make_ccp(tmp_path / "src" / "clothing-co-parsing-master", labeled=[1, 2, 805], unlabeled=[1005])
    shutil.make_archive(str(tmp_path / "www" / "ccp"), "zip", tmp_path / "src")
    (tmp_path / "www" / "broken.zip").write_bytes(b"PK not really a zip")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", src
    httpd.shutdown()


def test_download_extract_and_cache(server, tmp_path):
    base, _ = server
    path, fetched = download_dataset("ccp", tmp_path / "cache", url=f"{base}/ccp.zip")
    assert fetched and path == tmp_path / "cache" / "clothing-co-parsing"
    assert (path / "photos" / "0001.jpg").exists() and (path / "label_list.mat").exists()
    # a second call does nothing, even with the server gone
    path2, fetched2 = download_dataset("ccp", tmp_path / "cache", url=f"{base}/missing.zip")
    assert path2 == path and not fetched2
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["clothing-co-parsing"]


def test_checksum_mismatch_and_bad_archive_leave_nothing(server, tmp_path):
    base, _ = server
    with pytest.raises(DataError, match="checksum"):
        download_dataset("ccp", tmp_path / "cache", url=f"{base}/ccp.zip", sha256="0" * 64)
    with pytest.raises(DataError, match="not a valid zip"):
        download_dataset("ccp", tmp_path / "cache", url=f"{base}/broken.zip")
    with pytest.raises(DataError, match="download failed"):
        download_dataset("ccp", tmp_path / "cache", url=f"{base}/absent.zip")
    assert list((tmp_path / "cache").iterdir()) == []


def test_checksum_match_and_cli(server, tmp_path, capsys):
    base, _ = server
    digest = hashlib.sha256((tmp_path / "www" / "ccp.zip").read_bytes()).hexdigest()
    argv = ["data", "download", "ccp", "--root", str(tmp_path / "c"), "--url", f"{base}/ccp.zip", "--sha256", digest]
    assert main(argv) == 0
    assert "downloaded" in capsys.readouterr().out
    assert main(argv) == 0
    assert "already present" in capsys.readouterr().out
