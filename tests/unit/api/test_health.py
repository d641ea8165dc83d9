"""/healthz and /readyz: open to probes without a key, and not ready once the data is closed.

A live server's probes are also called, and their answers checked against the document, by
the schemathesis run in tests/system/test_schemathesis.py."""

from __future__ import annotations

from pathlib import Path

from service.api.app import create_app
from service.core.config import Settings
from service.core.services import build_services
from service.harness.photos import b64, package_photo
from tests.live import API, basic


def test_ready_with_a_loaded_gallery_and_no_key_needed(client) -> None:
    photo = {"image": {"base64": b64(package_photo("Tom_Hanks_54745.png"))}}
    assert client.post(API + "/images", json=photo, headers=basic()).status_code == 200
    assert client.get("/healthz").get_json() == {
        "status": "ok",
        "pack": "buffalo_s_edgeface",
        "licence": "InsightFace pretrained models: non-commercial research use only; EdgeFace: CC BY-NC-SA 4.0 "
        "(non-commercial)",
    }
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ok", "checks": {"models": True, "lmdb": True, "indexes": True}}


def test_not_ready_once_lmdb_is_closed(tmp_path: Path) -> None:
    settings = Settings().at(tmp_path / "data")
    services = build_services(settings, serving=True)
    client = create_app(settings, services).test_client()
    assert client.get("/readyz").status_code == 200
    services.close()
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.get_json()["status"] == "unavailable" and answer.get_json()["checks"]["lmdb"] is False
    assert client.get("/healthz").status_code == 200, "the process still answers"
