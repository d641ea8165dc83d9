"""The typed client and the ``face-search`` command, against a real server process."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest
import requests

from face_search_client import FaceMatches, FaceSearchClient, FaceSearchError, Hit, Image, ImageSummary
from face_search_client.cli import main
from service.harness.live import KEY, SECRET, LiveServer
from service.harness.photos import blank, crop, flipped, package_photo
from tests.system.test_api import photo_server  # noqa: F401 - a fixture: photos served on loopback

T = TypeVar("T")
TOM = "Tom_Hanks_54745.png"
GROUP = "t1.jpg"


def unsigned(image: T) -> T:
    """The image with its links' signatures, which expire, cut off: two answers may sign them apart."""
    return replace(image, url=image.url.split("?")[0], thumbnail_url=image.thumbnail_url.split("?")[0])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {"FACE_SEARCH_URL_ALLOW_NETWORKS": "127.0.0.0/8"}
    live = LiveServer(tmp_path_factory.mktemp("client"), env).start()
    yield live
    live.stop()


@pytest.fixture
def api(server: LiveServer) -> Iterator[FaceSearchClient]:
    """A fresh key (so an empty gallery) for each test."""
    yield FaceSearchClient(server.url, *server.new_key())


def test_every_endpoint(api: FaceSearchClient, tmp_path: Path) -> None:
    tom = package_photo(TOM)
    path = tmp_path / "tom.png"
    path.write_bytes(tom)
    added = api.add_image(path, {"name": "tom"})
    assert isinstance(added, Image) and added.metadata == {"name": "tom"} and len(added.faces) == 1
    assert len(added.faces[0].bbox) == 4 and 0.5 < added.faces[0].score <= 1
    group = api.add_image(package_photo(GROUP))
    assert len(group.faces) == 6 and group.metadata == {}

    page = api.list_images(limit=1)
    assert (
        page.total == 2
        and page.limit == 1
        and [unsigned(image) for image in page.images]
        == [unsigned(ImageSummary(added.id, added.url, added.thumbnail_url, {"name": "tom"}, 1, added.created_at))]
    )
    assert [image.id for image in api.iter_images(page_size=1)] == [added.id, group.id]
    assert unsigned(api.get_image(group.id)) == unsigned(group)
    assert api.photo(added.id) == tom
    assert requests.get(added.url, timeout=30).content == tom, "the url is a signed link: no credentials needed"
    assert requests.get(added.thumbnail_url, timeout=30).content[:3] == b"\xff\xd8\xff", "a JPEG thumbnail"

    hits = api.search(flipped(tom))
    assert [type(hit) for hit in hits] == [Hit] and hits[0].id == added.id and hits[0].score > 0.6
    assert hits[0].bbox == added.faces[0].bbox and hits[0].metadata == {"name": "tom"}
    per_face = api.search_all_faces(package_photo(GROUP), top_k=1)
    assert len(per_face) == 6 and all(isinstance(face, FaceMatches) for face in per_face)
    assert all(face.hits[0].id == group.id for face in per_face)

    assert api.update_metadata(added.id, {"name": "Tom Hanks"}).metadata == {"name": "Tom Hanks"}
    state = api.index_state()
    assert (state.kind, state.vectors) == ("flat", 7)

    deleted = api.delete_images([added.id, 99_999_999])
    assert (deleted.count, deleted.ids) == (1, [added.id])
    assert api.search(tom) == []


def test_images_by_url(api: FaceSearchClient, photo_server: str) -> None:  # noqa: F811
    added = api.add_image(url=photo_server + "/tom.png", metadata={"via": "url"})
    assert added.metadata == {"via": "url"}
    assert api.search(url=photo_server + "/tom.png")[0].id == added.id


@pytest.mark.parametrize(
    "call, code, http_status",
    [
        (lambda c: c.search(blank()), 3, 400),
        (lambda c: c.add_image(b"not a photo"), 1, 400),
        (lambda c: c.get_image(424242), 8, 404),
        (lambda c: c.update_metadata(424242, {}), 8, 404),
        (lambda c: c.search(package_photo(TOM), top_k=0), 7, 400),
        (lambda c: FaceSearchClient(c.base, KEY, SECRET + "x").list_images(), 5, 401),
        (lambda c: FaceSearchClient("http://127.0.0.1:9").list_images(), -1, 0),
    ],
)
def test_refusals_raise_with_the_code_and_message(api: FaceSearchClient, call, code: int, http_status: int) -> None:
    with pytest.raises(FaceSearchError) as raised:
        call(api)
    assert (raised.value.status_code, raised.value.http_status) == (code, http_status)
    assert raised.value.message and str(raised.value) == f"code {code}: {raised.value.message}"


def run_cli(api: FaceSearchClient, *args: str, capsys: pytest.CaptureFixture) -> tuple[int, object, str]:
    key, secret = api.session.auth
    status = main(["--url", api.base, "--key", key, f"--secret={secret}", *args])
    out, err = capsys.readouterr()
    return status, json.loads(out) if out.strip() else None, err


def test_command_line(api: FaceSearchClient, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tom = tmp_path / "tom.png"
    tom.write_bytes(package_photo(TOM))
    status, added, _ = run_cli(api, "add", str(tom), "--metadata", '{"who": "tom"}', capsys=capsys)
    assert status == 0 and added["metadata"] == {"who": "tom"}

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "yao.jpg").write_bytes(package_photo("yaoming.jpg"))
    (folder / "sub" / "players.jpg").write_bytes(package_photo("players.jpg"))
    (folder / "empty.png").write_bytes(blank())
    (folder / "notes.txt").write_text("not a photo")
    status, summary, err = run_cli(api, "import", str(folder), "--metadata", '{"set": "a"}', capsys=capsys)
    assert status == 0, err
    assert summary["added"] == 2 and summary["no_face"] == ["empty.png"] and summary["failed"] == {}
    assert "3/3" in err, "a progress bar on stderr"
    listed = api.list_images()
    assert sorted(i.metadata.get("file", "") for i in listed.images) == ["", "sub/players.jpg", "yao.jpg"]

    probe = tmp_path / "probe.jpg"
    probe.write_bytes(crop(package_photo(TOM), list(api.get_image(added["id"]).faces[0].bbox), 2.0))
    status, hits, _ = run_cli(api, "search", str(probe), "--top-k", "3", capsys=capsys)
    assert status == 0 and hits[0]["id"] == added["id"]
    status, page, _ = run_cli(api, "list", "--limit", "2", capsys=capsys)
    assert status == 0 and page["total"] == 3 and len(page["images"]) == 2
    status, deleted, _ = run_cli(api, "delete", str(added["id"]), capsys=capsys)
    assert status == 0 and deleted == {"count": 1, "ids": [added["id"]]}
    status, _, err = run_cli(api, "search", str(folder / "empty.png"), capsys=capsys)
    assert status == 1 and "code 3" in err


def test_both_search_methods_take_the_same_options() -> None:
    """They stay two methods for their typed answers; the CLI picks one and passes the same options."""
    search = inspect.signature(FaceSearchClient.search).parameters
    assert search == inspect.signature(FaceSearchClient.search_all_faces).parameters


def test_console_script_is_installed(api: FaceSearchClient) -> None:
    script = Path(sys.executable).parent / "face-search"
    key, secret = api.session.auth
    done = subprocess.run(
        # --secret=...: a generated secret may start with "-", which argparse takes for an option
        [str(script), "--url", api.base, "--key", key, f"--secret={secret}", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["total"] == 0
