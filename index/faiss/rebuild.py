"""Rebuilding a gallery's index from the catalog while the service keeps using the old one.

A rebuild reads every live face in one catalog snapshot (at some change seq), trains and
fills a new index from it, writes it as the gallery's next index generation and commits
that generation in the catalog. Writes that land meanwhile are in the log after the
snapshot's seq; a server adopting the new index replays them, so they are in the new
index too. Nothing is swapped in place: a rebuild killed at any point leaves the old index
serving and, at worst, files the next rebuild deletes.

A large gallery is never held as float vectors: a training sample is read by face id, then
the snapshot in batches to encode every face, so ten million faces cost their codes in
memory (72 bytes each with ``pq``, and the second code's 136), not their 20 GB of vectors.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np

from ..catalog import Catalog
from ..errors import IndexBusyError
from ..records import GalleryRecord
from ..vectors import IndexSettings, RebuildResult
from .files import IndexFiles, Pointer
from .vector_index import (
    FLAT,
    IVF,
    PACKED,
    IndexState,
    VectorIndex,
    codes_path,
    refine_bytes_for,
    scan_codes,
    training_size,
)

log = logging.getLogger(__name__)

EXIT_BUSY = 3  # a rebuild child's exit status when another rebuild holds the gallery
BATCH = 65536  # faces read from the catalog at a time


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def rebuild_reason(state: IndexState | None, faces: int, settings: IndexSettings) -> str | None:
    """Why a gallery's index should be rebuilt, or None when it is fine as it is."""
    if state is None:
        return "no index" if faces else None
    if state.kind == FLAT and faces >= settings.ivf_threshold:
        return f"{faces} faces reached the IVF threshold {settings.ivf_threshold}"
    if state.kind == IVF and faces < settings.ivf_threshold // 2:
        return f"{faces} faces is below half the IVF threshold {settings.ivf_threshold}"
    if state.kind == IVF and state.churn() > settings.rebuild_churn:
        return f"{state.churn():.0%} of the IVF changed since it was trained"
    if state.kind == IVF and state.storage != settings.storage:
        return f"vectors are stored as {state.storage}, the setting says {settings.storage}"
    if state.kind == IVF and state.refine_bytes != (wanted := refine_bytes_for(state.trained_on, state.dim, settings)):
        return f"the second code has {state.refine_bytes} bytes a face, the setting says {wanted}"
    if state.kind == IVF and state.storage == PACKED and state.scan_codes != (codes := scan_codes(state.dim, settings)):
        return f"the scan codes have {state.scan_codes // 2} bytes a face, the setting says {codes // 2}"
    return None


def saved_state(files: IndexFiles, gid: int, generation: int) -> IndexState | None:
    pointer = files.pointer(gid, generation)
    return IndexState(**pointer.state) if pointer is not None else None


def saved_rebuild_reason(catalog: Catalog, files: IndexFiles, gid: int, settings: IndexSettings) -> str | None:
    """``rebuild_reason`` from the saved pointer and the log after it, without loading the
    index: what a nightly ``--if-needed`` run checks for each gallery."""
    gallery = catalog.images.gallery(gid)
    state = saved_state(files, gid, gallery.index_generation)
    if state is not None:
        adds, removes = catalog.log.counts(gid, state.seq)
        state.added_since_training += adds
        state.removed_since_training += removes
    return rebuild_reason(state, gallery.faces, settings)


def _sample(catalog: Catalog, gid: int, dim: int, size: int, seed: int = 0) -> np.ndarray:
    """About ``size`` of the gallery's vectors, chosen at random and read by id, a batch at a
    time: a pass over every vector would cost the rebuild's whole read twice (at ten million
    faces, 40 GB of catalog). Faces deleted meanwhile are left out."""
    ids = catalog.images.face_ids(gid)
    chosen = np.sort(np.random.default_rng(seed).choice(ids, min(size, len(ids)), replace=False)).tolist()
    parts = [catalog.images.vectors(gid, chosen[start : start + BATCH]) for start in range(0, len(chosen), BATCH)]
    vectors = [vector for part in parts for vector in part.values()]
    return np.stack(vectors) if vectors else np.zeros((0, dim), np.float32)


def build_index(
    catalog: Catalog, gid: int, settings: IndexSettings, progress: Callable[[str], None] = log.info
) -> tuple[GalleryRecord, VectorIndex] | None:
    """The right index for the gallery's live faces, and the gallery record of the snapshot it
    holds; None for a gallery that never held a face."""
    gallery = catalog.images.gallery(gid)
    if gallery.dim is None:
        return None
    if gallery.faces < settings.ivf_threshold:
        snapshot = catalog.log.snapshot(gid)
        return snapshot.gallery, VectorIndex.build(gallery.dim, snapshot.ids, snapshot.vectors, settings)
    size = training_size(gallery.faces, settings.storage)
    progress(f"gallery {gid}: sampling {size} of {gallery.faces} vectors to train on")
    index = VectorIndex.trained(gallery.dim, _sample(catalog, gid, gallery.dim, size), gallery.faces, settings)
    with catalog.log.scan(gid, BATCH) as (gallery, batches):
        progress(f"gallery {gid}: adding {gallery.faces} vectors at seq {gallery.seq}")
        for ids, vectors in batches:
            index.add(ids, vectors)
    index.state.trained_on, index.state.added_since_training = index.count, 0
    return gallery, index


def write_base(files: IndexFiles, gid: int, generation: int, gallery: GalleryRecord, index: VectorIndex) -> Pointer:
    """Save ``index``, built from a snapshot matching ``gallery``, as a base file of
    ``generation`` and point the generation at it."""
    index.state.seq, index.state.generation, index.state.built_at = gallery.seq, generation, now_iso()
    path = files.base_path(gid, generation, gallery.seq)
    offset = index.write_base(path)
    codes = codes_path(path).name if index.coding is not None else None
    pointer = Pointer(path.name, asdict(index.state), offset, codes)
    files.write_pointer(gid, generation, pointer)
    return pointer


def rebuild_gallery(
    catalog: Catalog,
    files: IndexFiles,
    gid: int,
    settings: IndexSettings,
    wait: bool = False,
    progress: Callable[[str], None] = log.info,
) -> RebuildResult | None:
    """Build the gallery's next index generation from the catalog and commit it; None for a
    gallery that never held a face. Raises IndexBusyError when another rebuild holds the gallery."""
    with files.lock(gid, wait) as held:
        if not held:
            raise IndexBusyError(f"gallery {gid} is being rebuilt or re-embedded by another process")
        files.remove_newer(gid, catalog.images.gallery(gid).index_generation)
        started = time.monotonic()
        progress(f"gallery {gid}: reading vectors")
        built = build_index(catalog, gid, settings, progress)
        if built is None:
            return None
        gallery, index = built
        trained = time.monotonic()
        generation = gallery.index_generation + 1
        progress(f"gallery {gid}: writing generation {generation}")
        write_base(files, gid, generation, gallery, index)
        catalog.log.commit_generation(gid, gallery.index_generation)
        files.remove_unused(gid, generation)
        done = time.monotonic()
    progress(f"gallery {gid}: generation {generation} committed ({index.state.kind}, {index.count} vectors)")
    return RebuildResult(
        gallery=gid,
        generation=generation,
        seq=gallery.seq,
        kind=index.state.kind,
        vectors=index.count,
        lists=index.state.nlist,
        build_seconds=round(trained - started, 2),
        write_seconds=round(done - trained, 2),
    )


def yield_cpu(threads: int) -> None:
    """Leave the searches a core: a few FAISS threads, at a lower priority."""
    os.nice(10)
    faiss.omp_set_num_threads(threads)


def rebuild_in_child(open_catalog: Callable[[], Catalog], index_dir: Path, gid: int, settings: IndexSettings) -> None:
    """Entry point of the child process a server starts for a background rebuild.

    A separate process has its own interpreter lock and its own FAISS threads, so reading
    a million vectors and training on them does not slow the server's searches.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s rebuild %(message)s")
    yield_cpu(settings.rebuild_threads)
    catalog = open_catalog()
    try:
        rebuild_gallery(catalog, IndexFiles(index_dir), gid, settings, wait=False)
    except IndexBusyError as exc:
        log.info("%s", exc)
        raise SystemExit(EXIT_BUSY) from exc
    finally:
        catalog.close()
