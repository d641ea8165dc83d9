"""Milvus collections made before collections and filters existed (no collection or metadata
fields, which Milvus 2.3 cannot add) are refilled from the catalog into the current schema by
the first serving replica, and dropped: every face is searchable again, filters included. So
are the collections of other typed keys, once ``FACE_SEARCH_FILTER_KEYS`` changes."""

from __future__ import annotations

import pytest

from index.filters import Scope
from index.milvus import MilvusIndexes
from index.milvus.collection import HNSW, collection_base
from index.postgres import PostgresCatalog
from index.records import collection_key
from index.vectors import IndexSettings
from service.core.config import Limits
from service.core.filters import parse_filter
from service.harness.synthetic import exact_top, faces
from tests.cluster import Engines
from tests.contract.test_catalog import gallery_of, new_image

pytestmark = pytest.mark.cluster


def old_collection(uri: str, name: str, dim: int, rows: list[dict]) -> None:
    """A collection as index/milvus/collection.py made them before schema v2."""
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(uri=uri)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("gallery", DataType.INT64, is_partition_key=True)
    schema.add_field("image", DataType.INT64)
    schema.add_field("box", DataType.JSON)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    index = client.prepare_index_params()
    index.add_index(field_name="vector", index_type="HNSW", metric_type="IP", params=HNSW)
    client.create_collection(name, schema=schema, index_params=index, consistency_level="Bounded")
    client.insert(name, rows)
    client.close()


def test_an_old_collection_is_refilled_into_the_current_schema_and_dropped(engines: Engines) -> None:
    catalog = PostgresCatalog(engines.new_database())
    try:
        gid = gallery_of(catalog)
        data = faces(20)
        records = [catalog.images.add(gid, new_image(data.vectors[n : n + 4], f"{n}.jpg")) for n in range(0, 80, 4)]
        catalog.images.update(gid, records[3].id, {"vip": True})
        gallery = catalog.images.gallery(gid)
        old = collection_base(catalog.namespace, gallery.pack, gallery.dim)  # as named before schema v2
        rows = [
            {"id": face.id, "gallery": gid, "image": record.id, "box": {"bbox": face.bbox},
             "vector": data.vectors[4 * n + i].tolist()}
            for n, record in enumerate(records) for i, face in enumerate(record.faces)
        ]  # fmt: skip
        old_collection(engines.milvus.uri, old, gallery.dim, rows)
        catalog.outbox.mark(gid, collection_key(gallery.pack, gallery.dim), gallery.seq)  # as the old applier left it

        before = MilvusIndexes(catalog, engines.milvus.uri, IndexSettings())
        assert "older schema" in (before.rebuild_reason(gid) or "")
        before.close()

        indexes = MilvusIndexes(catalog, engines.milvus.uri, IndexSettings(), serving=True)
        indexes.open_all()
        try:
            assert not indexes.milvus.call(lambda client: client.has_collection(old)), "the old one is dropped"
            assert indexes.verify(gid) and indexes.rebuild_reason(gid) is None
            _, ids = indexes.search(gid, data.queries, 10)
            snapshot = catalog.log.snapshot(gid)
            assert [[int(i) for i in row] for row in ids] == exact_top(snapshot.vectors, snapshot.ids, data.queries, 10)
            vip = Scope(where=parse_filter({"vip": True}, Limits()))
            _, ids = indexes.search(gid, data.queries, 10, vip)
            assert {int(i) for i in ids.ravel() if i >= 0} == {face.id for face in records[3].faces}
            assert indexes.upgrade() == 0, "nothing left to move"
            untyped = indexes.collection(gallery.pack, gallery.dim).name
        finally:
            indexes.close()

        typed = MilvusIndexes(catalog, engines.milvus.uri, IndexSettings(filter_keys=("vip",)), serving=True)
        typed.open_all()
        try:
            assert typed.collection(gallery.pack, gallery.dim).name != untyped
            assert not typed.milvus.call(lambda client: client.has_collection(untyped)), "the other keys' is dropped"
            _, ids = typed.search(gid, data.queries, 10, vip)
            assert {int(i) for i in ids.ravel() if i >= 0} == {face.id for face in records[3].faces}
            assert typed.rebuild_reason(gid) is None and typed.upgrade() == 0
        finally:
            typed.close()
    finally:
        catalog.close()
