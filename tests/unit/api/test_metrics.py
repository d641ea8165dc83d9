"""/metrics: requests, latencies, the costly steps, gallery sizes, index kind, rebuilds, refusals."""

from __future__ import annotations

import pytest

from service.harness.live import KEY, SECRET
from service.harness.photos import b64, blank, package_photo
from tests.live import API, basic
from tests.prometheus import samples, value

TOM = "Tom_Hanks_54745.png"


def scrape(client) -> dict:
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.content_type.startswith("text/plain")
    return samples(answer.get_data(as_text=True))


def test_requests_steps_and_galleries_are_counted(client, services) -> None:
    before = scrape(client)
    photo = {"image": {"base64": b64(package_photo(TOM))}}
    assert client.post(API + "/images", json=photo, headers=basic()).status_code == 200
    assert client.post(API + "/search", json=photo, headers=basic()).status_code == 200
    assert client.post(API + "/search", json={"image": {"base64": b64(blank())}}, headers=basic()).status_code == 400
    after = scrape(client)

    def grew(name: str, by: float = 1, **labels: str) -> None:
        assert value(after, name, **labels) - value(before, name, **labels) == by, (name, labels)

    route = API + "/search"
    grew("face_search_http_requests_total", method="POST", endpoint=API + "/images", status="200", code="0")
    grew("face_search_http_requests_total", method="POST", endpoint=route, status="200", code="0")
    grew("face_search_http_requests_total", method="POST", endpoint=route, status="400", code="3")
    grew("face_search_http_request_duration_seconds_count", 2, method="POST", endpoint=route)
    grew("face_search_step_duration_seconds_count", 3, step="detection")  # one per photo
    embedded = "face_search_step_duration_seconds_count"
    assert value(after, embedded, step="embedding") - value(before, embedded, step="embedding") >= 2  # 1 per face
    grew("face_search_step_duration_seconds_count", 1, step="index_search")
    assert value(after, "face_search_step_duration_seconds_sum", step="detection") > value(
        before, "face_search_step_duration_seconds_sum", step="detection"
    )
    gallery = str(services.keys.authenticate(KEY, SECRET).gallery)
    assert value(after, "face_search_gallery_images", gallery=gallery) == 1
    assert value(after, "face_search_gallery_faces", gallery=gallery) == 1
    assert value(after, "face_search_index_vectors", gallery=gallery) == 1
    assert value(after, "face_search_index_info", gallery=gallery, kind="flat") == 1
    assert value(after, "face_search_index_rebuilds_total", gallery=gallery) == 0
    assert value(after, "face_search_keys") == 2
    assert value(after, "face_search_model_pack_info", pack=services.pack.name) == 1


@pytest.mark.slow
def test_a_rebuild_is_counted(client, services) -> None:
    photo = {"image": {"base64": b64(package_photo(TOM))}}
    assert client.post(API + "/images", json=photo, headers=basic()).status_code == 200
    gallery = services.keys.authenticate(KEY, SECRET).gallery
    assert services.indexes.request_rebuild(gallery, "test")
    services.indexes.wait(gallery)
    assert value(scrape(client), "face_search_index_rebuilds_total", gallery=str(gallery)) == 1
