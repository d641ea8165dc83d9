"""The web page's People view in headless Chromium: group the faces, see the persons as cover
faces (named first), open one and see its photos, rename it, take a face out, move a face into
another person, merge two. Saves ``docs/persons.png`` (the People view) like test_web's screenshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.harness.live import LiveServer
from service.harness.photos import b64, flipped, package_photo, scaled
from tests.live import ROOT
from tests.system.test_web import (  # noqa: F401 - browser and server are fixtures; pytestmark skips without chromium
    SECRET,
    USER,
    By,
    all_photos_shown,
    browser,
    pytestmark,
    save_screenshot,
    server,
    tiles,
    wait,
)

Select = pytest.importorskip("selenium.webdriver.support.ui").Select

SCREENSHOT = ROOT / "docs" / "persons.png"


def people(driver) -> list[tuple[int, str]]:
    """The persons shown, in order: id and the name shown (read at once: the grid is redrawn)."""
    script = (
        "return [...document.querySelectorAll('#people-grid .tile')]"
        ".map(t => [t.dataset.id, t.querySelector('.name').textContent])"
    )
    return [(int(found), name) for found, name in driver.execute_script(script)]


def covers_shown(driver) -> bool:
    script = (
        "return [...document.querySelectorAll('#people-grid img.face')].every(i => i.complete && i.naturalWidth > 0)"
    )
    return driver.execute_script(script)


def test_people_view(server: LiveServer, browser, tmp_path: Path) -> None:  # noqa: F811
    tom, yao = package_photo("Tom_Hanks_54745.png"), package_photo("yaoming.jpg")
    faces = {}
    for name, photo in {
        "tom1": tom, "tom2": flipped(tom), "tom3": scaled(tom, 0.8),
        "yao1": yao, "yao2": flipped(yao), "yao3": scaled(yao, 0.7),
    }.items():  # fmt: skip
        answer = server.call("POST", "/images", USER, SECRET, json={"image": {"base64": b64(photo)}}).json()
        faces[name] = answer["result"]["faces"][0]["id"]
    driver = browser
    driver.get(server.url + "/")
    driver.find_element(By.ID, "key").send_keys(USER)
    driver.find_element(By.ID, "secret").send_keys(SECRET)
    driver.find_element(By.CSS_SELECTOR, "#sign-in-form button").click()
    wait(driver, lambda d: d.find_element(By.ID, "tabs").is_displayed())

    # group the faces from the page: two unnamed persons, each shown by its cover face
    driver.find_element(By.CSS_SELECTOR, "a[data-tab=people]").click()
    wait(driver, lambda d: d.find_element(By.ID, "people-count").text.startswith("0 people"))
    driver.find_element(By.ID, "group-faces").click()
    wait(driver, lambda d: "Faces grouped." in d.find_element(By.ID, "status").text)
    wait(driver, lambda d: len(tiles(d, "people-grid")) == 2 and covers_shown(d))
    assert all(name.startswith("Unnamed #") for _, name in people(driver))
    assert "Not named yet" in driver.find_element(By.ID, "people-grid").text
    assert all("3 photos" in tile.text for tile in tiles(driver, "people-grid"))

    # open the person of the last Yao photo and name it: named people come first
    yao_id = next(
        p["id"] for p in server.call("GET", "/persons", USER, SECRET).json()["result"]
        if p["cover"]["face_id"] in {faces["yao1"], faces["yao2"], faces["yao3"]}
    )  # fmt: skip
    driver.find_element(By.CSS_SELECTOR, f"#people-grid .tile[data-id='{yao_id}'] button.open").click()
    wait(driver, lambda d: d.find_element(By.ID, "person-view").is_displayed())
    wait(driver, lambda d: len(tiles(d, "person-photos")) == 3 and all_photos_shown(d, "person-photos"))
    assert len(driver.find_elements(By.CSS_SELECTOR, "#person-photos .face-box")) == 3, "the person's face boxed"
    driver.find_element(By.ID, "person-name").send_keys("Yao Ming")
    driver.find_element(By.ID, "rename-save").click()
    wait(driver, lambda d: "Saved: Yao Ming." in d.find_element(By.ID, "status").text)
    assert server.call("GET", f"/persons/{yao_id}", USER, SECRET).json()["result"]["name"] == "Yao Ming"
    driver.find_element(By.ID, "person-back").click()
    wait(driver, lambda d: [n for _, n in people(d)][:1] == ["Yao Ming"] and covers_shown(d))
    driver.set_window_size(1000, 860)
    driver.execute_script("window.scrollTo(0, 0)")
    assert save_screenshot(driver, tmp_path / "people.png", SCREENSHOT).stat().st_size > 5_000
    driver.set_window_size(1000, 720)
    driver.find_element(By.CSS_SELECTOR, f"#people-grid .tile[data-id='{yao_id}'] button.open").click()
    wait(driver, lambda d: len(tiles(d, "person-photos")) == 3)

    # take one face out (a wrong photo), then move another into the other person
    tile = driver.find_element(By.CSS_SELECTOR, f"#person-photos .tile[data-face='{faces['yao3']}']")
    tile.find_element(By.CSS_SELECTOR, "button.take-out").click()
    wait(driver, lambda d: "Face taken out" in d.find_element(By.ID, "status").text)
    wait(driver, lambda d: len(tiles(d, "person-photos")) == 2)
    listed = server.call("GET", "/persons", USER, SECRET).json()["result"]
    tom_id = next(p["id"] for p in listed if p["id"] != yao_id)
    tile = driver.find_element(By.CSS_SELECTOR, f"#person-photos .tile[data-face='{faces['yao2']}']")
    Select(tile.find_element(By.CSS_SELECTOR, "select.move-to")).select_by_value(str(tom_id))
    wait(driver, lambda d: "Face moved to" in d.find_element(By.ID, "status").text)
    wait(driver, lambda d: len(tiles(d, "person-photos")) == 1)
    tom_person = server.call("GET", f"/persons/{tom_id}", USER, SECRET).json()["result"]
    assert tom_person["faces"] == 4

    # back to everyone: Yao Ming first; select both and merge them into Yao Ming
    driver.find_element(By.ID, "person-back").click()
    wait(driver, lambda d: [n for _, n in people(d)] == ["Yao Ming", f"Unnamed #{tom_id}"] and covers_shown(d))
    for tile in tiles(driver, "people-grid"):
        tile.find_element(By.CSS_SELECTOR, "input.choose").click()
    driver.find_element(By.ID, "merge-selected").click()
    wait(driver, lambda d: "Merged 2 people into Yao Ming." in d.find_element(By.ID, "status").text)
    wait(driver, lambda d: [n for _, n in people(d)] == ["Yao Ming"])
    merged = server.call("GET", f"/persons/{yao_id}", USER, SECRET).json()["result"]
    assert merged["faces"] == 5 and merged["name"] == "Yao Ming"
