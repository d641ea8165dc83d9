"""Re-embedding a gallery with another pack: old vectors serve until one atomic swap."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.packs import PACKS_DIR, load_pack
from service.api.errors import Code, answer_to
from service.core.config import Settings
from service.core.errors import PackMismatch
from service.core.reembed import Plan, ReembedSummary
from service.core.services import build_services
from service.harness.photos import flipped, package_photo
from tests.usecases import add, find, index_state

TOM = "Tom_Hanks_54745.png"
T1 = "t1.jpg"


def _pack_named(tmp_path: Path, name: str) -> Path:
    """The default pack's weights under another name: a new pack as far as galleries go."""
    manifest = json.loads((PACKS_DIR / "buffalo_s" / "pack.json").read_text())
    folder = tmp_path / name
    folder.mkdir()
    (folder / "pack.json").write_text(json.dumps({**manifest, "name": name}))
    return folder


def _vectors(services, gid: int) -> dict[int, np.ndarray]:
    snapshot = services.catalog.log.snapshot(gid)
    return {int(i): v for i, v in zip(snapshot.ids, snapshot.vectors, strict=True)}


@pytest.mark.slow
def test_reembedding_serves_the_old_vectors_until_the_swap(settings: Settings, tmp_path: Path) -> None:
    settings = replace(settings, models="buffalo_s")  # the new pack below is buffalo_s's weights renamed
    new_pack = _pack_named(tmp_path, "buffalo_s_next")
    server = build_services(settings, serving=True)
    key = server.keys.create("k", "s").record
    tom = add(server, key, package_photo(TOM), {"who": "tom"})
    group = add(server, key, package_photo(T1), {"who": "group"})
    old = _vectors(server, key.gallery)
    probe = flipped(package_photo(TOM))

    plan = Plan.of(load_pack(str(new_pack)), "buffalo_s", 1)
    summary = ReembedSummary()
    server.reembedding.stage(key, plan, 4, summary, lambda n: None)
    assert (summary.images, summary.faces, summary.lost) == (2, 7, 0)
    assert _vectors(server, key.gallery).keys() == old.keys(), "staged aside, the serving vectors untouched"
    assert server.catalog.images.gallery(key.gallery).pack == "buffalo_s"
    assert [hit.image.id for hit in find(server, key, probe, top_k=1)] == [tom.id]

    late = add(server, key, package_photo("yaoming.jpg"), {"who": "added while staging"})
    swapped = server.indexes.swap(key.gallery, plan.target.name, plan.dim)
    assert not swapped, "refused: the new photo is not re-embedded"
    assert server.catalog.images.gallery(key.gallery).pack == "buffalo_s"
    summary = server.reembedding.run(key, str(new_pack))  # resumes: only the late photo is left to embed
    assert summary.images == 1 and summary.pack == "buffalo_s_next"

    gallery = server.catalog.images.gallery(key.gallery)
    assert (gallery.pack, gallery.dim, gallery.faces) == ("buffalo_s_next", 512, 8)
    new = _vectors(server, key.gallery)
    assert new.keys() == old.keys() | {face.id for face in late.faces}, "faces keep their ids"
    assert all(float(old[face] @ new[face]) > 0.99 for face in old), "each face matched to itself again"
    assert all(
        record.pack == "buffalo_s_next"
        for record in server.catalog.images.get_many(key.gallery, [tom.id, group.id]).values()
    )
    with pytest.raises(PackMismatch) as refused:
        find(server, key, probe, top_k=1)
    assert answer_to(refused.value).code == Code.PACK_MISMATCH, "a server still on the old pack refuses to mix"
    server.close()

    with build_services(replace(settings, models=str(new_pack)), serving=True) as renewed:
        assert renewed.indexes.verify(key.gallery)
        assert index_state(renewed, key.gallery)["generation"] == 1
        assert [hit.image.id for hit in find(renewed, key, probe, top_k=1)] == [tom.id]
