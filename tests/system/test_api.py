"""Every endpoint and every error code, on each storage backend: through the Flask test client
on the embedded backend, and through two real replicas of a cluster taking turns.

Each test gets a fresh key (so a fresh gallery) on a backend shared by the module. What a
gunicorn process on the embedded backend does apart from the app (key changes made by another
process reach it at once, its worker refuses a body over the limit with the envelope) runs on
one too (``WITH_A_SERVER``): once per backend is enough for the rest, whose answers are the
app's whichever process serves them.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from index.lmdb import LmdbCatalog
from service.api.app import create_app
from service.core.config import Settings
from service.core.fetch import parse_networks
from service.core.keys import KeyRing
from service.core.services import build_services
from service.harness.live import LiveServer
from service.harness.photos import b64, blank, crop, flipped, package_photo, recompressed, scaled
from tests import loopback
from tests.cluster import Engines
from tests.live import API, basic, code_of

T = TypeVar("T")
T1 = "t1.jpg"  # six people
TOM = "Tom_Hanks_54745.png"


@dataclass
class Answer:
    status: int
    body: dict
    headers: Any
    raw: bytes


class Backend:
    """One way of calling the API: ``call(method, path, json=..., auth=(key, secret))``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def keys(self, change: Callable[[KeyRing], T]) -> T:
        """Change keys as ``scripts/keys.py`` does: from another LMDB handle."""
        catalog = LmdbCatalog(self.data_dir / "lmdb")
        try:
            return change(KeyRing(catalog.keys))
        finally:
            catalog.close()

    def new_key(self, quota: int | None = None) -> tuple[str, str]:
        made = self.keys(lambda ring: ring.create(quota=quota))
        return made.record.name, made.secret

    def call(self, method: str, path: str, auth: tuple[str, str] | None, **kwargs: Any) -> Answer:
        raise NotImplementedError


class FlaskBackend(Backend):
    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        settings = Settings().at(data_dir)
        self.settings = replace(
            settings,
            limits=replace(settings.limits, max_body_bytes=8 * 1024 * 1024),
            fetch=replace(settings.fetch, allow_networks=parse_networks("127.0.0.0/8")),
        )
        self.services = build_services(self.settings, serving=True)
        self.client = create_app(self.settings, self.services).test_client()

    def keys(self, change: Callable[[KeyRing], T]) -> T:
        return change(self.services.keys)  # LMDB allows one handle per file per process

    def call(self, method: str, path: str, auth: tuple[str, str] | None, **kwargs: Any) -> Answer:
        headers = basic(*auth) if auth else {}
        if isinstance(kwargs.get("data"), str):
            headers["Content-Type"] = "application/json"
        response = self.client.open(API + path, method=method, headers=headers, **kwargs)
        body = response.get_json(silent=True) or {}
        return Answer(response.status_code, body, response.headers, response.data)

    def close(self) -> None:
        self.services.close()


class HttpBackend(Backend):
    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        env = {
            "FACE_SEARCH_MAX_BODY_BYTES": str(8 * 1024 * 1024),
            "FACE_SEARCH_URL_ALLOW_NETWORKS": "127.0.0.0/8",
            # keys the filter tests use, held as typed fields of the Milvus rows (the others as JSON)
            "FACE_SEARCH_FILTER_KEYS": "status,year,customer.city,level",
        }
        self.server = LiveServer(data_dir, env).start()

    def call(self, method: str, path: str, auth: tuple[str, str] | None, **kwargs: Any) -> Answer:
        if isinstance(kwargs.get("data"), str):
            kwargs.setdefault("headers", {})["Content-Type"] = "application/json"
        response = requests.request(method, self.server.url + API + path, auth=auth, timeout=60, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = {}
        return Answer(response.status_code, body, response.headers, response.content)

    def close(self) -> None:
        self.server.stop()


class ReplicasBackend(HttpBackend):
    """Two replicas of a cluster taking turns: each request goes to the other one, so every
    write is read back through the replica that did not make it. The pair is the session's
    (``Engines.replicas``), shared with the other modules that test the API on it."""

    def __init__(self, data_dir: Path, engines: Engines) -> None:
        self.data_dir = data_dir
        env = {
            "FACE_SEARCH_MAX_BODY_BYTES": str(8 * 1024 * 1024),
            "FACE_SEARCH_URL_ALLOW_NETWORKS": "127.0.0.0/8",
            # keys the filter tests use, held as typed fields of the Milvus rows (the others as JSON)
            "FACE_SEARCH_FILTER_KEYS": "status,year,customer.city,level",
        }
        self.replicas = engines.replicas(env)
        self.turn = itertools.cycle(self.replicas.servers)

    def keys(self, change: Callable[[KeyRing], T]) -> T:
        return self.replicas.keys(change)

    def call(self, method: str, path: str, auth: tuple[str, str] | None, **kwargs: Any) -> Answer:
        """Both answer for one address, as behind a load balancer (the photo URLs they give agree)."""
        self.server = next(self.turn)
        kwargs.setdefault("headers", {})["Host"] = self.replicas.servers[0].url.removeprefix("http://")
        return super().call(method, path, auth, **kwargs)

    def close(self) -> None:
        """The replicas stay up for the next module; the session's end stops them."""


REPLICAS = pytest.param("replicas", marks=pytest.mark.cluster)


def with_a_server(test: Callable) -> Callable:
    """Run ``test`` on a gunicorn process over the embedded backend too."""
    test.with_a_server = True  # type: ignore[attr-defined]
    return test


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        kinds = (
            ["flask", "http", REPLICAS] if getattr(metafunc.function, "with_a_server", False) else ["flask", REPLICAS]
        )
        metafunc.parametrize("backend", kinds, indirect=True, scope="module")


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    data_dir = tmp_path_factory.mktemp(request.param)
    if request.param == "replicas":
        made: Backend = ReplicasBackend(data_dir, request.getfixturevalue("engines"))
    else:
        made = FlaskBackend(data_dir) if request.param == "flask" else HttpBackend(data_dir)
    yield made
    made.close()


class Client:
    """A key's view of the API, with the photo helpers the tests need."""

    def __init__(self, backend: Backend, key: str, secret: str) -> None:
        self.backend = backend
        self.auth = (key, secret)

    def call(self, method: str, path: str, **kwargs: Any) -> Answer:
        return self.backend.call(method, path, self.auth, **kwargs)

    def add(self, photo: bytes, metadata: dict | None = None) -> Answer:
        image: dict[str, Any] = {"base64": b64(photo)}
        if metadata is not None:
            image["metadata"] = metadata
        return self.call("POST", "/images", json={"image": image})

    def search(self, photo: bytes, **options: Any) -> Answer:
        return self.call("POST", "/search", json={"image": {"base64": b64(photo)}, **options})

    def ok(self, answer: Answer) -> Any:
        assert answer.status == 200 and code_of(answer.body) == 0, answer.body
        return answer.body["result"]


@pytest.fixture
def api(backend: Backend) -> Client:
    return Client(backend, *backend.new_key())


def refused(answer: Answer, code: int, status: int) -> None:
    assert answer.status == status, (answer.status, answer.body)
    assert code_of(answer.body) == code, answer.body
    assert answer.body["result"] is None
    assert isinstance(answer.body["message"], str) and answer.body["message"]


def unsigned(item: dict, *fields: str) -> dict:
    """The item (or only ``fields`` of it) with its links' signatures, which expire, cut off."""
    return {
        name: value.split("?")[0] if name in ("url", "thumbnail_url") else value
        for name, value in item.items()
        if not fields or name in fields
    }


# -- adding and reading ---------------------------------------------------------------


def test_add_indexes_every_face_and_lists_it(api: Client) -> None:
    added = api.ok(api.add(package_photo(T1), {"event": "team day", "n": 1}))
    assert added["id"] >= 1 and added["metadata"] == {"event": "team day", "n": 1}
    assert len(added["faces"]) == 6
    for face in added["faces"]:
        x1, y1, x2, y2 = face["bbox"]
        assert x2 > x1 and y2 > y1 and 0.5 <= face["score"] <= 1
    assert added["created_at"].endswith("+00:00")
    listed = api.call("GET", "/images")
    assert [unsigned(item) for item in api.ok(listed)] == [
        {
            "id": added["id"],
            **unsigned(added, "url", "thumbnail_url"),
            "metadata": added["metadata"],
            "faces": 6,
            "created_at": added["created_at"],
        }
    ]
    assert listed.body["total"] == 1


def test_url_serves_the_stored_bytes_to_the_owner_only(api: Client, backend: Backend) -> None:
    photo = package_photo(TOM)
    added = api.ok(api.add(photo))
    path = added["url"].split(API, 1)[1]
    answer = api.call("GET", path)
    assert answer.status == 200 and answer.raw == photo
    assert answer.headers["Content-Type"] == "image/png"
    stranger = Client(backend, *backend.new_key())
    refused(stranger.call("GET", path), 8, 404)


def test_pagination_is_by_ascending_id(api: Client) -> None:
    photo = package_photo(TOM)
    ids = [api.ok(api.add(photo, {"i": i}))["id"] for i in range(5)]
    assert ids == sorted(ids)
    pages = [api.call("GET", f"/images?offset={offset}&limit=2") for offset in (0, 2, 4)]
    assert [[item["id"] for item in api.ok(p)] for p in pages] == [ids[:2], ids[2:4], ids[4:]]
    assert all(p.body["total"] == 5 for p in pages)
    assert api.ok(api.call("GET", "/images?offset=5")) == []
    assert [item["id"] for item in api.ok(api.call("GET", "/images"))] == ids


@pytest.mark.parametrize("query", ["offset=-1", "limit=0", "limit=1001", "limit=abc", "offset=1.5", "limit="])
def test_bad_pagination_is_refused(api: Client, query: str) -> None:
    refused(api.call("GET", f"/images?{query}"), 7, 400)


# -- searching --------------------------------------------------------------------------


def test_search_finds_transformed_copies_of_the_same_person(api: Client) -> None:
    tom = package_photo(TOM)
    group = package_photo(T1)
    tom_id = api.ok(api.add(tom, {"name": "tom"}))["id"]
    api.ok(api.add(group))
    probes = [flipped(tom), scaled(tom, 2.0), recompressed(tom, 40), scaled(tom, 0.8)]
    for probe in probes:
        hits = api.ok(api.search(probe))
        assert hits and hits[0]["id"] == tom_id, hits
        assert hits[0]["metadata"] == {"name": "tom"} and hits[0]["score"] > 0.6
        assert set(hits[0]) == {"id", "url", "thumbnail_url", "metadata", "score", "bbox", "person"}


def test_group_photo_is_found_by_each_of_its_people(api: Client) -> None:
    group = package_photo(T1)
    added = api.ok(api.add(group))
    api.ok(api.add(package_photo(TOM)))
    for face in added["faces"]:
        probe = crop(group, face["bbox"], 2.0)
        hits = api.ok(api.search(probe))
        assert hits[0]["id"] == added["id"], (face, hits)
        assert hits[0]["bbox"] == face["bbox"], "the bbox is that of the matching face"


def test_search_answers_one_entry_per_image_best_first(api: Client) -> None:
    tom = package_photo(TOM)
    ids = [api.ok(api.add(variant))["id"] for variant in (tom, flipped(tom), scaled(tom, 0.6))]
    hits = api.ok(api.search(tom, top_k=10))
    assert sorted(hit["id"] for hit in hits) == sorted(ids)
    scores = [hit["score"] for hit in hits]
    assert scores == sorted(scores, reverse=True) and hits[0]["id"] == ids[0]
    assert len(api.ok(api.search(tom, top_k=2))) == 2


def test_threshold_filters_and_can_be_overridden(api: Client) -> None:
    api.ok(api.add(package_photo(T1)))
    tom = package_photo(TOM)
    assert api.ok(api.search(tom)) == [], "nobody in the group photo is Tom Hanks"
    hits = api.ok(api.search(tom, threshold=-1.0))
    assert len(hits) == 1 and hits[0]["score"] < 0.3


def test_empty_gallery_answers_an_empty_list(api: Client) -> None:
    assert api.ok(api.search(package_photo(TOM))) == []


def test_query_without_a_face_is_code_3(api: Client) -> None:
    refused(api.search(blank()), 3, 400)


# -- updating and deleting ----------------------------------------------------------------


def test_metadata_update_replaces_it_with_put_and_post(api: Client) -> None:
    image_id = api.ok(api.add(package_photo(TOM), {"a": 1}))["id"]
    assert api.ok(api.call("PUT", f"/images/{image_id}", json={"metadata": {"b": 2}}))["metadata"] == {"b": 2}
    assert api.ok(api.call("POST", f"/images/{image_id}", json={"metadata": {"c": [3]}}))["metadata"] == {"c": [3]}
    assert api.ok(api.call("GET", "/images"))[0]["metadata"] == {"c": [3]}
    assert api.ok(api.search(package_photo(TOM)))[0]["metadata"] == {"c": [3]}


def test_update_of_an_unknown_image_is_404(api: Client) -> None:
    refused(api.call("PUT", "/images/987654", json={"metadata": {}}), 8, 404)


@pytest.mark.parametrize(
    "metadata",
    [{"user": 1}, {"encoding": "x"}, {"_id": 5}, {"big": "x" * 17000}, ["not", "an", "object"], "text"],
)
def test_metadata_rules(api: Client, metadata: Any) -> None:
    refused(
        api.call("POST", "/images", json={"image": {"base64": b64(package_photo(TOM)), "metadata": metadata}}), 7, 400
    )
    image_id = api.ok(api.add(package_photo(TOM)))["id"]
    refused(api.call("PUT", f"/images/{image_id}", json={"metadata": metadata}), 7, 400)
    assert api.call("GET", "/images").body["total"] == 1, "refused adds store nothing"


def test_metadata_within_the_limit_is_kept(api: Client) -> None:
    metadata = {"note": "é" * 4000, "nested": {"list": [1, 2.5, None, True]}}
    assert api.ok(api.add(package_photo(TOM), metadata))["metadata"] == metadata


@pytest.mark.parametrize("method", ["DELETE", "POST"])
def test_delete_then_search_and_list(api: Client, method: str) -> None:
    tom = package_photo(TOM)
    keep = api.ok(api.add(package_photo(T1)))["id"]
    gone = [api.ok(api.add(tom))["id"], api.ok(api.add(flipped(tom)))["id"]]
    answer = api.call(method, "/images", json={"ids": [*gone, 99999999]})
    assert api.ok(answer) is None and answer.body["deleted"] == 2
    assert api.ok(api.search(tom)) == []
    assert [item["id"] for item in api.ok(api.call("GET", "/images"))] == [keep]
    refused(api.call("GET", f"/images/{gone[0]}/file"), 8, 404)


@pytest.mark.parametrize("ids", [[], "1", [0], [-3], [1.5], [True], ["7"], None])
def test_bad_ids_are_refused(api: Client, ids: Any) -> None:
    refused(api.call("DELETE", "/images", json={"ids": ids}), 7, 400)


# -- keys and isolation --------------------------------------------------------------------


def test_keys_never_see_each_others_images(api: Client, backend: Backend) -> None:
    tom = package_photo(TOM)
    mine = api.ok(api.add(tom, {"owner": "me"}))["id"]
    other = Client(backend, *backend.new_key())
    assert other.ok(other.call("GET", "/images")) == []
    assert other.ok(other.search(tom)) == []
    refused(other.call("PUT", f"/images/{mine}", json={"metadata": {"x": 1}}), 8, 404)
    refused(other.call("GET", f"/images/{mine}"), 8, 404)
    assert other.call("DELETE", "/images", json={"ids": [mine]}).body["deleted"] == 0
    assert api.ok(api.search(tom))[0]["metadata"] == {"owner": "me"}


@pytest.mark.parametrize(
    "auth", [None, ("nobody", "x"), ("wrong-secret", None)], ids=["missing", "unknown", "wrong-secret"]
)
def test_bad_credentials_are_code_5(api: Client, backend: Backend, auth: Any) -> None:
    if auth == ("wrong-secret", None):
        auth = (api.auth[0], api.auth[1] + "x")
    refused(backend.call("GET", "/images", auth), 5, 401)


@with_a_server
def test_quota_is_code_4_and_every_request_counts(backend: Backend) -> None:
    limited = Client(backend, *backend.new_key(quota=3))
    limited.ok(limited.call("GET", "/images"))
    refused(limited.search(blank()), 3, 400)
    limited.ok(limited.call("GET", "/images"))
    refused(limited.call("GET", "/images"), 4, 429)
    refused(limited.add(package_photo(TOM)), 4, 429)


@with_a_server
def test_revoked_key_is_refused_at_once(backend: Backend) -> None:
    client = Client(backend, *backend.new_key())
    client.ok(client.call("GET", "/images"))
    assert backend.keys(lambda ring: ring.revoke(client.auth[0]))
    refused(client.call("GET", "/images"), 5, 401)


# -- request shapes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, code",
    [
        ("not json", 7),
        ("[1, 2]", 7),
        ("{}", 1),
        ('{"image": "abc"}', 7),
        ('{"image": {}}', 1),
        ('{"image": {"base64": 12}}', 7),
        ('{"image": {"base64": ""}}', 1),
        ('{"image": {"base64": "***not base64***"}}', 1),
        ('{"image": {"base64": "aGVsbG8gd29ybGQ="}}', 1),
        ('{"format_type": "fax", "image": {"base64": "aGVsbG8="}}', 6),
        ('{"format_type": "url", "image": {"base64": "aGVsbG8="}}', 6),
        ('{"image": {"base64": "aGVsbG8=", "url": "http://127.0.0.1/x"}}', 6),
    ],
)
@pytest.mark.parametrize("path", ["/images", "/search"])
def test_bad_bodies_get_their_code(api: Client, path: str, body: str, code: int) -> None:
    refused(api.call("POST", path, data=body), code, 400)
    assert api.call("GET", "/images").body["total"] == 0


@pytest.mark.parametrize(
    "field, value",
    [("top_k", 0), ("top_k", 1001), ("top_k", True), ("top_k", "5"), ("threshold", 2), ("threshold", False)],
)
def test_bad_search_options_are_refused(api: Client, field: str, value: Any) -> None:
    refused(api.search(package_photo(TOM), **{field: value}), 7, 400)


def test_base64_variants_are_accepted(api: Client) -> None:
    encoded = b64(package_photo(TOM))
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    urlsafe = encoded.replace("+", "-").replace("/", "_").rstrip("=")
    for text in (f"data:image/png;base64,{encoded}", wrapped, urlsafe):
        assert api.ok(api.call("POST", "/images", json={"image": {"base64": text}}))["faces"]


@with_a_server
def test_payload_too_large_is_413_with_the_envelope(api: Client) -> None:
    refused(api.call("POST", "/images", data='{"image": {"base64": "' + "A" * (9 * 1024 * 1024) + '"}}'), 9, 413)


@with_a_server
def test_unknown_endpoint_and_method_get_the_envelope(api: Client) -> None:
    refused(api.call("GET", "/nothing-here"), 11, 404)
    refused(api.call("PATCH", "/images"), 11, 405)


# -- images by URL (served from a loopback server this test starts) ----------------------------


@pytest.fixture(scope="module")
def photo_server() -> Iterator[str]:
    files = {"/tom.png": (package_photo(TOM), "image/png"), "/page.html": (b"<html></html>", "text/html")}

    def answer(path: str) -> loopback.Answer:
        if path.startswith("/redirect/"):
            hops = int(path.rsplit("/", 1)[1])
            return 302, {"Location": f"/redirect/{hops - 1}" if hops > 1 else "/tom.png"}, b""
        if path not in files:
            return 404, {"Content-Type": "text/plain"}, b"not found"
        data, kind = files[path]
        return 200, {"Content-Type": kind}, data

    with loopback.serve(answer) as url:
        yield url


def test_image_by_url_is_added_and_searched(api: Client, photo_server: str) -> None:
    added = api.ok(
        api.call("POST", "/images", json={"format_type": "url", "image": {"url": photo_server + "/tom.png"}})
    )
    hits = api.ok(api.call("POST", "/search", json={"image": {"url": photo_server + "/redirect/3"}}))
    assert hits[0]["id"] == added["id"]


@pytest.mark.parametrize("path", ["/missing.png", "/page.html", "/redirect/4", "ftp://127.0.0.1/x"])
def test_unavailable_urls_are_code_2(api: Client, photo_server: str, path: str) -> None:
    url = path if "://" in path else photo_server + path
    refused(api.call("POST", "/images", json={"image": {"url": url}}), 2, 400)


@with_a_server
def test_a_key_made_by_another_process_works_at_once(backend: Backend) -> None:
    name, secret = "made-elsewhere-" + secrets.token_hex(3), "s3cret"
    backend.keys(lambda ring: ring.create(name, secret))
    client = Client(backend, name, secret)
    assert client.ok(client.call("GET", "/images")) == []


# -- multipart uploads -------------------------------------------------------------------------


def _multipart(api: Client, path: str, photo: bytes | None, **fields: str) -> Answer:
    if isinstance(api.backend, FlaskBackend):
        import io

        data: dict[str, Any] = dict(fields)
        if photo is not None:
            data["image"] = (io.BytesIO(photo), "photo.png")
        return api.call("POST", path, data=data, content_type="multipart/form-data")
    # a text part keeps the request multipart when it carries no photo
    files = {"image": ("photo.png", photo, "image/png")} if photo is not None else {"note": (None, "no photo")}
    return api.call("POST", path, data=fields, files=files)


def test_multipart_upload_adds_and_searches(api: Client) -> None:
    tom = package_photo(TOM)
    added = api.ok(_multipart(api, "/images", tom, metadata='{"via": "form"}'))
    assert added["metadata"] == {"via": "form"} and len(added["faces"]) == 1
    hits = api.ok(_multipart(api, "/search", flipped(tom), format_type="file", top_k="3"))
    assert [hit["id"] for hit in hits] == [added["id"]]


@pytest.mark.parametrize(
    "path, photo, fields, code",
    [
        ("/images", None, {}, 1),
        ("/images", b"", {}, 1),
        ("/images", b"not an image at all", {}, 1),
        ("/images", "tom", {"format_type": "base64"}, 6),
        ("/images", "tom", {"metadata": "{not json"}, 7),
        ("/search", "tom", {"top_k": "many"}, 7),
        ("/search", "tom", {"threshold": "true"}, 7),
    ],
)
def test_bad_multipart_uploads_get_their_code(api: Client, path: str, photo: Any, fields: dict, code: int) -> None:
    data = package_photo(TOM) if photo == "tom" else photo
    refused(_multipart(api, path, data, **fields), code, 400)
    assert api.call("GET", "/images").body["total"] == 0


def test_json_cannot_claim_to_be_a_file_upload(api: Client) -> None:
    refused(api.call("POST", "/images", json={"image": {"file": b64(package_photo(TOM))}}), 6, 400)


@pytest.mark.parametrize(
    "path",
    [
        "/images/..%2F..%2F..%2Fetc%2Fpasswd/file",
        "/images/../../lmdb/data.mdb",
        "/images/%2e%2e/file",
        "/images/-1/file",
        "/images/1e3/file",
        "/images/99999999999999999999999/file",
        "/images/0x1/file",
    ],
)
def test_paths_never_reach_files_outside_the_gallery(api: Client, path: str) -> None:
    api.ok(api.add(package_photo(TOM)))
    answer = api.call("GET", path)
    assert answer.status in (404, 405) and answer.body["status_code"] in (8, 11), (answer.status, answer.raw[:100])
    assert b"root:" not in answer.raw and b"\x89PNG" not in answer.raw


def test_metadata_nesting_and_ids_length_are_limited(api: Client) -> None:
    deep: dict = {"leaf": 1}
    for _ in range(8):
        deep = {"n": deep}
    refused(api.add(package_photo(TOM), deep), 7, 400)
    api.ok(api.add(package_photo(TOM), deep["n"]))
    refused(api.call("DELETE", "/images", json={"ids": list(range(1, 1002))}), 7, 400)
    assert api.call("DELETE", "/images", json={"ids": list(range(1, 1001))}).body["deleted"] == 1
