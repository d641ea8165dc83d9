"""Every error a use case raises has its code and HTTP status in one table, and a read that
fails is told apart from a write that found the disk full."""

from __future__ import annotations

import inspect

from service.api.errors import DOMAIN, HTTP_STATUS, Code, refusal
from service.core import errors
from service.core.services import Services
from tests.live import API, KEY, basic
from tests.photos import b64, package_photo

SCRIPTS_ONLY = {errors.UnknownKey, errors.GalleryBusy}  # raised to the command-line scripts alone


def test_every_use_case_error_has_its_code() -> None:
    raised = {
        kind
        for _, kind in inspect.getmembers(errors, inspect.isclass)
        if issubclass(kind, errors.ServiceError) and kind is not errors.ServiceError
    }
    assert raised - SCRIPTS_ONLY == set(DOMAIN)
    for kind, (code, status) in DOMAIN.items():
        answer = refusal(kind("why"))
        assert answer.code == code and answer.http_status == (status or HTTP_STATUS[code])
        assert answer.message.endswith(": why")
    assert refusal(errors.BadCredentials()).message == "Incorrect Api_key or api_secret"


def _added(client) -> dict:
    photo = {"image": {"base64": b64(package_photo("Tom_Hanks_54745.png"))}}
    answer = client.post(API + "/images", json=photo, headers=basic())
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["result"]


def test_a_missing_photo_file_is_not_found_not_a_full_disk(client, services: Services) -> None:
    added = _added(client)
    record = services.catalog.images.get(services.catalog.keys.get(KEY).gallery, added["id"])
    services.photos.path(record.file).unlink()
    answer = client.get(API + f"/images/{added['id']}/file", headers=basic())
    body = answer.get_json()
    assert answer.status_code == 404 and body["status_code"] == Code.NOT_FOUND, body
    assert "photo file" in body["message"] and "missing" in body["message"]
    assert client.get(API + f"/images/{added['id']}", headers=basic()).status_code == 200, "the record stays"


def test_a_photo_that_cannot_be_read_is_storage_unavailable_for_now(client, services: Services) -> None:
    added = _added(client)
    record = services.catalog.images.get(services.catalog.keys.get(KEY).gallery, added["id"])
    path = services.photos.path(record.file)
    path.unlink()
    path.mkdir()  # a read of a directory fails with an OSError that is not "no such file"
    answer = client.get(API + f"/images/{added['id']}/file", headers=basic())
    body = answer.get_json()
    assert answer.status_code == 503 and body["status_code"] == Code.STORAGE_ERROR, body
    assert "cannot be read" in body["message"] and "nothing was stored" not in body["message"]
