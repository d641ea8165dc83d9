"""Every code has one record, every error a use case raises is answered by one of them with
its HTTP status, and a read that fails is told apart from a write that found the disk full."""

from __future__ import annotations

import inspect

import pytest
from werkzeug.exceptions import InternalServerError, MethodNotAllowed, NotFound, RequestEntityTooLarge

from index.errors import CommitUnknownError, StorageUnavailableError
from service.api.errors import CODES, RECORDS, Code, answer_to, record_of
from service.core import errors
from service.core.services import Services
from service.harness.live import KEY
from service.harness.photos import b64, package_photo
from tests.live import API, basic

SCRIPTS_ONLY = {errors.UnknownKey, errors.GalleryBusy}  # raised to the command-line scripts alone


def test_every_code_has_one_record() -> None:
    assert [record.code for record in RECORDS] == list(Code) == list(CODES)
    assert len({record.message for record in RECORDS}) == len(RECORDS)


def test_every_use_case_error_has_its_code() -> None:
    raised = {
        kind
        for _, kind in inspect.getmembers(errors, inspect.isclass)
        if issubclass(kind, errors.ServiceError) and kind is not errors.ServiceError
    }
    domain = {kind: record for record in RECORDS for kind in record.answers if issubclass(kind, errors.ServiceError)}
    assert raised - SCRIPTS_ONLY == set(domain)
    for kind, record in domain.items():
        answer = answer_to(kind("why"))
        assert answer.code == record.code and answer.http_status == record.statuses.get(kind, record.http)
        assert answer.message.endswith(": why")
    assert answer_to(errors.BadCredentials()).message == "Incorrect Api_key or api_secret"
    assert answer_to(errors.StorageUnavailable("down")).http_status == 503
    for unanswered in SCRIPTS_ONLY:  # a use case's error no record answers is a bug
        assert answer_to(unanswered("why")).code == Code.INTERNAL


def test_a_write_whose_commit_is_in_doubt_does_not_say_nothing_was_stored() -> None:
    """A database that died during a commit and did not come back in time may hold the write:
    the client is told to look before it sends it again, not that nothing was kept."""
    answers = []
    for lost in (StorageUnavailableError("down"), CommitUnknownError("went away during a commit")):
        with pytest.raises(errors.StorageUnavailable) as raised, errors.writing():
            raise lost
        answers.append(answer_to(raised.value))
    refused, in_doubt = answers
    assert (refused.code, refused.http_status) == (in_doubt.code, in_doubt.http_status) == (Code.STORAGE_ERROR, 503)
    assert "nothing was stored" in refused.message
    assert "nothing was stored" not in in_doubt.message and "may or may not be stored" in in_doubt.message


def test_the_http_layers_own_errors_have_their_codes() -> None:
    assert record_of(NotFound).code == record_of(MethodNotAllowed).code == Code.NO_ROUTE
    assert record_of(RequestEntityTooLarge).code == Code.TOO_LARGE
    assert record_of(InternalServerError).code == record_of(KeyError).code == Code.INTERNAL
    assert answer_to(KeyError("a secret")).message == "Internal error", "a bug's detail is not shown"
    refused = answer_to(MethodNotAllowed(["GET"]))
    assert (refused.code, refused.http_status, refused.headers) == (Code.NO_ROUTE, 405, {"Allow": "GET"})
    assert sorted(CODES[Code.NO_ROUTE].http_statuses()) == [404, 405]


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
