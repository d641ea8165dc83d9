"""A data directory kept through the upgrade to buffalo_s_edgeface: its buffalo_s galleries answer as
a buffalo_s server answers them, new galleries get the fused pack, and a gallery the running models
cannot serve is refused (code 10) rather than searched with another pack's vectors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from index.lmdb.encoding import pair
from index.records import KeyRecord
from service.api.errors import Code, answer_to
from service.core.config import Settings
from service.core.errors import PackMismatch
from service.core.requests import Photo, Search
from service.core.services import Services, build_services
from service.harness.live import REFERENCE_RUNTIME
from service.harness.photos import flipped, package_photo
from tests.usecases import add, find

FUSED = "buffalo_s_edgeface"
PROBES = {"tom": flipped(package_photo("Tom_Hanks_54745.png")), "yao": package_photo("yaoming.jpg")}


def _with(settings: Settings, pack: str) -> Services:
    # Both packs on ONNX Runtime: w600k_mbf then runs the same arithmetic in either pack, so a served
    # gallery's answers can be held equal to the last decimal (the fused pack's own choice, bf16, is not
    # bit-equal to buffalo_s's fp32: docs/models.md, "Runtimes and precision").
    return build_services(
        replace(settings, models=pack, model_runtime=Settings.from_env(REFERENCE_RUNTIME).model_runtime), serving=True
    )


def _answers(services: Services, key: KeyRecord) -> dict:
    """Every probe's answers (ids, scores, boxes) at threshold off and at the default, and the default."""
    found = {
        (name, threshold): [(hit.image.id, hit.score, hit.bbox) for hit in find(services, key, probe, 10, threshold)]
        for name, probe in PROBES.items()
        for threshold in (-1.0, None)
    }
    each = services.searcher.search_each_face(key, Search(Photo(package_photo("t1.jpg")), 3, None, "all"))
    found["t1, every face"] = [[(m.image.id, m.score) for m in answer.matches] for answer in each]
    return {"answers": found, "threshold": services.searcher.default_threshold(key.gallery)}


@pytest.mark.slow
def test_a_buffalo_s_gallery_answers_on_the_fused_pack_as_on_buffalo_s(settings: Settings) -> None:
    with _with(settings, "buffalo_s") as old:
        key = old.keys.create("kept", "s").record
        for name in ("Tom_Hanks_54745.png", "t1.jpg", "yaoming.jpg"):
            add(old, key, package_photo(name), {"photo": name})
        before = _answers(old, key)

    with _with(settings, FUSED) as upgraded:
        served = _answers(upgraded, key)
        assert served == before, "the same answers, scores and default threshold as buffalo_s gave"
        edgeface = upgraded.analyzer.embedder.models[1]
        edgeface.embed = None  # not run for a buffalo_s gallery
        late = add(upgraded, key, package_photo("players.jpg"), {"photo": "added after the upgrade"})
        after_add = _answers(upgraded, key)
        del edgeface.embed
        gallery = upgraded.catalog.images.gallery(key.gallery)
        assert (gallery.pack, gallery.dim) == ("buffalo_s", 512) and late.pack == "buffalo_s"

        new_key = upgraded.keys.create("new", "s").record
        added = add(upgraded, new_key, package_photo("t1.jpg"))
        gallery = upgraded.catalog.images.gallery(new_key.gallery)
        assert (gallery.pack, gallery.dim) == (FUSED, 1024) and added.pack == FUSED
        env = upgraded.catalog.env
        with env.reading() as txn:
            raw = txn.get(pair(new_key.gallery, added.faces[0].id), db=env.db["faces"])
        assert len(raw) < 2 * 1024 + 100, "a fused face is kept as float16: 2 KiB, one LMDB overflow page"

    with _with(settings, "buffalo_s") as back:
        assert _answers(back, key) == after_add, "what the upgraded server added, buffalo_s answers the same"
        with pytest.raises(PackMismatch):
            find(back, new_key, PROBES["tom"])


@pytest.mark.slow
def test_a_gallery_the_running_models_cannot_serve_answers_code_10(settings: Settings) -> None:
    with _with(settings, "yunet_sface") as commercial:
        yunet = commercial.keys.create("yunet", "s").record
        add(commercial, yunet, package_photo("Tom_Hanks_54745.png"))
    with _with(settings, FUSED) as fused:
        fused_key = fused.keys.create("fused", "s").record
        add(fused, fused_key, package_photo("Tom_Hanks_54745.png"))
        for attempt in (lambda: find(fused, yunet, PROBES["tom"]), lambda: add(fused, yunet, package_photo("t1.jpg"))):
            with pytest.raises(PackMismatch) as refused:
                attempt()
            assert answer_to(refused.value).code == Code.PACK_MISMATCH and "yunet_sface" in str(refused.value)
        assert fused.catalog.images.gallery(yunet.gallery).images == 1, "the refused add stored nothing"
    with _with(settings, "buffalo_s") as older:
        for attempt in (lambda: find(older, fused_key, PROBES["tom"]), lambda: add(older, fused_key, PROBES["yao"])):
            with pytest.raises(PackMismatch) as refused:
                attempt()
            assert answer_to(refused.value).code == Code.PACK_MISMATCH and "reembed" in str(refused.value)
        vectors = older.catalog.log.snapshot(fused_key.gallery).vectors
        assert vectors.shape[1] == 1024 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
