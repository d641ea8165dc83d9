"""Every persons endpoint and each of its refusals, through the Flask test client and through a
cluster's two replicas taking turns (PostgreSQL and Milvus, a grouping run in a replica's child
process); and two real clients racing to move one face on a real server: exactly one wins."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from service.harness.live import LiveServer
from service.harness.photos import b64, flipped, package_photo, recompressed, scaled
from tests.live import API
from tests.system.test_api import Backend, Client, FlaskBackend, ReplicasBackend, refused

TOM, YAO, GROUP = package_photo("Tom_Hanks_54745.png"), package_photo("yaoming.jpg"), package_photo("t1.jpg")


@pytest.fixture(scope="module", params=["flask", pytest.param("replicas", marks=pytest.mark.cluster)])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    data_dir = tmp_path_factory.mktemp(request.param)
    if request.param == "replicas":
        made: Backend = ReplicasBackend(data_dir, request.getfixturevalue("engines"))
    else:
        made = FlaskBackend(data_dir)
    yield made
    made.close()


@pytest.fixture
def api(backend: Backend) -> Client:
    return Client(backend, *backend.new_key())


def grouped(api: Client, full: bool = False) -> dict:
    """Start a grouping run and wait for its job to end; the job."""
    started = api.ok(api.call("POST", "/persons/cluster", json={"full": True} if full else None))
    for _ in range(600):
        job = api.ok(api.call("GET", f"/jobs/{started['job']}"))
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError("the grouping run did not end")


def people(api: Client) -> list[dict]:
    return api.ok(api.call("GET", "/persons?limit=1000"))


def added(api: Client, photo: bytes) -> dict:
    return api.ok(api.add(photo))


def test_a_tour_of_persons(api: Client) -> None:
    toms = [added(api, photo) for photo in (TOM, flipped(TOM), scaled(TOM, 0.8))]
    for photo in (YAO, flipped(YAO), scaled(YAO, 0.7)):
        added(api, photo)
    group = added(api, GROUP)
    assert all(face["person"] is None for image in toms for face in image["faces"]), "no person yet"
    job = grouped(api)
    assert job["state"] == "done" and job["kind"] == "group_faces" and job["done"] == job["total"] > 0
    found = people(api)
    assert len(found) == 2 and all(p["name"] == "" and p["faces"] == p["images"] == 3 for p in found)
    tom = next(p for p in found if p["cover"]["image_id"] in {image["id"] for image in toms})
    assert set(tom) == {"id", "name", "metadata", "faces", "images", "cover"}
    assert set(tom["cover"]) == {"image_id", "face_id", "bbox"}
    named = api.ok(api.call("PUT", f"/persons/{tom['id']}", json={"name": "Tom Hanks", "metadata": {"a": 1}}))
    assert (named["name"], named["metadata"], named["faces"]) == ("Tom Hanks", {"a": 1}, 3)
    assert people(api)[0]["id"] == tom["id"], "named persons first"
    assert api.ok(api.call("GET", f"/persons/{tom['id']}")) == named
    photos = api.call("GET", f"/persons/{tom['id']}/images?limit=2")
    assert [p["id"] for p in api.ok(photos)] == [toms[2]["id"], toms[1]["id"]] and photos.body["total"] == 3
    assert api.ok(photos)[0]["face"]["id"] == toms[2]["faces"][0]["id"]
    image = api.ok(api.call("GET", f"/images/{toms[0]['id']}"))
    assert image["faces"][0]["person"] == {"id": tom["id"], "name": "Tom Hanks"}
    assert all(face["person"] is None for face in api.ok(api.call("GET", f"/images/{group['id']}"))["faces"])
    hit = api.ok(api.search(TOM))[0]
    assert hit["person"] == {"id": tom["id"], "name": "Tom Hanks"}
    new = added(api, recompressed(TOM, 50))
    assert new["faces"][0]["person"] == {"id": tom["id"], "name": "Tom Hanks"}, "an add joins the person at once"
    persons = api.ok(api.call("POST", "/persons/search", json={"image": {"base64": b64(flipped(TOM))}}))
    assert [p["id"] for p in persons] == [tom["id"]] and persons[0]["score"] > 0.6
    assert persons[0]["face"]["face_id"] in {image["faces"][0]["id"] for image in [*toms, new]}
    assert api.ok(api.call("POST", "/persons/search", json={"image": {"base64": b64(GROUP)}})) == []
    api.ok(api.call("PUT", f"/images/{toms[1]['id']}", json={"collection": "gala", "metadata": {"table": 4}}))
    for narrowing in ("collection=gala", "filter=%7B%22table%22%3A4%7D", "collection=gala&created_after=2000-01-01"):
        photos = api.call("GET", f"/persons/{tom['id']}/images?{narrowing}")
        assert [p["id"] for p in api.ok(photos)] == [toms[1]["id"]] and photos.body["total"] == 1, narrowing
    query = {"image": {"base64": b64(flipped(TOM))}}
    in_gala = api.ok(api.call("POST", "/persons/search", json={**query, "collection": "gala"}))
    assert [(p["id"], p["face"]["face_id"]) for p in in_gala] == [(tom["id"], toms[1]["faces"][0]["id"])]
    assert api.ok(api.call("POST", "/persons/search", json={**query, "filter": {"table": 5}})) == []
    thumbnail = api.call("GET", f"/faces/{tom['cover']['face_id']}/thumbnail")
    assert thumbnail.status == 200 and thumbnail.headers["Content-Type"] == "image/jpeg"
    assert thumbnail.raw[:3] == b"\xff\xd8\xff"


def test_persons_are_made_moved_split_merged_and_deleted_by_hand(api: Client, backend: Backend) -> None:
    group = added(api, GROUP)
    faces = [face["id"] for face in group["faces"]]
    refused(api.call("POST", "/persons", json={"name": "two of one photo", "face_ids": faces[:2]}), 18, 409)
    toms = [added(api, photo) for photo in (TOM, flipped(TOM))]
    tom_faces = [image["faces"][0]["id"] for image in toms]
    one = api.ok(api.call("POST", "/persons", json={"name": "One", "face_ids": [faces[0], tom_faces[0]]}))
    assert (one["name"], one["faces"]) == ("One", 2)
    two = api.ok(api.call("POST", "/persons", json={"name": "Two", "image": {"base64": b64(scaled(TOM, 0.7))}}))
    assert two["faces"] == 1 and two["cover"]["image_id"] not in {group["id"], *[t["id"] for t in toms]}
    moved = api.ok(
        api.call("POST", f"/persons/{two['id']}/faces", json={"face_ids": [tom_faces[0]], "from": one["id"]})
    )
    assert moved["faces"] == 2
    again = {"face_ids": [tom_faces[0]], "from": one["id"]}  # a second client that saw it in One
    refused(api.call("POST", f"/persons/{one['id']}/faces", json=again), 18, 409)
    free = api.ok(api.call("POST", f"/persons/{two['id']}/faces", json={"face_ids": [tom_faces[1]], "from": None}))
    assert free["faces"] == 3
    left = api.ok(api.call("DELETE", f"/persons/{two['id']}/faces", json={"face_ids": [tom_faces[1]]}))
    assert left["faces"] == 2
    refused(api.call("DELETE", f"/persons/{two['id']}/faces", json={"face_ids": [faces[3]]}), 18, 409)
    merged = api.ok(api.call("POST", f"/persons/{one['id']}/merge", json={"ids": [two["id"]]}))
    assert (merged["id"], merged["name"], merged["faces"]) == (one["id"], "One", 3)
    refused(api.call("GET", f"/persons/{two['id']}"), 15, 404)
    refused(api.call("POST", f"/persons/{one['id']}/merge", json={"ids": [one["id"]]}), 7, 400)
    refused(api.call("POST", f"/persons/{one['id']}/merge", json={"ids": [987654321]}), 15, 404)
    assert api.ok(api.call("DELETE", f"/persons/{one['id']}")) is None
    assert people(api) == [] and api.ok(api.call("GET", f"/images/{group['id']}"))["faces"][0]["person"] is None
    assert grouped(api, full=True)["state"] == "done" and people(api) == [], "a deleted person's faces stay free"


def test_forget_deletes_the_faces_and_the_photos_left_without_one(api: Client) -> None:
    group = added(api, GROUP)
    alone = added(api, TOM)
    person = api.ok(
        api.call("POST", "/persons", json={"name": "F", "face_ids": [alone["faces"][0]["id"], group["faces"][0]["id"]]})
    )
    answer = api.call("DELETE", f"/persons/{person['id']}", json={"forget": True})
    assert api.ok(answer) is None
    assert sorted(answer.body["deleted_faces"]) == sorted([alone["faces"][0]["id"], group["faces"][0]["id"]])
    assert answer.body["deleted_images"] == [alone["id"]]
    refused(api.call("GET", f"/images/{alone['id']}"), 8, 404)
    refused(api.call("GET", f"/images/{alone['id']}/file"), 8, 404)
    assert len(api.ok(api.call("GET", f"/images/{group['id']}"))["faces"]) == 5
    assert api.ok(api.search(TOM, threshold=0.5)) == [], "no index answers a forgotten face"
    refused(api.call("GET", f"/faces/{alone['faces'][0]['id']}/thumbnail"), 16, 404)


def test_each_refusal_has_its_code(api: Client, backend: Backend) -> None:
    other = Client(backend, *backend.new_key())
    theirs = added(other, TOM)
    mine = added(api, YAO)
    theirs_face, mine_face = theirs["faces"][0]["id"], mine["faces"][0]["id"]
    refused(api.call("POST", "/persons", json={"name": "stolen", "face_ids": [theirs_face]}), 16, 404)
    refused(api.call("POST", "/persons", json={"name": "nobody", "face_ids": [987654321]}), 16, 404)
    refused(api.call("GET", f"/faces/{theirs_face}/thumbnail"), 16, 404)
    person = api.ok(api.call("POST", "/persons", json={"name": "mine", "face_ids": [mine_face]}))
    for method, path in (("GET", ""), ("PUT", ""), ("DELETE", ""), ("GET", "/images"), ("POST", "/merge")):
        body = {"ids": [987654321]} if path == "/merge" else {"name": "x"} if method == "PUT" else None
        refused(other.call(method, f"/persons/{person['id']}{path}", json=body), 15, 404)
    refused(other.call("POST", f"/persons/{person['id']}/faces", json={"face_ids": [theirs_face]}), 15, 404)
    job = api.ok(api.call("POST", "/persons/cluster"))["job"]
    refused(other.call("GET", f"/jobs/{job}"), 17, 404)
    refused(api.call("GET", "/jobs/987654321"), 17, 404)
    bad: list[tuple[str, str, Any]] = [
        ("POST", "/persons", {"face_ids": [mine_face]}),
        ("POST", "/persons", {"name": "neither"}),
        ("POST", "/persons", {"name": "both", "face_ids": [mine_face], "image": {"base64": b64(TOM)}}),
        ("POST", "/persons", {"name": "x" * 201, "face_ids": [mine_face]}),
        ("POST", "/persons", {"name": "line\nbreak", "face_ids": [mine_face]}),
        ("POST", "/persons", {"name": "x", "face_ids": []}),
        ("POST", "/persons", {"name": "x", "face_ids": ["1"]}),
        ("PUT", f"/persons/{person['id']}", {"name": 5}),
        ("PUT", f"/persons/{person['id']}", {"metadata": {"user": 1}}),
        ("DELETE", f"/persons/{person['id']}", {"forget": "yes"}),
        ("POST", f"/persons/{person['id']}/merge", {"ids": []}),
        ("POST", f"/persons/{person['id']}/faces", {"face_ids": [mine_face], "from": 0}),
        ("DELETE", f"/persons/{person['id']}/faces", {}),
        ("POST", "/persons/search", {"image": {"base64": b64(TOM)}, "top_k": 0}),
        ("POST", "/persons/search", {"image": {"base64": b64(TOM)}, "filter": {"year": {"$near": 1}}}),
        ("POST", "/persons/cluster", {"full": 1}),
    ]
    for method, path, body in bad:
        refused(api.call(method, path, json=body), 7, 400)
    refused(api.call("GET", "/persons?limit=0"), 7, 400)
    refused(api.call("POST", "/persons/search", json={}), 1, 400)
    refused(api.call("POST", "/persons/search", json={"image": {"base64": b64(package_photo("t1.jpg")[:200])}}), 1, 400)
    assert api.ok(api.call("GET", f"/persons/{person['id']}"))["name"] == "mine", "refused changes changed nothing"


@pytest.mark.slow
def test_one_face_moved_twice_at_once_from_two_clients_exactly_one_wins(tmp_path) -> None:
    """Two clients on two connections (the server's two workers) move the face each saw in one
    person, into two other persons, at the same moment; every round, one move is acknowledged,
    the other refused with code 18, and the face is where the winner put it."""
    server = LiveServer(tmp_path / "data", {"FACE_SEARCH_WORKERS": "2", "FACE_SEARCH_RATE_LIMIT": "0"}).start()
    try:
        faces = [server.call("POST", "/images", json={"image": {"base64": b64(p)}}).json()["result"]["faces"][0]["id"]
                 for p in (TOM, YAO, flipped(TOM))]  # fmt: skip
        make = lambda name, face: server.call("POST", "/persons", json={"name": name, "face_ids": [face]}).json()  # noqa: E731
        left, right = make("left", faces[1])["result"]["id"], make("right", faces[2])["result"]["id"]
        for round_ in range(12):
            start = make(f"start {round_}", faces[0])["result"]["id"]
            barrier, answers = threading.Barrier(2), {}

            def move(target: int, start: int, barrier: threading.Barrier, answers: dict) -> None:
                session = requests.Session()  # a connection of its own
                session.auth = ("test-key", "test-secret")
                barrier.wait()
                answers[target] = session.post(
                    f"{server.url}{API}/persons/{target}/faces",
                    json={"face_ids": [faces[0]], "from": start},
                    timeout=60,
                ).json()

            racers = [threading.Thread(target=move, args=(target, start, barrier, answers)) for target in (left, right)]
            for racer in racers:
                racer.start()
            for racer in racers:
                racer.join()
            codes = sorted(answer["status_code"] for answer in answers.values())
            assert codes == [0, 18], answers
            winner = next(target for target, answer in answers.items() if answer["status_code"] == 0)
            image = server.call("GET", f"/images/{_image_of(server, faces[0])}").json()["result"]
            assert image["faces"][0]["person"]["id"] == winner
    finally:
        server.stop()


def _image_of(server: LiveServer, face_id: int) -> int:
    images = server.call("GET", "/images?limit=10").json()["result"]
    for image in images:
        detail = server.call("GET", f"/images/{image['id']}").json()["result"]
        if any(face["id"] == face_id for face in detail["faces"]):
            return image["id"]
    raise AssertionError(f"no image holds face {face_id}")
