"""Screenshot of `styleseg serve` for the README: a seed, a hovered pixel and a VITON photo read through the model.

    python scripts/serve-screenshot.py --model viton64-lip12 --photo PHOTO.jpg --out docs/serve.png

Needs the app extra, Selenium and Debian's chromium + chromium-driver (what the browser test uses).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.support.wait import WebDriverWait
from torch.distributed.elastic.utils.distributed import get_free_port


def wait_for(predicate, what: str, timeout: float = 300):
    """Selenium's polling wait for any condition (the server's answer is not the driver's)."""
    waiting = WebDriverWait(None, timeout, poll_frequency=0.2)
    return waiting.until(lambda _: predicate(), f"timed out waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="viton64-lip12")
    parser.add_argument("--photo", required=True, help="a photo to read through the model")
    parser.add_argument("--seed", default="11")
    parser.add_argument("--out", default="docs/serve.png")
    args = parser.parse_args()

    port = get_free_port()
    server = subprocess.Popen([sys.executable, "-m", "styleseg", "serve", "--model", args.model, "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.poll() is None and _answers(url + "/api/info"), "the server")
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--window-size=1100,1000",
                     f"--user-data-dir={tempfile.mkdtemp()}"):  # fmt: skip
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            driver.get(url)
            body = driver.find_element("tag name", "body")
            wait_for(lambda: int(body.get_attribute("data-rendered") or 0) >= 1, "the first sample")
            seed = driver.find_element("id", "seed")
            seed.clear()
            seed.send_keys(args.seed)
            driver.execute_script("document.getElementById('seed').dispatchEvent(new Event('change'))")
            wait_for(lambda: body.get_attribute("data-seed") == args.seed, f"seed {args.seed}")
            driver.find_element("id", "photo-input").send_keys(args.photo)
            driver.find_element("id", "photo-go").click()
            wait_for(lambda: body.get_attribute("data-projected") == "1", "the photo's mask")
            mask = driver.find_element("id", "mask")
            ActionChains(driver).move_to_element_with_offset(mask, 0, -mask.size["height"] // 6).perform()
            time.sleep(0.5)
            driver.save_screenshot(args.out)
        finally:
            driver.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {args.out}")


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
