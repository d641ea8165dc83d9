"""schemathesis against a live server, from its OpenAPI document: generated valid and invalid
requests for every operation; no 5xx, every answer documented, every invalid request refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.api.openapi import operations
from service.api.paths import DOCUMENT as DOCUMENT_PATH
from service.harness.live import KEY, SECRET, LiveServer
from service.harness.photos import b64, package_photo


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("schemathesis")
    # the generated requests without the key must not slow down the ones with it (a login slow-down
    # over the whole module made most of its time)
    limits = {"FACE_SEARCH_RATE_LIMIT": "0", "FACE_SEARCH_FREE_LOGINS": str(1 << 30)}
    server = LiveServer(data, limits, log=Path(data) / "server.log").start()
    photo = {"image": {"base64": b64(package_photo("Tom_Hanks_54745.png")), "metadata": {"seed": True}}}
    assert server.call("POST", "/images", json=photo).json()["status_code"] == 0  # ids 1.. exist
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live_schema(live: LiveServer):
    loaded = schemathesis.openapi.from_url(live.url + DOCUMENT_PATH)
    loaded.config.update(base_url=live.url, basic_auth=(KEY, SECRET), request_timeout=60)
    return loaded


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def keep_on_loopback(body: object) -> None:
    """The server downloads ``image.url``: only ever from a closed loopback port here."""
    if isinstance(body, dict) and isinstance(body.get("image"), dict) and "url" in body["image"]:
        body["image"]["url"] = "http://127.0.0.1:9/photo.jpg"


GENERATED = [
    (f"{op.method.upper()} {op.path}", mode)
    for op in operations()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode == GenerationMode.POSITIVE or op.body is not None or op.query is not None or op.linked or "{" in op.path
]


@pytest.mark.slow
@pytest.mark.parametrize("operation, mode", GENERATED, ids=[f"{o}-{m.value}" for o, m in GENERATED])
def test_live_server_keeps_to_the_document(live_schema, operation: str, mode: GenerationMode) -> None:
    """Generated requests, valid (positive) and invalid (negative) for the document: no 5xx, every
    answer documented, and every request the document calls invalid refused."""
    method, path = operation.split(" ")
    statuses = []

    @settings(
        max_examples=20,
        deadline=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=live_schema[path][method].as_strategy(generation_mode=mode))
    def run(case) -> None:
        keep_on_loopback(case.body)
        response = case.call()
        statuses.append(response.status_code)
        case.validate_response(response, checks=CHECKS)

    run()
    assert set(statuses) - {401}, "the generated requests carried the key"
