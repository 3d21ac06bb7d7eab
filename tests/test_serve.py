"""`styleseg serve` in a real browser: headless Chromium (Debian's chromium and chromium-driver)
driven through Selenium changes the seed, reads a pixel's class, downloads a pair (which must equal
`styleseg generate`'s files for that seed) and uploads a photo to get its mask."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.distributed.elastic.utils.distributed import get_free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
pytest.importorskip("starlette", reason="the app extra is not installed (pip install 'styleseg[app]')")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER),
        reason="no chromium and chromedriver (Debian: apt-get install chromium chromium-driver)",
    ),
]


@pytest.fixture
def server(checkpoint, tmp_path):
    port = get_free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "styleseg", "serve", "--ckpt", str(checkpoint), "--port", str(port)]
    proc = subprocess.Popen([*argv, "--project-steps", "5"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/api/info", timeout=2)
            break
        except OSError:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.time() < deadline, "the server did not come up"
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(flag)
    # no network beyond this machine: Chromium's own background connections would only fail
    for flag in ("--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.add_argument("--window-size=1100,1100")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.downloads = downloads
    yield driver
    driver.quit()


def wait_for(predicate, timeout=120, what="the page"):
    """Selenium's own polling wait for any condition (the download is not the driver's)."""
    from selenium.webdriver.support.wait import WebDriverWait

    waiting = WebDriverWait(None, timeout, poll_frequency=0.2)
    return waiting.until(lambda _: predicate(), f"timed out waiting for {what}")


def rendered(driver) -> int:
    return int(driver.find_element("tag name", "body").get_attribute("data-rendered") or 0)


def test_the_page_draws_reads_a_pixel_downloads_a_pair_and_reads_a_photo(server, browser, checkpoint, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    started = time.time()
    browser.get(server)
    wait_for(lambda: rendered(browser) >= 1, what="the first sample")
    before = {k: browser.find_element("id", k).get_attribute("src") for k in ("image", "mask")}
    # another seed: image and mask change
    seed = browser.find_element("id", "seed")
    seed.clear()
    seed.send_keys("5")
    browser.execute_script("document.getElementById('seed').dispatchEvent(new Event('change'))")
    wait_for(lambda: browser.find_element("tag name", "body").get_attribute("data-seed") == "5", what="seed 5")
    after = {k: browser.find_element("id", k).get_attribute("src") for k in ("image", "mask")}
    assert all(after[k] != before[k] and after[k].startswith("data:image/png;base64,") for k in after)

    # a pixel's class reads back: the class the server's mask has there
    sample = json.load(urllib.request.urlopen(server + "/api/sample?seed=5&psi=1"))
    ids = np.array(sample["ids"])
    names = json.load(urllib.request.urlopen(server + "/api/info"))["classes"]
    mask = browser.find_element("id", "mask")
    width, height = mask.size["width"], mask.size["height"]
    for y, x in ((ids.shape[0] // 2, ids.shape[1] // 2), (1, 1)):
        dx = (x + 0.5) / ids.shape[1] * width - width / 2
        dy = (y + 0.5) / ids.shape[0] * height - height / 2
        ActionChains(browser).move_to_element_with_offset(mask, int(dx), int(dy)).perform()
        want = names[ids[y, x]]
        wait_for(lambda want=want: browser.find_element("id", "hover-class").text == want, what="the pixel's class")

    # the downloaded pair is what `styleseg generate` writes for that seed and truncation
    browser.find_element("id", "download").click()
    archive = wait_for(lambda: next(iter(browser.downloads.glob("*.zip")), None), what="the download")
    wait_for(lambda: zipfile.is_zipfile(archive), what="a complete download")
    subprocess.run(
        [sys.executable, "-m", "styleseg", "generate", "--ckpt", str(checkpoint), "--n", "1", "--seed", "5",
         "--truncation", "1", "--out", str(tmp_path / "generated")],
        check=True, capture_output=True,
    )  # fmt: skip
    with zipfile.ZipFile(archive) as zf:
        for name in ("images/000005.png", "masks/000005.png"):
            assert zf.read(name) == (tmp_path / "generated" / name).read_bytes(), name
        assert json.loads(zf.read("classes.json")) == json.loads((tmp_path / "generated" / "classes.json").read_text())

    # a VITON-like photo (a drawn person) gets a mask; a file that is no image gets a message
    photo = tmp_path / "person.jpg"
    from tests.conftest import draw_person

    Image.fromarray(draw_person(72, 48, np.random.default_rng(1))[0]).save(photo)
    browser.find_element("id", "photo-input").send_keys(str(photo))
    browser.find_element("id", "photo-go").click()
    body = browser.find_element("tag name", "body")
    wait_for(lambda: body.get_attribute("data-projected") == "1", what="the photo's mask")
    assert browser.find_element("id", "photo-mask").get_attribute("src").startswith("data:image/png;base64,")
    not_a_photo = tmp_path / "notes.png"
    not_a_photo.write_bytes(b"this is not a picture")
    browser.find_element("id", "photo-input").send_keys(str(not_a_photo))
    browser.find_element("id", "photo-go").click()
    wait_for(lambda: body.get_attribute("data-projected") == "error", what="the upload's error")
    assert "not a readable image" in browser.find_element("id", "message").text
    browser.save_screenshot(str(tmp_path / "page.png"))
    assert Image.open(tmp_path / "page.png").size[0] > 500
    print(f"browser test: {time.time() - started:.1f} s")


def test_uploads_are_checked_before_any_work(server):
    def post(data: bytes, content_type: str):
        boundary = "styleseg-test"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="x"\r\n'
                f"Content-Type: {content_type}\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        request = urllib.request.Request(
            server + "/api/project", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        try:
            urllib.request.urlopen(request)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())["error"]
        return 200, None

    assert post(b"hello", "text/plain") == (400, "'text/plain' is not an image type (JPEG, PNG or WebP expected)")
    assert post(b"", "image/png")[1] == "the upload is empty"
    assert "limit is 8 MiB" in post(b"x" * (8 * 2**20 + 10), "image/jpeg")[1]
    assert "not a readable image" in post(b"\x89PNG broken", "image/png")[1]
    code, error = post(b"", "image/png")
    assert code == 400 and "Traceback" not in error
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(server + "/api/sample?seed=-3")
    assert json.loads(bad.value.read())["error"] == "seed must be between 0 and 2147483647, not -3"


def test_serve_says_which_extra_is_missing(monkeypatch, capsys):
    import importlib.util

    from styleseg.cli.main import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    assert main(["serve", "--model", "viton64-lip12"]) == 2
    assert "serve needs uvicorn: pip install 'styleseg[app]'" in capsys.readouterr().err


def test_repository_page_is_packaged():
    from importlib import resources

    assert "styleseg explorer" in resources.files("styleseg.app").joinpath("index.html").read_text()
    assert Path(__file__).parents[1].joinpath("src/styleseg/app/index.html").is_file()
