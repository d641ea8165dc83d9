"""What was acknowledged survives lost, stale or damaged index files and crashes between photo
and record; packs never mix."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from index.records import NewFace, NewImage
from models.packs import PACKS_DIR
from service.api.errors import Code, answer_to
from service.core.config import Settings
from service.core.errors import PackMismatch
from service.core.services import build_services
from service.harness.photos import package_photo
from tests.usecases import add, delete, find

TOM = "Tom_Hanks_54745.png"
T1 = "t1.jpg"


def test_index_agrees_with_lmdb_after_lost_or_stale_checkpoints(settings: Settings) -> None:
    with build_services(settings, serving=True) as services:
        key = services.keys.create("k", "s").record
        first = add(services, key, package_photo(TOM))
        assert services.indexes.save_all() == 1
        files = services.indexes.files
        pointer = files.pointer_path(key.gallery, 0)
        base = files.directory / files.pointer(key.gallery, 0).file
        stale = {pointer: pointer.read_bytes(), base: base.read_bytes()}
        second = add(services, key, package_photo(T1))
        delete(services, key, [first.id])

    for damage in ("stale", "missing", "garbage"):
        for path in files.directory.glob(f"gallery-{key.gallery}.g*"):
            path.unlink()  # what the last run checkpointed at close
        if damage != "missing":  # stale: saved before the last add and delete; the log was trimmed past it
            for path, data in stale.items():
                path.write_bytes(data)
        if damage == "garbage":
            base.write_bytes(b"\x00\x00\x00\x02{}not an index")
        with build_services(settings, serving=True) as reopened:
            assert reopened.indexes.verify(key.gallery), damage
            hits = find(reopened, key, package_photo(T1))
            assert [hit.image.id for hit in hits] == [second.id], damage
            assert find(reopened, key, package_photo(TOM)) == [], damage


def test_old_orphan_photo_files_are_removed_at_start_and_young_ones_kept(settings: Settings) -> None:
    with build_services(settings, serving=True) as services:
        key = services.keys.create("k", "s").record
        kept = add(services, key, package_photo(TOM))
        orphan = services.photos.write(key.gallery, package_photo(T1), "image/jpeg")  # as if killed before commit
        young = services.photos.write(key.gallery, package_photo(T1), "image/jpeg")  # another process's add
        hours_ago = time.time() - 2 * settings.orphan_grace_seconds
        os.utime(services.photos.path(orphan), (hours_ago, hours_ago))
        os.utime(services.photos.path(kept.file), (hours_ago, hours_ago))
    with build_services(settings, serving=True) as reopened:
        assert not reopened.photos.path(orphan).exists()
        assert reopened.photos.path(kept.file).exists()
        assert reopened.photos.path(young).exists(), "its record may be about to commit"
        gallery = reopened.catalog.images.gallery(key.gallery)
        faces = [NewFace([0.0, 0.0, 9.0, 9.0], 0.9, np.ones(gallery.dim, np.float32) / np.sqrt(gallery.dim))]
        late = reopened.catalog.images.add(key.gallery, NewImage(young, "image/jpeg", {}, "now", gallery.pack, faces))
        assert reopened.gallery.photo(key.gallery, late.id)[0] == package_photo(T1), (
            "the other process's add has its photo"
        )


def _renamed_pack(tmp_path: Path, name: str) -> Path:
    manifest = json.loads((PACKS_DIR / "buffalo_s" / "pack.json").read_text())
    manifest["name"] = name
    folder = tmp_path / name
    folder.mkdir()
    (folder / "pack.json").write_text(json.dumps(manifest))
    return folder


def test_a_gallery_refuses_faces_of_another_pack(settings: Settings, tmp_path: Path) -> None:
    with build_services(settings, serving=True) as services:
        key = services.keys.create("k", "s").record
        add(services, key, package_photo(TOM))
    other_pack = replace(settings, models=str(_renamed_pack(tmp_path, "other_pack")))
    with build_services(other_pack, serving=True) as other:
        with pytest.raises(PackMismatch) as added:
            add(other, key, package_photo(T1))
        assert answer_to(added.value).code == Code.PACK_MISMATCH and "reembed" in answer_to(added.value).message
        with pytest.raises(PackMismatch) as searched:
            find(other, key, package_photo(TOM), top_k=5)
        assert answer_to(searched.value).code == Code.PACK_MISMATCH
        assert other.catalog.images.gallery(key.gallery).images == 1, "the refused add stored nothing"
        assert other.photos.remove_orphans(other.catalog.images.files, grace=0) == 0, "and left no file behind"


def test_every_face_is_stored_with_its_pack_and_dimension(services) -> None:
    key = services.catalog.keys.get("test-key")
    record = add(services, key, package_photo(T1))
    snapshot = services.catalog.log.snapshot(key.gallery)
    gallery, ids, vectors = snapshot.gallery, snapshot.ids, snapshot.vectors
    assert sorted(ids.tolist()) == sorted(face.id for face in record.faces)
    assert (gallery.pack, gallery.dim) == ("buffalo_s_edgeface", 1024), "the default pack's fused vectors"
    assert vectors.shape == (len(record.faces), 1024)
