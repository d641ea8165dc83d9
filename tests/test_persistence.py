"""What was acknowledged survives restarts, crashes and lost index files; packs never mix."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from index.lmdb import LmdbCatalog
from models.packs import PACKS_DIR
from service.api.errors import Code, refusal
from service.core.config import Settings
from service.core.errors import PackMismatch
from service.core.services import build_services
from tests.conftest import LiveServer
from tests.photos import b64, flipped, package_photo
from tests.usecases import add, delete, find

TOM = "Tom_Hanks_54745.png"
T1 = "t1.jpg"


def _add(server: LiveServer, photo: bytes, metadata: dict) -> dict:
    answer = server.call("POST", "/images", json={"image": {"base64": b64(photo), "metadata": metadata}})
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def _search_ids(server: LiveServer, photo: bytes) -> list[int]:
    answer = server.call("POST", "/search", json={"image": {"base64": b64(photo)}})
    assert answer.status_code == 200, answer.text
    return [hit["id"] for hit in answer.json()["result"]]


def _listed(server: LiveServer) -> dict[int, dict]:
    return {item["id"]: item["metadata"] for item in server.call("GET", "/images").json()["result"]}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["graceful", "sigkill"])
def test_restart_keeps_everything(tmp_path: Path, how: str) -> None:
    server = LiveServer(tmp_path / "data").start()
    try:
        tom = _add(server, package_photo(TOM), {"who": "tom"})
        group = _add(server, package_photo(T1), {"who": "group"})
        gone = _add(server, flipped(package_photo(TOM)), {"who": "deleted"})
        assert server.call("DELETE", "/images", json={"ids": [gone["id"]]}).json()["deleted"] == 1
        server.call("PUT", f"/images/{group['id']}", json={"metadata": {"who": "group", "v": 2}})
        server.stop() if how == "graceful" else server.kill()
        server.start()
        assert _listed(server) == {tom["id"]: {"who": "tom"}, group["id"]: {"who": "group", "v": 2}}
        assert _search_ids(server, flipped(package_photo(TOM))) == [tom["id"]]
        assert server.call("GET", f"/images/{tom['id']}/file").content == package_photo(TOM)
        after = _add(server, package_photo("yaoming.jpg"), {"who": "yao"})
        assert after["id"] > gone["id"], "ids are never reused"
    finally:
        server.stop()


def test_index_agrees_with_lmdb_after_lost_or_stale_checkpoints(settings: Settings) -> None:
    with build_services(settings, serving=True) as services:
        key = services.keys.create("k", "s").record
        first = add(services, key, package_photo(TOM))
        assert services.indexes.save_all() == 1
        checkpoint = services.indexes.path(key.gallery)
        stale = checkpoint.read_bytes()
        second = add(services, key, package_photo(T1))
        delete(services, key, [first.id])

    for damage in ("stale", "missing", "garbage"):
        if damage == "stale":
            checkpoint.write_bytes(stale)  # saved before the last add and delete; log was trimmed up to it
        elif damage == "missing":
            checkpoint.unlink(missing_ok=True)
        else:
            checkpoint.write_bytes(b"\x00\x00\x00\x02{}not an index")
        with build_services(settings, serving=True) as reopened:
            assert reopened.indexes.verify(key.gallery), damage
            hits = find(reopened, key, package_photo(T1))
            assert [hit.image.id for hit in hits] == [second.id], damage
            assert find(reopened, key, package_photo(TOM)) == [], damage


def test_orphan_photo_files_are_removed_at_start(settings: Settings) -> None:
    with build_services(settings, serving=True) as services:
        key = services.keys.create("k", "s").record
        kept = add(services, key, package_photo(TOM))
        orphan = services.photos.write(key.gallery, package_photo(T1), "image/jpeg")  # as if killed before commit
    with build_services(settings, serving=True) as reopened:
        assert not reopened.photos.path(orphan).exists()
        assert reopened.photos.path(kept.file).exists()


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
        assert refusal(added.value).code == Code.PACK_MISMATCH and "reembed" in refusal(added.value).message
        with pytest.raises(PackMismatch) as searched:
            find(other, key, package_photo(TOM), top_k=5)
        assert refusal(searched.value).code == Code.PACK_MISMATCH
        assert other.catalog.images.gallery(key.gallery).images == 1, "the refused add stored nothing"
        assert other.photos.remove_orphans(other.catalog.images.files()) == 0, "and left no file behind"


def test_every_face_is_stored_with_its_pack_and_dimension(services) -> None:
    key = services.catalog.keys.get("test-key")
    record = add(services, key, package_photo(T1))
    snapshot = services.catalog.log.snapshot(key.gallery)
    gallery, ids, vectors = snapshot.gallery, snapshot.ids, snapshot.vectors
    assert sorted(ids.tolist()) == sorted(face.id for face in record.faces)
    assert (gallery.pack, gallery.dim) == ("buffalo_s", 512)
    assert vectors.shape == (len(record.faces), 512)


def test_lmdb_map_grows_when_full(tmp_path: Path) -> None:
    catalog = LmdbCatalog(tmp_path / "lmdb", map_size=256 * 1024)
    try:
        for index in range(300):
            catalog.keys.create(f"key-{index:04d}-" + "x" * 400, "hash" * 50, None, "now")
        assert len(catalog.keys.all()) == 300
        assert catalog.env.map_size > 256 * 1024
    finally:
        catalog.close()
