"""Copy an embedded data directory (LMDB + FAISS + photos) into cluster mode (PostgreSQL + Milvus).

  python scripts/migrate.py --from DATA_DIR   # the cluster from FACE_SEARCH_CATALOG_URL, _MILVUS_URI, _PHOTO_DIR
                            [--sample 20] [--batch 500]

Stop the embedded server first (writes it takes meanwhile would be missed; running this
again copies them). Every key (secret hash, quota, requests made), gallery, image, face
and photo keeps its id and name; the embeddings are copied, not recomputed, and reach
Milvus through the outbox, as any write does. Resumable: what was copied is skipped, so
after an interruption run the same command again. At the end it checks, per gallery, that
both sides hold the same images and faces, and that a sample of searches (stored faces as
queries) gives the same best matches on both sides; exit status 1 when they disagree.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from index.faiss import FaissIndexes
from index.lmdb import LmdbCatalog
from index.milvus import MilvusIndexes
from index.postgres import PostgresCatalog
from service.core.config import Settings

TOP = 5  # answers compared per sampled search


def copy_gallery(source: LmdbCatalog, target: PostgresCatalog, gid: int, photos: tuple[Path, Path], batch: int) -> int:
    """Copy the gallery's images, faces and photos not copied yet; how many images were copied now."""
    done = target.importer.present(gid)
    todo = [image_id for image_id in source.images.ids(gid) if image_id not in done]
    if not todo:
        return 0
    snapshot = source.log.snapshot(gid)
    vectors = dict(zip(snapshot.ids.tolist(), snapshot.vectors, strict=True))
    for start in range(0, len(todo), batch):
        records = list(source.images.get_many(gid, todo[start : start + batch]).values())
        for record in records:
            copied = photos[1] / record.file
            if copied.exists() or photos[0] == photos[1]:
                continue
            if not (photos[0] / record.file).is_file():  # already so before: GET .../file answers code 8 on both sides
                print(f"gallery {gid}: image {record.id} has no photo file ({record.file}) in the source", flush=True)
                continue
            copied.parent.mkdir(parents=True, exist_ok=True)
            # a new mtime, not the source's: the replicas' orphan sweep spares photos younger than
            # its grace period, and this one's record commits only after its batch is copied
            shutil.copyfile(photos[0] / record.file, copied)
        target.importer.put_images(gid, records, vectors)
        print(f"gallery {gid}: {min(start + batch, len(todo))} of {len(todo)} images copied", flush=True)
    return len(todo)


def same_answers(
    source: LmdbCatalog, faiss: FaissIndexes, target: PostgresCatalog, milvus: MilvusIndexes, gid: int, sample: int
) -> list[str]:
    """What differs between the two sides for this gallery (empty: they agree)."""
    before, after = source.images.gallery(gid), target.images.gallery(gid)
    problems = []
    if (before.images, before.faces) != (after.images, after.faces):
        problems.append(f"{before.images} images / {before.faces} faces, cluster {after.images} / {after.faces}")
    if not before.faces:
        return problems
    held = milvus.status(gid).vectors
    if held != before.faces:
        problems.append(f"Milvus holds {held} of {before.faces} faces")
    snapshot = source.log.snapshot(gid)
    chosen = np.random.default_rng(0).choice(len(snapshot.ids), min(sample, len(snapshot.ids)), replace=False)
    queries = snapshot.vectors[chosen]
    _, embedded = faiss.search(gid, queries, TOP)
    _, cluster = milvus.search(gid, queries, TOP)
    for face, mine, theirs in zip(snapshot.ids[chosen].tolist(), embedded, cluster, strict=True):
        if mine[0] != theirs[0] or len(set(mine.tolist()) & set(theirs.tolist())) < TOP - 1:
            problems.append(f"face {face}: embedded answers {mine.tolist()}, cluster {theirs.tolist()}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", type=Path, required=True, help="the embedded data directory")
    parser.add_argument("--sample", type=int, default=20, help="searches compared per gallery")
    parser.add_argument("--batch", type=int, default=500, help="images copied per transaction")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    storage = settings.storage
    if storage.catalog_url is None or storage.milvus_uri is None:
        parser.error("set FACE_SEARCH_CATALOG_URL and FACE_SEARCH_MILVUS_URI to the cluster to copy into")
    if not (args.source / "lmdb").is_dir():
        parser.error(f"{args.source} holds no embedded data directory (no lmdb/ folder)")
    source = LmdbCatalog(args.source / "lmdb")
    target = PostgresCatalog(storage.catalog_url)
    milvus = MilvusIndexes(target, storage.milvus_uri, settings.index)
    faiss = FaissIndexes(source, args.source / "indexes", settings.index, serving=False)
    photos = (args.source / "photos", settings.photos_dir)
    try:
        theirs = {gid: gallery.key for gid, gallery in source.images.galleries().items()}
        clashes = [
            f"gallery {gid} ({g.key})" for gid, g in target.images.galleries().items() if theirs.get(gid) != g.key
        ]
        if clashes:
            print(f"the cluster's catalog holds other keys ({', '.join(clashes[:5])}): migrate into an empty one")
            return 1
        for record, count in source.keys.all():
            target.importer.put_key(record, count, source.images.gallery(record.gallery))
        for gid in sorted(theirs):
            copy_gallery(source, target, gid, photos, args.batch)
        target.importer.finish()
        disagreements = {}
        for gid in sorted(theirs):
            milvus.applier.apply(gid)
            disagreements[gid] = same_answers(source, faiss, target, milvus, gid, args.sample)
    finally:
        faiss.close()
        milvus.close()
        target.close()
        source.close()
    for gid, problems in disagreements.items():
        verdict = "same" if not problems else "DIFFERENT: " + "; ".join(problems[:3])
        print(f"gallery {gid} ({theirs[gid]}): {verdict}")
    return 1 if any(disagreements.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
