"""scripts/migrate.py: an embedded deployment copied into cluster mode answers the same searches
and holds the same persons."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from index.backend import StorageSettings, open_backend
from index.records import NewGroup
from index.vectors import IndexSettings
from service.core.config import Settings
from service.core.services import Services, build_services
from service.harness.live import KEY, SECRET, LiveServer
from service.harness.photos import b64, flipped, package_photo, scaled
from service.harness.synthetic import faces
from tests.cluster import Engines
from tests.contract.test_catalog import new_image
from tests.live import ROOT
from tests.usecases import add, find

pytestmark = pytest.mark.cluster

PROBES = [package_photo("Tom_Hanks_54745.png"), package_photo("yaoming.jpg"), package_photo("t1.jpg")]


def _migrate(source: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/migrate.py", "--from", str(source), "--sample", "30"],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_a_migrated_gallery_answers_the_same_searches(engines: Engines, tmp_path: Path) -> None:
    source = tmp_path / "embedded"
    with build_services(Settings().at(source), serving=True) as services:
        key = services.keys.create(KEY, SECRET, quota=1000).record
        for photo in (*PROBES, flipped(PROBES[0]), scaled(PROBES[1], 1.5)):
            add(services, key, photo, {"photo": len(photo)})
        other = services.keys.create("synthetic", "s").record
        data = faces(60)
        for start in range(0, len(data.vectors), 3):
            services.catalog.images.add(other.gallery, new_image(data.vectors[start : start + 3]))
        _edit_persons(services, key.gallery, other.gallery)
        services.catalog.keys.count_request(KEY, 1000)
        before = {n: [(m.image.id, m.score) for m in find(services, key, photo)] for n, photo in enumerate(PROBES)}
        persons_before = {gid: _persons(services.catalog, gid) for gid in (key.gallery, other.gallery)}
    url = engines.new_database()
    env = engines.env(url, tmp_path / "shared-photos")

    copied = _migrate(source, env)
    assert copied.returncode == 0, copied.stdout + copied.stderr
    assert "gallery 1 (test-key): same" in copied.stdout and "gallery 2 (synthetic): same" in copied.stdout
    again = _migrate(source, env)
    assert again.returncode == 0 and "copied" not in again.stdout, "a second run finds everything copied"
    catalog, vectors = open_backend(
        StorageSettings(data_dir=tmp_path / "reader", catalog_url=url, milvus_uri=engines.milvus.uri),
        IndexSettings(), serving=False,
    )  # fmt: skip
    try:
        assert {gid: _persons(catalog, gid) for gid in persons_before} == persons_before
        made = catalog.person_edits.create(
            other.gallery, "after", {}, [persons_before[other.gallery][0][-1][1][0][1]], "t"
        )
        assert made.id > max(p.id for found in persons_before.values() for p, _ in found[0]), "ids never reused"
    finally:
        vectors.close()
        catalog.close()

    server = LiveServer(tmp_path / "replica", env).start()
    try:
        for n, photo in enumerate(PROBES):
            hits = server.call("POST", "/search", json={"image": {"base64": b64(photo)}}).json()["result"]
            assert [hit["id"] for hit in hits] == [image for image, _ in before[n]]
            assert [hit["score"] for hit in hits] == pytest.approx([score for _, score in before[n]], abs=1e-3)
            assert server.call("GET", f"/images/{hits[0]['id']}/file").content == photo
        keys = server.call("GET", "/images").json()
        assert keys["total"] == 5
    finally:
        server.stop()


def _edit_persons(services: Services, gid: int, synthetic: int) -> None:
    """Persons of every kind in both galleries: named ones with metadata, groups a run found, a
    face a user took out of a person, faces of a person a user deleted (kept out of every person)."""
    ids = services.catalog.images.ids(synthetic)
    held = services.catalog.images.get_many(synthetic, ids)
    groups = [[held[i].faces[n].id for i in ids[start : start + 4]] for n, start in ((0, 0), (1, 0), (2, 4))]
    services.catalog.grouping.commit(synthetic, [NewGroup(faces) for faces in groups], 3, "t")
    services.catalog.grouping.finish(synthetic, groups[-1][-1], 0)
    found, total = services.catalog.persons.page(synthetic, 0, 100)
    assert total == 3
    edits = services.catalog.person_edits
    first = services.catalog.persons.images(synthetic, found[0].id, 0, 100)
    edits.update(synthetic, found[0].id, "Named", {"role": "guest", "seat": 4})
    edits.take_out(synthetic, found[0].id, [first[0][1]])
    edits.delete(synthetic, found[1].id)
    images = services.catalog.images.ids(gid)
    records = services.catalog.images.get_many(gid, images)
    edits.create(gid, "Tom", {"k": [1, "x"]}, [records[images[0]].faces[0].id, records[images[3]].faces[0].id], "t")


def _persons(catalog, gid: int) -> tuple:
    """Everything the catalog holds of the gallery's persons: each person with its photos and faces,
    every face's assignment, the grouping state."""
    listed, _ = catalog.persons.page(gid, 0, 1000)
    return (
        [(p, catalog.persons.images(gid, p.id, 0, 1000)) for p in listed],
        catalog.grouping.assignments(gid),
        catalog.grouping.state(gid),
    )
