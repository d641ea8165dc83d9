"""Rebuilding a gallery's index from LMDB while the service keeps using the old one.

A rebuild reads every live face in one LMDB transaction (a snapshot at some change
seq), trains and fills a new index from it, writes it as the gallery's next index
generation and commits that generation in LMDB. Writes that land meanwhile are in the
log after the snapshot's seq; a server adopting the new index replays them, so they are
in the new index too. Nothing is swapped in place: a rebuild killed at any point leaves
the old index serving and, at worst, a temp file the next rebuild deletes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import faiss

from ..catalog import Catalog
from ..errors import IndexBusyError
from ..records import GalleryRecord
from ..vectors import IndexSettings, RebuildResult
from .files import REBUILD_TMP, IndexFiles
from .vector_index import FLAT, IVF, IndexState, VectorIndex, churn_of, read_state

log = logging.getLogger(__name__)

EXIT_BUSY = 3  # a rebuild child's exit status when another rebuild holds the gallery


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
    if state.kind == IVF and churn_of(state) > settings.rebuild_churn:
        return f"{churn_of(state):.0%} of the IVF changed since it was trained"
    if state.kind == IVF and state.extra.get("storage") != settings.storage:
        return f"vectors are stored as {state.extra.get('storage')}, the setting says {settings.storage}"
    return None


def saved_rebuild_reason(catalog: Catalog, files: IndexFiles, gid: int, settings: IndexSettings) -> str | None:
    """``rebuild_reason`` from the saved index header and the log after it, without loading
    the index: what a nightly ``--if-needed`` run checks for each gallery."""
    gallery = catalog.images.gallery(gid)
    path = files.path(gid, gallery.index_generation)
    try:
        state = read_state(path)
    except (OSError, ValueError, TypeError):
        state = None
    if state is not None:
        adds, removes = catalog.log.counts(gid, state.seq)
        state.added_since_training += adds
        state.removed_since_training += removes
    return rebuild_reason(state, gallery.faces, settings)


def rebuild_gallery(
    catalog: Catalog,
    files: IndexFiles,
    gid: int,
    settings: IndexSettings,
    wait: bool = False,
    progress: Callable[[str], None] = log.info,
) -> RebuildResult | None:
    """Build the gallery's next index generation from LMDB and commit it; None for a gallery
    that never held a face. Raises IndexBusyError when another rebuild holds the gallery."""
    with files.lock(gid, wait) as held:
        if not held:
            raise IndexBusyError(f"gallery {gid} is being rebuilt or re-embedded by another process")
        files.remove_abandoned(gid, catalog.images.gallery(gid).index_generation)
        started = time.monotonic()
        progress(f"gallery {gid}: reading vectors")
        snapshot = catalog.log.snapshot(gid)
        gallery = snapshot.gallery
        if gallery.dim is None:
            return None
        read = time.monotonic()
        progress(f"gallery {gid}: building index of {len(snapshot.ids)} vectors at seq {gallery.seq}")
        index = VectorIndex.build(gallery.dim, snapshot.ids, snapshot.vectors, settings)
        del snapshot
        built = time.monotonic()
        generation = gallery.index_generation + 1
        progress(f"gallery {gid}: writing generation {generation}")
        write_generation(files, gid, gallery, index)
        catalog.log.commit_generation(gid, gallery.index_generation)
        files.remove_older(gid, generation)
        done = time.monotonic()
    progress(f"gallery {gid}: generation {generation} committed ({index.state.kind}, {index.count} vectors)")
    return RebuildResult(
        gallery=gid,
        generation=generation,
        kind=index.state.kind,
        vectors=index.count,
        lists=index.state.nlist,
        seq=gallery.seq,
        read_seconds=round(read - started, 2),
        build_seconds=round(built - read, 2),
        write_seconds=round(done - built, 2),
    )


def write_generation(files: IndexFiles, gid: int, gallery: GalleryRecord, index: VectorIndex) -> None:
    """Save ``index``, built from a snapshot matching ``gallery``, as its next generation's file."""
    generation = gallery.index_generation + 1
    index.state.seq, index.state.generation, index.state.built_at = gallery.seq, generation, now_iso()
    index.save(files.path(gid, generation), tmp_suffix=REBUILD_TMP)


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
