"""Generated bodies, headers and query strings at every endpoint: always the envelope with a
documented code, never a 5xx, and a rejected request never changes what is stored."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api.app import create_app
from service.api.errors import Code
from service.api.responses import LINKS
from service.core.config import Settings
from service.core.services import build_services
from service.harness.live import KEY, SECRET
from service.harness.photos import b64, blank, package_photo
from tests.live import API, basic

CODES = {int(code) for code in Code}
FACE = b64(package_photo("Tom_Hanks_54745.png"))  # requests that reach the models and the index
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=40)
)
# what a header can carry at all: Latin-1 without line breaks
header_text = st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=40)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["image", "metadata", "ids", "top_k", "threshold", "format_type", "base64", "url", "face", "min_face_size"]
)
image_objects = st.fixed_dictionaries(
    {},
    optional={
        "base64": st.one_of(
            st.sampled_from([FACE, b64(blank()), b64(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)]),
            st.text(max_size=60),
            json_values,
        ),
        "url": st.one_of(st.text(max_size=30), st.just("http://127.0.0.1:1/x.png"), json_values),
        "metadata": json_values,
        "file": json_values,
    },
)
# bodies whose photo decodes, so the options are validated after the models ran
deep_bodies = st.fixed_dictionaries(
    {
        "image": st.fixed_dictionaries(
            {"base64": st.sampled_from([FACE, b64(blank())])}, optional={"metadata": json_values}
        )
    },
    optional={
        name: json_values for name in ("top_k", "threshold", "format_type", "face", "min_face_size", "min_det_score")
    },
)
bodies = st.one_of(
    json_values,
    st.dictionaries(field_names, json_values, max_size=4),
    st.fixed_dictionaries(
        {"image": image_objects},
        optional={"top_k": json_values, "threshold": json_values, "format_type": json_values, "metadata": json_values},
    ),
    st.fixed_dictionaries({"ids": st.one_of(json_values, st.lists(st.integers(-5, 2**64), max_size=5))}),
    st.fixed_dictionaries({"metadata": json_values}),
)


@pytest.fixture(scope="module")
def app_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    config = Settings().at(data_dir)
    config = replace(config, server=replace(config.server, rate_limit=0))
    services = build_services(config, serving=True)
    services.keys.create(KEY, SECRET)
    client = create_app(config, services).test_client()
    added = client.post(API + "/images", json={"image": {"base64": b64(package_photo("yaoming.jpg"))}}, headers=basic())
    assert added.status_code == 200
    yield client, added.get_json()["result"]["id"]
    services.close()


def snapshot(client) -> tuple:
    """The stored state as the API lists it, without the images' signed links: their expiry is
    rounded to a window that moves with the clock, not with anything stored."""
    listed = client.get(API + "/images", headers=basic()).get_json()
    index = client.get(API + "/index", headers=basic()).get_json()["result"]["vectors"]
    images = [{k: v for k, v in image.items() if k not in LINKS} for image in listed["result"]]
    return json.dumps(images, sort_keys=True), listed["total"], index


def check(response, client, before: tuple) -> None:
    assert response.status_code < 500, response.data[:300]
    envelope = response.get_json(silent=True)
    assert isinstance(envelope, dict) and set(envelope) >= {"result", "status_code", "message"}, response.data[:300]
    assert envelope["status_code"] in CODES and isinstance(envelope["message"], str)
    if envelope["status_code"] != 0:
        assert snapshot(client) == before, "a rejected request changed the stored state"


@pytest.mark.slow
@FUZZ
@given(
    body=bodies,
    method_path=st.sampled_from(
        ["POST /images", "POST /search", "PUT /images/{id}", "POST /images/{id}", "DELETE /images"]
    ),
)
def test_generated_json_bodies(app_state, body, method_path: str) -> None:
    client, image_id = app_state
    method, path = method_path.split(" ")
    if method == "DELETE" or (isinstance(body, dict) and "ids" in body and method_path == "POST /images"):
        body = {"ids": body.get("ids") if isinstance(body, dict) else body}
        if isinstance(body["ids"], list) and image_id in body["ids"]:
            body["ids"] = [i for i in body["ids"] if i != image_id] or [image_id + 10**6]  # keep the fixture's image
    before = snapshot(client)
    response = client.open(API + path.format(id=image_id), method=method, json=body, headers=basic())
    check(response, client, before)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/images", "/search"])
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(body=deep_bodies)
def test_generated_options_beside_a_real_photo(app_state, path: str, body: dict) -> None:
    client, _ = app_state
    before = snapshot(client)
    check(client.post(API + path, json=body, headers=basic()), client, before)


@pytest.mark.slow
@FUZZ
@given(
    raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode), path=st.sampled_from(["/images", "/search"])
)
def test_generated_raw_bodies(app_state, raw: bytes, path: str) -> None:
    client, _ = app_state
    before = snapshot(client)
    headers = {**basic(), "Content-Type": "application/json"}
    check(client.post(API + path, data=raw, headers=headers), client, before)


@pytest.mark.slow
@FUZZ
@given(
    query=st.dictionaries(st.sampled_from(["offset", "limit", "x"]), st.text(max_size=25), max_size=3),
    authorization=st.one_of(
        st.none(),
        header_text,
        st.binary(max_size=30).map(lambda raw: "Basic " + base64.b64encode(raw).decode()),
        st.text(max_size=20).map(lambda secret: "Basic " + base64.b64encode(f"{KEY}:{secret}".encode()).decode()),
    ),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "multipart/form-data", "", "application/json; charset=latin-1"]
    ),
)
def test_generated_headers_and_query_strings(
    app_state, query: dict, authorization: str | None, content_type: str
) -> None:
    client, _ = app_state
    before = snapshot(client)
    headers = {"Content-Type": content_type} if content_type else {}
    if authorization is not None:
        headers["Authorization"] = authorization
    for method, path in (("GET", "/images"), ("POST", "/search"), ("GET", "/index"), ("DELETE", "/images")):
        check(
            client.open(API + path, method=method, query_string=query, headers=headers, data=b'{"x": 1}'),
            client,
            before,
        )
