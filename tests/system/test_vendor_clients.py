"""The vendor's deployed clients, replayed against a real gunicorn as they send their requests:
the v1 paths, the header forms of their HTTP libraries (byte for byte, through a raw socket),
no Content-Type, numbers and nested objects in metadata, the three pairs of names they read
an answer's code and message under, and photo links put straight into ``<img>`` tags.
docs/vendor-api.md lists each behaviour with the test that covers it.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from PIL import Image

from service.api.app import create_app
from service.api.server import refusal
from service.core.config import Settings
from service.core.services import build_services
from service.harness.live import KEY, SECRET, LiveServer
from service.harness.photos import b64, blank, flipped, package_photo
from tests.live import API, CODE_PAIRS, ROOT, RawAnswer, basic, code_of, raw_http
from tests.prometheus import samples, value

V1 = "/backend/api/v1/request/face_search"
TOM, GROUP = "Tom_Hanks_54745.png", "t1.jpg"
LINK_SECONDS = 4  # short, so that a test sees a link expire


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {"FACE_SEARCH_LINK_SECONDS": str(LINK_SECONDS), "FACE_SEARCH_MAX_BODY_BYTES": str(4 << 20)}
    live = LiveServer(tmp_path_factory.mktemp("vendor"), env).start()
    yield live
    live.stop()


@pytest.fixture
def auth(server: LiveServer) -> tuple[str, str]:
    """A fresh key, so an empty gallery."""
    return server.new_key()


def raw(server: LiveServer, method: str, path: str, body: bytes | None, headers: list[str], auth: tuple[str, str]):
    """The request as a client library writes it: these header lines exactly, then the body."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", *basic(*auth).items(), *headers]
    lines = [f"{line[0]}: {line[1]}" if isinstance(line, tuple) else line for line in lines]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return raw_http(server.port, ("\r\n".join([*lines, "Connection: close"]) + "\r\n\r\n").encode() + (body or b""))


def photo_body(photo: bytes, metadata: dict | None = None) -> bytes:
    image = {"base64": b64(photo), **({"metadata": metadata} if metadata is not None else {})}
    return json.dumps({"image": image}).encode()


def ok(answer: RawAnswer | requests.Response) -> dict:
    body = answer.json()
    assert answer.status_code if isinstance(answer, requests.Response) else answer.status == 200, body
    assert code_of(body) == 0, body
    return body


def refused(answer: RawAnswer | requests.Response, code: int, status: int) -> str:
    """The refusal's message, once it is seen to be the envelope with this code and status."""
    got = answer.status_code if isinstance(answer, requests.Response) else answer.status
    content_type = answer.headers["content-type"] if isinstance(answer, RawAnswer) else answer.headers["Content-Type"]
    assert content_type == "application/json" and got == status, (got, answer.json())
    body = answer.json()
    assert code_of(body) == code and body["result"] is None, body
    return body["message"]


def listed(server: LiveServer, auth: tuple[str, str]) -> list[dict]:
    return ok(server.call("GET", "/images", *auth))["result"]


# -- the header forms of their HTTP libraries -------------------------------------------------

HEADER_FORMS = {
    "the same Content-Type twice (a PHP library adds its own beside the app's)": [
        "Content-Type: application/json",
        "Content-Type: application/json",
    ],
    "twice, once with a charset": ["Content-Type: application/json", "Content-Type: application/json; charset=UTF-8"],
    "twice, the charset in two cases": [
        "Content-Type: application/json; charset=utf-8",
        "Content-Type: application/json;charset=UTF-8",
    ],
    "Content-Type without a space": ["Content-Type:application/json"],
    "no Content-Type (the vendor's Python demos post a JSON string)": [],
    "a form's Content-Type on a JSON body (curl's default for a posted string)": [
        "Content-Type: application/x-www-form-urlencoded"
    ],
}
FAMILIES = {"v2": (f"{API}/images", f"{API}/search"), "v1": (f"{V1}/add", f"{V1}/search")}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("form", HEADER_FORMS)
def test_each_header_form_adds_and_searches(server: LiveServer, auth: tuple[str, str], form: str, family: str) -> None:
    add, search = FAMILIES[family]
    tom = package_photo(TOM)
    added = ok(raw(server, "POST", add, photo_body(tom, {"form": form}), HEADER_FORMS[form], auth))["result"]
    hits = ok(raw(server, "POST", search, photo_body(flipped(tom)), HEADER_FORMS[form], auth))["result"]
    assert [hit["id"] for hit in hits] == [added["id"]] and hits[0]["metadata"] == {"form": form}


@pytest.mark.parametrize(
    "first, second",
    [
        ("application/json", "text/plain"),
        ("application/json; charset=UTF-8", "application/json; charset=ISO-8859-1"),
        ("multipart/form-data; boundary=x", "application/json"),
    ],
)
def test_content_types_that_disagree_are_refused_with_the_envelope(
    server: LiveServer, auth: tuple[str, str], first: str, second: str
) -> None:
    headers = [f"Content-Type: {first}", f"Content-Type: {second}"]
    for path in (f"{API}/images", f"{V1}/add"):
        message = refused(raw(server, "POST", path, photo_body(package_photo(TOM)), headers, auth), 7, 400)
        assert "Content-Type headers that disagree" in message and first in message and second in message
    assert listed(server, auth) == [], "nothing was stored"


def _request(*lines: str, body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


SERVER_REFUSALS = {
    "a malformed request line": (_request("GARBAGE"), 400),
    "a request line without its HTTP version": (_request(f"GET {API}/images", "Host: x"), 400),
    "an unknown HTTP version": (_request(f"GET {API}/images HTTP/3.0", "Host: x"), 400),
    "a lower-case method": (_request(f"get {API}/images HTTP/1.1", "Host: x"), 400),
    "a header name with a space": (_request(f"GET {API}/images HTTP/1.1", "Host: x", "Bad Name: 1"), 400),
    "a header line without a colon": (_request(f"GET {API}/images HTTP/1.1", "Host: x", "no colon here"), 400),
    "a control character in a header value": (_request(f"GET {API}/images HTTP/1.1", "Host: x", "X-A: a\x01b"), 400),
    "two Host headers": (_request(f"GET {API}/images HTTP/1.1", "Host: a", "Host: b"), 400),
    "two Content-Length headers": (
        _request(f"POST {API}/search HTTP/1.1", "Host: x", "Content-Length: 2", "Content-Length: 2", body=b"{}"),
        400,
    ),
    "a request line over the limit": (_request(f"GET {API}/images?{'a' * 9000} HTTP/1.1", "Host: x"), 414),
    "a header over the limit": (_request(f"GET {API}/images HTTP/1.1", "Host: x", "X-Big: " + "a" * 9000), 431),
    "more header lines than allowed": (
        _request(f"GET {API}/images HTTP/1.1", "Host: x", *(f"X-H{i}: 1" for i in range(120))),
        431,
    ),
    "a transfer coding the server does not know": (
        _request(f"POST {API}/search HTTP/1.1", "Host: x", "Transfer-Encoding: zip", body=b"{}"),
        501,
    ),
    "an expectation the server cannot meet": (
        _request(f"POST {API}/search HTTP/1.1", "Host: x", "Expect: the-moon", "Content-Length: 2", body=b"{}"),
        417,
    ),
    "a broken chunked body": (
        _request(
            f"POST {API}/search HTTP/1.1", "Host: x", f"Authorization: {basic()['Authorization']}",
            "Transfer-Encoding: chunked", body=b"zz\r\nabc\r\n0\r\n\r\n",
        ),
        400,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", SERVER_REFUSALS)
def test_what_the_http_server_refuses_answers_the_envelope(server: LiveServer, case: str) -> None:
    request, status = SERVER_REFUSALS[case]
    answer = raw_http(server.port, request)
    assert b"<html" not in answer.body.lower()
    message = refused(answer, 7, status)
    assert message.startswith("Malformed request: ") and len(message) > len("Malformed request: ") + 10
    assert answer.headers["x-request-id"]


def test_an_error_page_of_the_server_becomes_the_envelope_without_the_other_names() -> None:
    page = (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Type: text/html\r\n"
        b"Content-Length: 9\r\n\r\n<html><head></head><body><h1><p>Too Large</p></h1>\n"
        b"Error parsing headers: &#x27;limit&#x27;\n</body></html>"
    )
    for aliases, names in ((True, {n for pair in CODE_PAIRS for n in pair}), (False, {"status_code", "message"})):
        head, _, body = refusal(page, aliases).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n") and b"application/json" in head
        answer = json.loads(body)
        assert set(answer) == {"result", *names} and answer["status_code"] == 7
        assert answer["message"].endswith("(Request Header Fields Too Large): Error parsing headers: 'limit'")


# -- the v1 paths --------------------------------------------------------------------------------


def test_the_v1_paths_serve_a_client_written_for_them(server: LiveServer, auth: tuple[str, str]) -> None:
    tom, group = package_photo(TOM), package_photo(GROUP)

    def v1(path: str, **kwargs: object) -> requests.Response:
        return requests.request(
            "GET" if path.startswith("/get_all") else "POST", server.url + V1 + path, auth=auth, timeout=60, **kwargs
        )

    # PHP's JSON_NUMERIC_CHECK turns numeric strings into numbers; metadata may nest objects
    metadata = {"name": "Tom", "customer_id": 1234567, "score": 0.75, "address": {"zip": 10115, "city": "Berlin"}}
    added = ok(v1("/add", json={"image": {"base64": b64(tom), "metadata": metadata}}))["result"]
    assert added["metadata"] == metadata and len(added["faces"]) == 1
    # the vendor's Python demos: a JSON string posted with data=, so no Content-Type
    body = json.dumps({"image": {"base64": b64(group), "metadata": {"name": "team", "n": 6}}})
    other = ok(v1("/add", data=body))["result"]
    assert len(other["faces"]) == 6

    page = ok(v1("/get_all_images?offset=0&limit=10"))
    assert [item["id"] for item in page["result"]] == [added["id"], other["id"]] and page["total"] == 2
    assert ok(v1("/get_all_images?offset=1&limit=1"))["result"][0]["metadata"] == {"name": "team", "n": 6}
    hits = ok(v1("/search", json={"image": {"base64": b64(flipped(tom))}}))["result"]
    assert [hit["id"] for hit in hits] == [added["id"]]

    edited = {"name": "Tom Hanks", "customer_id": 7654321, "tags": ["actor", 1956]}
    changed = ok(v1("/edit_metadata", json={"image_id": added["id"], "metadata": edited}))["result"]
    assert changed["id"] == added["id"] and changed["metadata"] == edited
    assert ok(v1("/search", data=json.dumps({"image": {"base64": b64(tom)}})))["result"][0]["metadata"] == edited
    refused(v1("/edit_metadata", json={"image_id": 987654321, "metadata": {}}), 8, 404)
    assert "image_id" in refused(v1("/edit_metadata", json={"metadata": {}}), 7, 400)
    assert "image_id" in refused(v1("/edit_metadata", json={"image_id": "x", "metadata": {}}), 7, 400)

    deleted = ok(v1("/delete", json={"ids": [added["id"], 99_999_999]}))
    assert deleted["deleted"] == 1 and deleted["deleted_ids"] == [added["id"]]
    assert [item["id"] for item in ok(v1("/get_all_images"))["result"]] == [other["id"]]
    assert ok(v1("/search", json={"image": {"base64": b64(tom)}}))["result"] == []


def test_the_v1_paths_share_the_credentials_quota_and_metrics(server: LiveServer) -> None:
    key, secret = server.new_key(quota=2)
    ok(requests.get(server.url + V1 + "/get_all_images", auth=(key, secret), timeout=30))
    refused(requests.get(server.url + V1 + "/get_all_images", auth=(key, "wrong"), timeout=30), 5, 401)
    ok(requests.get(server.url + API + "/images", auth=(key, secret), timeout=30))
    refused(requests.get(server.url + V1 + "/get_all_images", auth=(key, secret), timeout=30), 4, 429)
    scraped = samples(requests.get(server.url + "/metrics", timeout=30).text)
    for status, code in (("200", "0"), ("401", "5"), ("429", "4")):
        labels = {"method": "GET", "endpoint": V1 + "/get_all_images", "status": status, "code": code}
        assert value(scraped, "face_search_http_requests_total", **labels) >= 1, labels


# -- the three pairs of names, on every answer ------------------------------------------------------


def test_every_answer_carries_the_code_and_message_under_each_name(server: LiveServer, auth: tuple[str, str]) -> None:
    tom = package_photo(TOM)
    image = ok(server.call("POST", "/images", *auth, json={"image": {"base64": b64(tom)}}))["result"]
    answers = [  # (path, method, JSON body, credentials, code, HTTP status)
        (f"{API}/images", "GET", None, auth, 0, 200),
        (f"{API}/images/{image['id']}", "GET", None, auth, 0, 200),
        (f"{API}/images/{image['id']}", "PUT", {"metadata": {"a": 1}}, auth, 0, 200),
        (f"{API}/search", "POST", {"image": {"base64": b64(tom)}}, auth, 0, 200),
        (f"{API}/index", "GET", None, auth, 0, 200),
        (f"{V1}/get_all_images", "GET", None, auth, 0, 200),
        (f"{V1}/search", "POST", {"image": {"base64": b64(tom)}}, auth, 0, 200),
        (f"{V1}/edit_metadata", "POST", {"image_id": image["id"], "metadata": {}}, auth, 0, 200),
        (f"{V1}/delete", "POST", {"ids": [987654321]}, auth, 0, 200),
        (f"{API}/images", "GET", None, None, 5, 401),
        (f"{V1}/get_all_images", "GET", None, ("nobody", "x"), 5, 401),
        (f"{API}/no-such-thing", "GET", None, auth, 11, 404),
        ("/no-such-thing", "GET", None, None, 11, 404),
        (f"{V1}/get_all_images", "DELETE", None, auth, 11, 405),
        (f"{API}/images", "PATCH", None, auth, 11, 405),
        (f"{API}/images/987654321", "GET", None, auth, 8, 404),
        (f"{V1}/add", "POST", {"image": {"base64": b64(blank())}}, auth, 3, 400),
        (f"{V1}/add", "POST", {"image": {"url": "ftp://127.0.0.1/x.jpg"}}, auth, 2, 400),
        (f"{V1}/search", "POST", {"format_type": "fax", "image": {"base64": "aGVsbG8="}}, auth, 6, 400),
        (f"{V1}/search", "POST", {"image": {"base64": ""}}, auth, 1, 400),
        (f"{V1}/delete", "POST", {"ids": "all"}, auth, 7, 400),
        (f"{API}/images/{image['id']}/file?gallery=1&expires=1&signature=x", "GET", None, None, 14, 403),
    ]
    for path, method, body, who, code, status in answers:
        answer = requests.request(method, server.url + path, json=body, auth=who, timeout=60)
        assert answer.status_code == status and code_of(answer.json()) == code, (path, method, answer.text)
    too_large = requests.post(server.url + V1 + "/add", data=b"{" + b" " * (5 << 20) + b"}", auth=auth, timeout=60)
    assert too_large.status_code == 413 and code_of(too_large.json()) == 9
    limited = server.new_key(quota=0)
    answer = requests.post(server.url + V1 + "/search", json={"image": {"base64": b64(tom)}}, auth=limited, timeout=60)
    assert answer.status_code == 429 and code_of(answer.json()) == 4
    server_refusal = raw_http(server.port, _request("GARBAGE"))
    assert server_refusal.status == 400 and code_of(server_refusal.json()) == 7


def test_the_other_names_can_be_turned_off(tmp_path: Path) -> None:
    settings = Settings().at(tmp_path)
    settings = replace(settings, api=replace(settings.api, code_aliases=False))
    with build_services(settings) as services:
        services.keys.create(KEY, SECRET)
        client = create_app(settings, services).test_client()
        for answer in (client.get(API + "/images", headers=basic()), client.get(V1 + "/get_all_images")):
            assert set(answer.get_json()) <= {"result", "status_code", "message", "total", "offset", "limit"}
            assert "status_code" in answer.get_json()


# -- signed photo links and thumbnails -----------------------------------------------------------


def _wait_past(expires: int) -> None:
    time.sleep(max(0.0, expires - time.time() + 0.2))


def _expires(link: str) -> int:
    return int(re.search(r"expires=(\d+)", link).group(1))


def test_a_signed_link_serves_its_photo_without_credentials_until_it_expires(
    server: LiveServer, auth: tuple[str, str]
) -> None:
    group = package_photo(GROUP)
    added = ok(server.call("POST", "/images", *auth, json={"image": {"base64": b64(group)}}))["result"]
    started = time.time()
    photo = requests.get(added["url"], timeout=30)
    assert photo.status_code == 200 and photo.content == group and photo.headers["Content-Type"] == "image/jpeg"
    assert photo.headers["Cross-Origin-Resource-Policy"] == "cross-origin", "other sites' pages may embed it"
    max_age = int(re.fullmatch(r"private, max-age=(\d+)", photo.headers["Cache-Control"]).group(1))
    assert 0 < max_age <= _expires(added["url"]) - started + 1, "no cache keeps it past the link's expiry"
    thumbnail = requests.get(added["thumbnail_url"], timeout=30)
    assert thumbnail.status_code == 200 and thumbnail.headers["Content-Type"] == "image/jpeg"
    small = Image.open(io.BytesIO(thumbnail.content))
    assert small.format == "JPEG" and max(small.size) == 256 and len(thumbnail.content) < len(group) / 4
    width, height = Image.open(io.BytesIO(group)).size
    assert abs(small.size[0] / small.size[1] - width / height) < 0.02, "the photo's proportions"
    assert _expires(added["url"]) - started <= LINK_SECONDS * 13 / 12 + 1

    _wait_past(_expires(added["url"]))
    for link in (added["url"], added["thumbnail_url"]):
        late = requests.get(link, timeout=30)
        assert "expired" in refused(late, 14, 403)
        assert group not in late.content
    owner = requests.get(added["url"], auth=auth, timeout=30)
    assert owner.status_code == 200 and owner.content == group, "its owner loads it with the key, link or not"
    fresh = ok(server.call("GET", f"/images/{added['id']}", *auth))["result"]
    assert requests.get(fresh["url"], timeout=30).content == group, "a new answer gives a new link"


def test_an_altered_or_foreign_link_serves_nothing(server: LiveServer, auth: tuple[str, str]) -> None:
    tom, group = package_photo(TOM), package_photo(GROUP)
    second = ok(server.call("POST", "/images", *auth, json={"image": {"base64": b64(group)}}))["result"]
    others = ok(server.call("POST", "/images", *server.new_key(), json={"image": {"base64": b64(group)}}))["result"]
    # the link under test is made last: it must still work at the end, within LINK_SECONDS of its making
    mine = ok(server.call("POST", "/images", *auth, json={"image": {"base64": b64(tom)}}))["result"]
    link = mine["url"]
    signature = re.search(r"signature=([\w-]+)", link).group(1)
    flipped_char = signature[:5] + ("A" if signature[5] != "A" else "B") + signature[6:]
    forged = {
        "an altered signature": link.replace(signature, flipped_char),
        "another image's id": link.replace(f"/images/{mine['id']}/", f"/images/{second['id']}/"),
        "another key's image": link.replace(f"/images/{mine['id']}/", f"/images/{others['id']}/"),
        "another gallery": re.sub(r"gallery=\d+", "gallery=999", link),
        "a later expiry": re.sub(r"expires=\d+", f"expires={_expires(link) + 3600}", link),
        "the thumbnail's signature on the photo": mine["thumbnail_url"].replace("/thumbnail?", "/file?"),
        "no signature": link.split("&signature=")[0] + "&signature=",
    }
    for case, url in forged.items():
        answer = requests.get(url, timeout=30)
        assert "signature does not match" in refused(answer, 14, 403), case
        assert tom not in answer.content and group not in answer.content, case
    assert requests.get(link, timeout=30).content == tom, "the link as given still works"
    for malformed in (link.replace("expires=", "expires=soon"), link.split("&expires=")[0]):
        refused(requests.get(malformed, timeout=30), 7, 400)
    refused(requests.get(link.split("?")[0], timeout=30), 5, 401)  # no link, no key


def test_rotating_the_secret_refuses_every_earlier_link(server: LiveServer, auth: tuple[str, str]) -> None:
    tom = package_photo(TOM)
    added = ok(server.call("POST", "/images", *auth, json={"image": {"base64": b64(tom)}}))["result"]
    assert requests.get(added["url"], timeout=30).content == tom
    env = {**os.environ, "FACE_SEARCH_DATA_DIR": str(server.data_dir)}
    done = subprocess.run(
        [sys.executable, "scripts/keys.py", "rotate-link-secret"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0 and "new secret" in done.stdout, done.stderr
    for link in (added["url"], added["thumbnail_url"]):
        assert "rotated" in refused(requests.get(link, timeout=30), 14, 403)
    fresh = ok(server.call("GET", "/images", *auth))["result"][0]
    assert requests.get(fresh["url"], timeout=30).content == tom


def test_a_thumbnail_is_made_once_kept_beside_its_photo_and_deleted_with_it(
    server: LiveServer, auth: tuple[str, str]
) -> None:
    added = ok(server.call("POST", "/images", *auth, json={"image": {"base64": b64(package_photo(GROUP))}}))["result"]
    gallery = re.search(r"gallery=(\d+)", added["url"]).group(1)
    (photo,) = (server.data_dir / "photos" / gallery).iterdir()
    assert not photo.with_name(photo.name + ".thumb.jpg").exists(), "an add makes none: the first request does"
    first = requests.get(added["thumbnail_url"], timeout=30).content
    kept = photo.with_name(photo.name + ".thumb.jpg")
    assert kept.read_bytes() == first
    made = kept.stat().st_mtime_ns
    assert requests.get(added["thumbnail_url"], timeout=30).content == first and kept.stat().st_mtime_ns == made
    ok(server.call("DELETE", "/images", *auth, json={"ids": [added["id"]]}))
    assert not photo.exists() and not kept.exists()
    refused(requests.get(added["thumbnail_url"], timeout=30), 8, 404)
