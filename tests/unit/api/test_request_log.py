"""One JSON log line per request, with its id (also in a response header), key, route, status,
code and duration; never a secret or image bytes."""

from __future__ import annotations

import json
import logging

import pytest

from service.harness.live import KEY, SECRET
from service.harness.photos import b64, package_photo
from tests.live import API, basic

PHOTO = b64(package_photo("Tom_Hanks_54745.png"))


def records(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [r.fields for r in caplog.records if r.name == "face_search.requests"]


def test_one_record_per_request_with_its_id(client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="face_search.requests")
    body = json.dumps({"image": {"base64": PHOTO}}).encode()
    added = client.post(API + "/images", data=body, content_type="application/json", headers=basic())
    refused = client.get(API + "/images", headers=basic(KEY, "not-the-secret"))
    kept = client.get(API + "/images", headers={**basic(), "X-Request-ID": "lb-7f3a.1"})
    replaced = client.get(API + "/images", headers={**basic(), "X-Request-ID": "no spaces <allowed>"})
    logged = records(caplog)
    assert len(logged) == 4
    first, second, third, fourth = logged
    assert first["request_id"] == added.headers["X-Request-ID"] and len(first["request_id"]) == 32
    assert first | {"duration_ms": 0, "request_id": ""} == {
        "request_id": "",
        "method": "POST",
        "path": API + "/images",
        "endpoint": API + "/images",
        "status": 200,
        "code": "0",
        "duration_ms": 0,
        "key": KEY,
        "remote": "127.0.0.1",
        "bytes_in": len(body),
    }
    assert first["duration_ms"] > 1, "the models ran"
    assert (second["status"], second["code"], second["key"]) == (401, "5", None)
    assert second["request_id"] == refused.headers["X-Request-ID"]
    assert third["request_id"] == kept.headers["X-Request-ID"] == "lb-7f3a.1"
    assert fourth["request_id"] == replaced.headers["X-Request-ID"] != "no spaces <allowed>"
    text = caplog.text + json.dumps(logged)
    assert "not-the-secret" not in text and SECRET not in text and PHOTO[100:200] not in text


def test_probes_are_logged_at_debug_level_only(client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="face_search.requests")
    client.get("/healthz")
    client.get("/metrics")
    assert records(caplog) == []
