"""The default search threshold grows with the gallery so that strangers stay out."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from models.packs import load_pack
from service.core.services import Services
from service.core.threshold import cosine_at_far, search_threshold
from service.harness.live import KEY
from service.harness.photos import package_photo
from tests.usecases import add

TABLE = [[1e-3, 0.2], [1e-5, 0.3], [1e-7, 0.5]]


def test_cosine_is_interpolated_in_log_far_and_held_at_the_ends() -> None:
    assert cosine_at_far(TABLE, 1e-3) == pytest.approx(0.2)
    assert cosine_at_far(TABLE, 1e-4) == pytest.approx(0.25)
    assert cosine_at_far(TABLE, 1e-6) == pytest.approx(0.4)
    assert cosine_at_far(TABLE, 0.5) == pytest.approx(0.2)
    assert cosine_at_far(TABLE, 1e-12) == pytest.approx(0.5)


def test_the_threshold_keeps_a_fixed_stranger_rate_whatever_the_gallery_size() -> None:
    pack = load_pack("buffalo_s", check=False)
    calibration = pack.manifest["calibration"]
    sizes = [0, 1, 10, 1_000, 5_000, 10_000, 100_000, 1_000_000]
    thresholds = [search_threshold(pack, n) for n in sizes]
    assert thresholds == sorted(thresholds)  # never looser for a larger gallery
    assert thresholds[0] == thresholds[1] == thresholds[3]  # held at min_faces for small galleries
    assert thresholds[-2] > thresholds[3]
    for faces in (1_000, 10_000, 100_000):
        far = calibration["stranger_rate"] / faces
        assert search_threshold(pack, faces) == pytest.approx(cosine_at_far(calibration["far_cosine"], far), abs=1e-4)
    # At 10,000 faces it is the fixed threshold the manifest records for packs read without the table.
    assert search_threshold(pack, 10_000) == pytest.approx(pack.search_threshold, abs=2e-3)


def test_a_pack_without_calibration_uses_its_fixed_threshold() -> None:
    pack = load_pack("buffalo_s", check=False)
    plain = replace(pack, manifest={k: v for k, v in pack.manifest.items() if k != "calibration"})
    assert search_threshold(plain, 10) == search_threshold(plain, 10**6) == pack.search_threshold


def test_the_service_uses_the_gallery_size_unless_the_operator_fixed_a_threshold(services: Services) -> None:
    key = services.catalog.keys.get(KEY)
    empty = services.searcher.default_threshold(key.gallery)
    assert empty == search_threshold(services.pack, 0)
    assert math.isfinite(empty) and 0.2 < empty < 0.6
    fixed = replace(services, settings=replace(services.settings, threshold=0.55))
    assert fixed.searcher.default_threshold(key.gallery) == 0.55


def test_the_gallery_face_count_reaches_the_policy(services: Services) -> None:
    calibration = {**services.pack.manifest["calibration"], "min_faces": 1}
    scaled = replace(
        services, pack=replace(services.pack, manifest={**services.pack.manifest, "calibration": calibration})
    )
    key = services.catalog.keys.get(KEY)
    before = scaled.searcher.default_threshold(key.gallery)
    add(scaled, key, package_photo("t1.jpg"))
    assert services.catalog.images.gallery(key.gallery).faces == 6
    assert scaled.searcher.default_threshold(key.gallery) == search_threshold(scaled.pack, 6) > before
