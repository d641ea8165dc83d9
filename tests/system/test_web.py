"""The web page end to end in headless Chromium: sign in, add photos, search, see the right photo
first with its face boxed, edit metadata, page through the gallery, delete, see it gone.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs them when it runs as
root); skipped, with that reason, where they are missing. Saves ``docs/screenshot.png``.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from service.harness.live import LiveServer
from service.harness.photos import b64, crop, flipped, package_photo, recompressed, scaled
from tests.live import ROOT

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER),
        reason="Debian packages chromium and chromium-driver are not installed (`make test` installs them as root)",
    ),
]
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
USER, SECRET = "web-user", "web-secret"
SCREENSHOT = ROOT / "docs" / "screenshot.png"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {"FACE_SEARCH_API_KEY": USER, "FACE_SEARCH_API_SECRET": SECRET}
    live = LiveServer(tmp_path_factory.mktemp("web"), env).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument("--window-size=1000,720")
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def wait(driver, condition, timeout: float = 60):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))


def tiles(driver, grid: str) -> list:
    return driver.find_elements(By.CSS_SELECTOR, f"#{grid} .tile")


def all_photos_shown(driver, grid: str) -> bool:
    script = f"return [...document.querySelectorAll('#{grid} img')].every(i => i.complete && i.naturalWidth > 0)"
    return driver.execute_script(script)


def search(driver, probe: Path) -> None:
    """Pick the probe, search, and wait for the results with their photos and face boxes."""
    driver.find_element(By.CSS_SELECTOR, "a[data-tab=search]").click()
    driver.find_element(By.ID, "search-file").send_keys(str(probe))
    driver.execute_script("document.getElementById('search-summary').textContent = ''")
    driver.find_element(By.ID, "search-button").click()
    wait(driver, lambda d: "matching photo" in d.find_element(By.ID, "search-summary").text)
    wait(driver, lambda d: all_photos_shown(d, "results"))
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .face-box")) == len(tiles(d, "results")))


def signed_photos(driver, grid: str, rendition: str) -> list[str]:
    """The grid's photos, each loaded by its <img> tag from a signed link of that rendition
    (no fetch with the key); their addresses."""
    sources = driver.execute_script(f"return [...document.querySelectorAll('#{grid} img')].map(i => i.currentSrc)")
    assert sources and all(f"/{rendition}?" in src and "signature=" in src for src in sources), sources
    loaded = driver.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.initiatorType === 'img').map(e => e.name)"
    )
    assert set(sources) <= set(loaded), "each photo is loaded by its img tag"
    return sources


def result_ids(driver) -> list[int]:
    return [int(tile.get_attribute("data-id")) for tile in tiles(driver, "results")]


def save_screenshot(driver, scratch: Path) -> Path:
    """A small PNG for the README: the page as shown, in 256 colours.

    Written to docs/ only when missing or asked for (UPDATE_SCREENSHOT=1), so a test run
    does not leave the checkout changed.
    """
    from PIL import Image

    target = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") or not SCREENSHOT.exists() else scratch
    shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    target.parent.mkdir(exist_ok=True)
    shot.quantize(colors=256).save(target, optimize=True)
    return target


def test_sign_in_add_search_edit_page_delete(server: LiveServer, browser, tmp_path: Path) -> None:
    tom, team = package_photo("Tom_Hanks_54745.png"), package_photo("t1.jpg")
    photos = {
        "tom.png": tom,
        "tom-small.jpg": recompressed(scaled(tom, 0.7), 70),
        "yao.jpg": package_photo("yaoming.jpg"),
        "team.jpg": team,
        "team-small.jpg": recompressed(scaled(team, 0.6), 60),
    }
    for name, data in photos.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "tom-probe.jpg").write_bytes(flipped(tom))
    driver = browser
    driver.get(server.url + "/")

    # sign in: a wrong secret is refused, the right one opens the page
    driver.find_element(By.ID, "key").send_keys(USER)
    driver.find_element(By.ID, "secret").send_keys("wrong")
    driver.find_element(By.CSS_SELECTOR, "#sign-in-form button").click()
    wait(driver, lambda d: "Wrong key or secret" in d.find_element(By.ID, "status").text)
    driver.find_element(By.ID, "secret").clear()
    driver.find_element(By.ID, "secret").send_keys(SECRET)
    driver.find_element(By.CSS_SELECTOR, "#sign-in-form button").click()
    wait(driver, lambda d: d.find_element(By.ID, "tabs").is_displayed())
    assert driver.execute_script("return sessionStorage.getItem('face-search-auth')") is not None

    # add several photos at once, with metadata, and watch the progress bar fill
    driver.find_element(By.CSS_SELECTOR, "a[data-tab=add]").click()
    driver.find_element(By.ID, "add-files").send_keys("\n".join(str(tmp_path / name) for name in photos))
    driver.find_element(By.ID, "add-metadata").send_keys('{"album": "demo"}')
    driver.find_element(By.ID, "add-button").click()
    wait(driver, lambda d: len(re.findall("added as #", d.find_element(By.ID, "add-log").text)) == len(photos))
    progress = driver.find_element(By.ID, "add-progress")
    assert float(progress.get_attribute("value")) == float(progress.get_attribute("max")) == len(photos)
    ids = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"(\S+): added as #(\d+)", driver.find_element(By.ID, "add-log").text)
    }
    assert set(ids) == set(photos)

    # search with one person of the group photo: both copies of it, the original first, that face boxed
    face = server.call("GET", f"/images/{ids['team.jpg']}", USER, SECRET).json()["result"]["faces"][2]
    (tmp_path / "team-probe.jpg").write_bytes(crop(team, face["bbox"], 2.2))
    driver.set_window_size(1100, 980)
    search(driver, tmp_path / "team-probe.jpg")
    assert result_ids(driver) == [ids["team.jpg"], ids["team-small.jpg"]]
    first = tiles(driver, "results")[0]
    assert re.search(r"score 0\.\d{3}", first.text) and '"file":"team.jpg"' in first.text
    box, photo = first.find_element(By.CSS_SELECTOR, ".face-box"), first.find_element(By.TAG_NAME, "img")
    shown = (box.location["x"] - photo.location["x"]) / photo.size["width"]
    assert abs(shown - face["bbox"][0] / driver.execute_script("return arguments[0].naturalWidth", photo)) < 0.02
    assert 0 < box.size["width"] < photo.size["width"] / 3, "one face of six is boxed"
    assert save_screenshot(driver, tmp_path / "screenshot.png").stat().st_size > 10_000
    shown = [requests.get(link, timeout=30).content for link in signed_photos(driver, "results", "file")]
    assert shown == [photos["team.jpg"], photos["team-small.jpg"]], "the links work without the key"
    driver.set_window_size(1000, 720)

    # the photo of one person found first
    search(driver, tmp_path / "tom-probe.jpg")
    assert result_ids(driver) == [ids["tom.png"], ids["tom-small.jpg"]]

    # a phone-width screen: nothing wider than the screen
    driver.set_window_size(390, 844)
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    driver.set_window_size(1000, 720)

    # edit metadata from the gallery
    driver.find_element(By.CSS_SELECTOR, "a[data-tab=gallery]").click()
    wait(driver, lambda d: len(tiles(d, "gallery-grid")) == len(photos))
    wait(driver, lambda d: all_photos_shown(d, "gallery-grid"))
    assert len(signed_photos(driver, "gallery-grid", "thumbnail")) == len(photos)
    yao = driver.find_element(By.CSS_SELECTOR, f"#gallery-grid .tile[data-id='{ids['yao.jpg']}']")
    yao.find_element(By.CSS_SELECTOR, "button.edit").click()
    editor = driver.find_element(By.ID, "edit-metadata")
    editor.clear()
    editor.send_keys('{"name": "Yao Ming"}')
    driver.find_element(By.ID, "edit-save").click()
    wait(driver, lambda d: '"name":"Yao Ming"' in d.find_element(By.ID, "gallery-grid").text)
    stored = server.call("GET", f"/images/{ids['yao.jpg']}", USER, SECRET).json()["result"]["metadata"]
    assert stored == {"name": "Yao Ming"}

    # page by page: 24 to a page
    # someone else, so that the searches for Tom below find only Tom's photos
    extra = {"image": {"base64": b64(recompressed(package_photo("yaoming.jpg"), 50))}}
    for _ in range(25 - len(photos)):
        assert server.call("POST", "/images", USER, SECRET, json=extra).json()["status_code"] == 0
    driver.refresh()
    wait(driver, lambda d: d.find_element(By.ID, "page-label").text == "Page 1 of 2")
    assert len(tiles(driver, "gallery-grid")) == 24
    driver.find_element(By.ID, "next-page").click()
    wait(driver, lambda d: d.find_element(By.ID, "page-label").text == "Page 2 of 2")
    assert len(tiles(driver, "gallery-grid")) == 1
    driver.find_element(By.ID, "prev-page").click()
    wait(driver, lambda d: d.find_element(By.ID, "page-label").text == "Page 1 of 2")

    # select and delete the photo that was found first, then see it gone
    target = driver.find_element(By.CSS_SELECTOR, f"#gallery-grid .tile[data-id='{ids['tom.png']}']")
    target.find_element(By.CSS_SELECTOR, "input.select").click()
    driver.find_element(By.ID, "delete-selected").click()
    driver.find_element(By.ID, "confirm-ok").click()
    wait(driver, lambda d: "Deleted 1 photo." in d.find_element(By.ID, "status").text)
    wait(driver, lambda d: d.find_element(By.ID, "gallery-count").text.startswith("24 photos"))
    assert not driver.find_elements(By.CSS_SELECTOR, f"#gallery-grid .tile[data-id='{ids['tom.png']}']")
    search(driver, tmp_path / "tom-probe.jpg")  # the page was reloaded: pick the photo again
    found = result_ids(driver)
    assert ids["tom.png"] not in found and ids["tom-small.jpg"] in found

    # sign out forgets the key
    driver.find_element(By.ID, "sign-out").click()
    assert driver.find_element(By.ID, "sign-in").is_displayed()
    assert driver.execute_script("return sessionStorage.getItem('face-search-auth')") is None
