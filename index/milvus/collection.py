"""One Milvus collection per model pack and dimension, the gallery as its partition key.

Rows are faces: the face id is the primary key, the gallery the partition key (so a
gallery's search reads only its own partition), the image id, box, collection and a typed
projection of the image's metadata and creation time as scalar fields (what a scope's
expression reads: ``expression.py``), and the unit vector under an HNSW index on inner
product (cosine). Collections made before collections and filters existed lack those fields
and Milvus 2.3 cannot add fields to a collection: they are named without ``SCHEMA``'s suffix,
and ``MilvusIndexes.upgrade`` refills their galleries from the catalog into the current
schema's collections, then drops them. Rows are written as a
delete by id followed by an insert, never as an upsert: the 2.3 server the tests run
misroutes upserted rows of a partition-key collection, and delete-then-insert is just as
idempotent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from ..errors import StorageUnavailableError
from ..records import Placed
from .client import BULK_SECONDS, CALL_SECONDS, Milvus
from .expression import NUMBER_FIELD, TAGS, TYPED_BYTES, TYPED_VALUES, UNTYPED, Layout

T = TypeVar("T")

HNSW = {"M": 16, "efConstruction": 100}  # recall@10 1.0 at 100k x 512 with ef 64 (cluster notes)
MIN_EF = 64
# A filtered search walks the graph past the nodes the filter refuses, so it needs a longer list
# of candidates to reach the same recall; how much longer grows as the scope keeps less of the
# rows of the segments it touches. Rows are written in order, so a collection or a window of
# dates filled at once keeps much of a few segments and none of the others, and it is there that
# the walk starves; a scope spread thin over every segment does not (the million-face run answered
# such scopes in full at the smallest ef). So the ef follows the share of the gallery's images that
# the scope's collections and creation times admit, which the catalog counts cheaply
# (``OutboxCatalog.images.count_upto``): from ``FULL_SHARE`` up, ``FILTERED_EF``; below it the ef
# grows as the share's -1.5th power, up to ``MAX_EF`` (chosen from the million-face run's table of
# recall and time by ef: docs/benchmarks/2026-12-07-cluster-filters.md). A metadata key whose
# values follow the upload order is better made a collection: its share is not counted.
FILTERED_EF = 1024
FULL_SHARE = 0.2
MAX_EF = 16_384
MAX_TOP_K = 16_384  # Milvus's largest limit of one search
INSERT_ROWS = 2_000  # rows per insert request (a 512-d row is 2 KB; requests stay well under 64 MB)


# the rows' fields: v2 added the collection and the metadata projection, v3 the creation time and
# the typed keys (``expression.Layout``), whose collections' names end in the layout's suffix
SCHEMA = "_v3"
COLLECTION_BYTES = 1024  # the longest collection name a row holds, as UTF-8


def collection_base(namespace: str, pack: str, dim: int) -> str:
    """What the names of every schema's and layout's collections of a pack start with: Milvus
    names allow letters, digits and underscores, so the pack is named by a hash."""
    return f"face_search_{namespace}_{hashlib.sha1(pack.encode()).hexdigest()[:10]}_{dim}"


def collection_name(namespace: str, pack: str, dim: int, layout: Layout) -> str:
    return f"{collection_base(namespace, pack, dim)}{SCHEMA}{layout.suffix}"


def filtered_ef(share: float) -> int:
    """The ef of a search whose scope keeps ``share`` of the gallery's images (see ``FILTERED_EF``)."""
    if share >= FULL_SHARE:
        return FILTERED_EF
    return int(min(MAX_EF, FILTERED_EF * (FULL_SHARE / max(share, FULL_SHARE / MAX_EF)) ** 1.5))


class Collection:
    def __init__(self, milvus: Milvus, name: str, dim: int, layout: Layout = UNTYPED) -> None:
        self.milvus, self.name, self.dim, self.layout = milvus, name, dim, layout
        self._ready = False

    def row(self, face: int, gallery: int, placed: Placed, vector: np.ndarray) -> dict:
        return {
            "id": face,
            "gallery": gallery,
            "image": placed.image,
            "box": {"bbox": placed.bbox},
            "collection": placed.collection,
            **self.layout.row(placed.metadata, placed.created_at),
            "vector": vector.tolist(),
        }

    def ensure(self) -> None:
        """Create (and load) the collection unless it exists; replicas racing to create it are fine."""
        if self._ready:
            return

        def create(client: Any) -> None:
            if client.has_collection(self.name, timeout=CALL_SECONDS):
                if "Loaded" not in str(client.get_load_state(self.name, timeout=CALL_SECONDS).get("state")):
                    client.load_collection(self.name, timeout=BULK_SECONDS)  # after a restart, until Milvus reloads it
                return
            from pymilvus import DataType, MilvusClient

            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("gallery", DataType.INT64, is_partition_key=True)
            schema.add_field("image", DataType.INT64)
            schema.add_field("box", DataType.JSON)
            schema.add_field("collection", DataType.VARCHAR, max_length=COLLECTION_BYTES)
            schema.add_field("meta", DataType.JSON)
            schema.add_field("created", DataType.DOUBLE)
            for name, sort in self.layout.fields():
                if sort == TAGS:
                    schema.add_field(name, DataType.ARRAY, element_type=DataType.VARCHAR,
                                     max_capacity=TYPED_VALUES, max_length=TYPED_BYTES + 1)  # fmt: skip
                elif sort == NUMBER_FIELD:
                    schema.add_field(name, DataType.DOUBLE)
                else:
                    schema.add_field(name, DataType.VARCHAR, max_length=TYPED_BYTES + 1)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
            index = client.prepare_index_params()
            index.add_index(field_name="vector", index_type="HNSW", metric_type="IP", params=HNSW)
            try:
                client.create_collection(
                    self.name, schema=schema, index_params=index, consistency_level="Bounded", timeout=BULK_SECONDS
                )
            except Exception:
                if not client.has_collection(self.name, timeout=CALL_SECONDS):
                    raise

        self.milvus.call(create)
        self._ready = True

    def call(self, what: Callable[[Any], T]) -> T:
        """``what(client)`` on the ensured collection; a failure makes the next call ensure it again
        (a restarted Milvus may have it unloaded)."""
        self.ensure()
        try:
            return self.milvus.call(what)
        except StorageUnavailableError:
            self._ready = False
            raise

    def write(self, deleted: list[int], rows: list[dict]) -> None:
        """Remove the faces ``deleted`` (every face whose state changed), then insert ``rows``."""
        if deleted:
            self.call(lambda client: client.delete(self.name, ids=deleted, timeout=BULK_SECONDS))
        for start in range(0, len(rows), INSERT_ROWS):
            self._insert(rows[start : start + INSERT_ROWS])

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        self.call(lambda client: client.insert(self.name, rows, timeout=BULK_SECONDS))

    def drop_gallery(self, gid: int) -> None:
        self.call(lambda client: client.delete(self.name, filter=f"gallery == {gid}", timeout=BULK_SECONDS))

    def search(
        self, gid: int, queries: np.ndarray, k: int, strong: bool, where: str | None = None, ef: int = MIN_EF
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, face ids) per query, best first, padded with id -1 to the longest answer;
        ``where``: an expression the rows must pass too; ``ef``: the walk's candidate list (at least
        the answer's length)."""
        limit = max(1, min(k, MAX_TOP_K))
        found = self.call(
            lambda client: client.search(
                self.name,
                data=np.asarray(queries, dtype=np.float32).tolist(),
                filter=f"gallery == {gid}" + (f" and {where}" if where else ""),
                limit=limit,
                search_params={"metric_type": "IP", "params": {"ef": max(ef, limit)}},
                consistency_level="Strong" if strong else "Bounded",
                timeout=CALL_SECONDS,
            )
        )
        width = max((len(hits) for hits in found), default=0)
        scores = np.full((len(queries), width), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), width), -1, dtype=np.int64)
        for row, hits in enumerate(found):
            for column, hit in enumerate(hits):
                scores[row, column], ids[row, column] = hit["distance"], hit["id"]
        return scores, ids

    def count(self, gid: int, strong: bool = True) -> int:
        found = self.call(
            lambda client: client.query(
                self.name, filter=f"gallery == {gid}", output_fields=["count(*)"],
                consistency_level="Strong" if strong else "Bounded", timeout=CALL_SECONDS,
            )
        )  # fmt: skip
        return int(found[0]["count(*)"])

    def present(self, gid: int, face_ids: list[int]) -> set[int]:
        """Which of ``face_ids`` the gallery's partition holds."""
        held: set[int] = set()
        for start in range(0, len(face_ids), MAX_TOP_K):
            held |= self._present(gid, face_ids[start : start + MAX_TOP_K])
        return held

    def _present(self, gid: int, face_ids: list[int]) -> set[int]:
        found = self.call(
            lambda client: client.query(
                self.name, filter=f"gallery == {gid} and id in {face_ids}", output_fields=["id"],
                consistency_level="Strong", limit=len(face_ids), timeout=CALL_SECONDS,
            )
        )  # fmt: skip
        return {int(row["id"]) for row in found}

    def compact(self, timeout: float) -> str:
        """Flush and compact the collection, waiting up to ``timeout`` seconds; its final state."""
        import time

        self.call(lambda client: client.flush(self.name, timeout=BULK_SECONDS))
        job = self.call(lambda client: client.compact(self.name, timeout=BULK_SECONDS))
        deadline = time.monotonic() + timeout
        while True:
            state = str(self.call(lambda client: client.get_compaction_state(job, timeout=CALL_SECONDS)))
            if state == "Completed" or time.monotonic() > deadline:
                return state
            time.sleep(0.5)

    def exists(self) -> bool:
        return bool(self.milvus.call(lambda client: client.has_collection(self.name, timeout=CALL_SECONDS)))

    def drop(self) -> None:
        self.milvus.call(lambda client: client.drop_collection(self.name, timeout=BULK_SECONDS))
        self._ready = False

    def index_state(self) -> dict:
        return self.call(lambda client: client.describe_index(self.name, "vector", timeout=CALL_SECONDS))
