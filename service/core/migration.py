"""Moving an embedded deployment (LMDB + FAISS + photos) into cluster mode (PostgreSQL +
Milvus), every id kept, then checking that both sides answer the same.

Every key (secret hash, quota, requests made), gallery, image, face, photo and person keeps
its id and name; the embeddings are copied, not recomputed, and reach the cluster's vector
index through its outbox, as any write does. A gallery's persons go in after its images as
they stand: names, metadata, covers, which a user edited, every face's assignment (the faces a
user placed, took out of a person, or kept out of every person) and the grouping state. What
was copied is skipped, so a migration stopped at any point is resumed by running it again.
``compare`` checks, per gallery, that both sides hold the same images, faces and persons and
that a sample of searches (stored faces as queries) gives the same best matches. Jobs are not
copied: they are a running process's work, and a grouping run is started again on demand.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.backend import StorageSettings, open_backend, open_cluster
from index.catalog import Catalog, CatalogImport
from index.records import PersonRecord
from index.vectors import IndexSettings, VectorIndexes

TOP = 5  # answers compared per sampled search


@dataclass(frozen=True)
class Side:
    """One deployment: its catalog, its vector index and its photo folder."""

    catalog: Catalog
    vectors: VectorIndexes
    photos: Path


class Migration:
    """From ``source`` into ``target``, whose catalog takes the copied records through ``importer``."""

    def __init__(self, source: Side, target: Side, importer: CatalogImport) -> None:
        self.source, self.target, self.importer = source, target, importer

    def galleries(self) -> dict[int, str]:
        """The source's galleries and the key of each."""
        return {gid: gallery.key for gid, gallery in self.source.catalog.images.galleries().items()}

    def clashes(self) -> list[str]:
        """The target's galleries that are not the same key's as in the source (migrate into an empty one)."""
        theirs = self.galleries()
        return [
            f"gallery {gid} ({g.key})"
            for gid, g in self.target.catalog.images.galleries().items()
            if theirs.get(gid) != g.key
        ]

    def copy(self, batch: int, progress: Callable[[str], None]) -> None:
        """Every key, then every gallery's images, faces and photos not copied yet."""
        source = self.source.catalog
        for record, count in source.keys.all():
            self.importer.put_key(record, count, source.images.gallery(record.gallery))
        for gid in sorted(self.galleries()):
            self._copy_gallery(gid, batch, progress)
            self._copy_persons(gid)
        self.importer.finish()

    def _copy_gallery(self, gid: int, batch: int, progress: Callable[[str], None]) -> None:
        done = self.importer.present(gid)
        todo = [image_id for image_id in self.source.catalog.images.ids(gid) if image_id not in done]
        if not todo:
            return
        snapshot = self.source.catalog.log.snapshot(gid)
        vectors = dict(zip(snapshot.ids.tolist(), snapshot.vectors, strict=True))
        for start in range(0, len(todo), batch):
            records = list(self.source.catalog.images.get_many(gid, todo[start : start + batch]).values())
            for record in records:
                copied, original = self.target.photos / record.file, self.source.photos / record.file
                if copied.exists() or original == copied:
                    continue
                if not original.is_file():  # already so before: GET .../file answers code 8 on both sides
                    progress(f"gallery {gid}: image {record.id} has no photo file ({record.file}) in the source")
                    continue
                copied.parent.mkdir(parents=True, exist_ok=True)
                # a new mtime, not the source's: the replicas' orphan sweep spares photos younger than
                # its grace period, and this one's record commits only after its batch is copied
                shutil.copyfile(original, copied)
            self.importer.put_images(gid, records, vectors)
            progress(f"gallery {gid}: {min(start + batch, len(todo))} of {len(todo)} images copied")

    def _copy_persons(self, gid: int) -> None:
        source = self.source.catalog
        self.importer.put_persons(
            gid, _persons(source, gid), source.grouping.assignments(gid), source.grouping.state(gid)
        )

    def compare(self, gid: int, sample: int) -> list[str]:
        """What differs between the two sides for this gallery (empty: they agree)."""
        self.target.vectors.sync(gid)
        source, target = self.source.catalog, self.target.catalog
        before, after = source.images.gallery(gid), target.images.gallery(gid)
        problems = []
        if (before.images, before.faces) != (after.images, after.faces):
            problems.append(f"{before.images} images / {before.faces} faces, cluster {after.images} / {after.faces}")
        if _persons(source, gid) != _persons(target, gid):
            problems.append("the persons differ")
        if source.grouping.assignments(gid) != target.grouping.assignments(gid):
            problems.append("the faces' persons differ")
        if source.grouping.state(gid) != target.grouping.state(gid):
            problems.append(f"grouping state {source.grouping.state(gid)}, cluster {target.grouping.state(gid)}")
        if not before.faces:
            return problems
        held = self.target.vectors.status(gid).vectors
        if held != before.faces:
            problems.append(f"the cluster's index holds {held} of {before.faces} faces")
        snapshot = source.log.snapshot(gid)
        chosen = np.random.default_rng(0).choice(len(snapshot.ids), min(sample, len(snapshot.ids)), replace=False)
        queries = snapshot.vectors[chosen]
        _, embedded = self.source.vectors.search(gid, queries, TOP)
        _, cluster = self.target.vectors.search(gid, queries, TOP)
        for face, mine, theirs in zip(snapshot.ids[chosen].tolist(), embedded, cluster, strict=True):
            if mine[0] != theirs[0] or len(set(mine.tolist()) & set(theirs.tolist())) < TOP - 1:
                problems.append(f"face {face}: embedded answers {mine.tolist()}, cluster {theirs.tolist()}")
        return problems


def _persons(catalog: Catalog, gid: int) -> list[PersonRecord]:
    """Every person of the gallery, in listing order."""
    return catalog.persons.page(gid, 0, catalog.persons.page(gid, 0, 0)[1])[0]


@contextmanager
def migration(
    source_dir: Path, target: StorageSettings, photo_dir: Path, settings: IndexSettings
) -> Iterator[Migration]:
    """The embedded deployment in ``source_dir`` and the cluster ``target`` names, both open
    for the block (ValueError when ``target`` names no cluster)."""
    source_catalog, source_vectors = open_backend(StorageSettings(data_dir=source_dir), settings)
    try:
        target_catalog, target_vectors = open_cluster(target, settings)
        try:
            yield Migration(
                Side(source_catalog, source_vectors, source_dir / "photos"),
                Side(target_catalog, target_vectors, photo_dir),
                target_catalog.importer,
            )
        finally:
            target_vectors.close()
            target_catalog.close()
    finally:
        source_vectors.close()
        source_catalog.close()
