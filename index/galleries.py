"""One in-memory FAISS index per gallery, kept in step with LMDB through the change log.

Before every search the index replays the gallery's changes it has not yet seen, so a
write made by this process, by another one (a bulk import script) or before a crash is
reflected without any second channel. Saved index files are checkpoints: each records
the change it reflects, and the log up to that point can then be trimmed. A missing,
stale or damaged checkpoint only costs a reload from the faces in LMDB.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .locks import ReadWriteLock
from .store import Store
from .vectors import FLAT, IndexSettings, VectorIndex

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    lock: ReadWriteLock = field(default_factory=ReadWriteLock)
    index: VectorIndex | None = None
    saved_seq: int = -1


class GalleryIndexes:
    def __init__(self, store: Store, directory: Path, settings: IndexSettings) -> None:
        self.store = store
        self.directory = directory
        self.settings = settings
        directory.mkdir(parents=True, exist_ok=True)
        self._entries: dict[int, _Entry] = {}
        self._entries_lock = threading.Lock()
        self._stop = threading.Event()

    def path(self, gid: int) -> Path:
        return self.directory / f"gallery-{gid}.faiss"

    def _entry(self, gid: int) -> _Entry:
        with self._entries_lock:
            entry = self._entries.get(gid)
            if entry is None:
                entry = self._entries[gid] = _Entry()
                entry.index = self._load_checkpoint(gid)
                if entry.index is not None:
                    entry.saved_seq = entry.index.state.seq
            return entry

    def _load_checkpoint(self, gid: int) -> VectorIndex | None:
        path = self.path(gid)
        if not path.exists():
            return None
        try:
            return VectorIndex.load(path)
        except Exception as exc:  # a damaged checkpoint is rebuilt from LMDB, never fatal
            log.warning("index checkpoint %s unreadable (%s); rebuilding from LMDB", path, exc)
            return None

    def reload(self, gid: int) -> VectorIndex | None:
        """Build the gallery's index afresh from every live face in LMDB."""
        batches = list(self.store.face_vectors(gid))
        gallery = self.store.gallery(gid)
        if not batches:
            if gallery.dim is None:
                return None
            index = VectorIndex.empty(gallery.dim)
            index.state.seq = gallery.seq
            return index
        ids = np.concatenate([b[0] for b in batches])
        vectors = np.concatenate([b[1] for b in batches])
        index = VectorIndex.build(vectors.shape[1], ids, vectors, self.settings)
        index.state.seq = batches[0][2]
        index.state.built_at = datetime.now(UTC).isoformat(timespec="seconds")
        return index

    def _catch_up(self, gid: int, entry: _Entry) -> None:
        """Replay the log past the index's seq, or reload when the log cannot bridge the gap."""
        index = entry.index
        seen = index.state.seq if index is not None else 0
        changes, vectors, first = self.store.changes_since(gid, seen)
        gallery = self.store.gallery(gid)
        gap = gallery.seq > seen and (first is None or first > seen + 1)
        if index is None and gallery.dim is not None and not gap:
            index = VectorIndex.empty(gallery.dim)
        if gap or index is None or (index.state.dim != gallery.dim and gallery.dim is not None):
            entry.index = self.reload(gid)
            return
        removed = {c.face for c in changes if not c.is_add}
        added = [f for f in (c.face for c in changes if c.is_add) if f in vectors and f not in removed]
        index.remove(np.array(sorted(removed), dtype=np.int64))
        if added:
            index.add(np.array(added, dtype=np.int64), np.stack([vectors[f] for f in added]))
        if changes:
            index.state.seq = changes[-1].seq
        if index.state.kind == FLAT and index.count >= self.settings.ivf_threshold:
            entry.index = self.reload(gid)
        else:
            entry.index = index

    def sync(self, gid: int) -> None:
        """Bring the gallery's index up to the latest committed change."""
        entry = self._entry(gid)
        latest = self.store.gallery(gid).seq
        with entry.lock.read():
            if entry.index is not None and entry.index.state.seq == latest:
                return
        with entry.lock.write():
            if entry.index is None or entry.index.state.seq != latest:
                self._catch_up(gid, entry)

    def search(self, gid: int, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, face ids) per query, after catching up with every committed change."""
        self.sync(gid)
        entry = self._entry(gid)
        with entry.lock.read():
            if entry.index is None or entry.index.count == 0:
                empty = np.zeros((len(queries), 0))
                return empty.astype(np.float32), empty.astype(np.int64)
            return entry.index.search(queries, k)

    def describe(self, gid: int) -> dict:
        self.sync(gid)
        entry = self._entry(gid)
        with entry.lock.read():
            index = entry.index
            if index is None:
                return {"kind": FLAT, "vectors": 0}
            state = index.state
            return {
                "kind": state.kind,
                "vectors": index.count,
                "dim": state.dim,
                "lists": state.nlist,
                "nprobe": state.nprobe,
                "trained_on": state.trained_on,
                "churn_since_training": round(index.churn(), 4),
                "last_rebuild": state.built_at,
                "seq": state.seq,
            }

    def verify(self, gid: int) -> bool:
        """True when the index holds exactly the gallery's live faces in LMDB."""
        self.sync(gid)
        entry = self._entry(gid)
        expected = set()
        for ids, _, _ in self.store.face_vectors(gid):
            expected.update(ids.tolist())
        with entry.lock.read():
            held = set(entry.index.ids().tolist()) if entry.index is not None else set()
        return held == expected

    def open_all(self) -> None:
        """At start-up: load every gallery's checkpoint and make it agree with LMDB."""
        for gid, gallery in self.store.galleries().items():
            self.sync(gid)
            entry = self._entry(gid)
            count = entry.index.count if entry.index is not None else 0
            if count != gallery.faces:
                log.warning("gallery %d: index holds %d faces, LMDB %d; reloading", gid, count, gallery.faces)
                with entry.lock.write():
                    entry.index = self.reload(gid)

    def save_all(self) -> int:
        """Checkpoint every gallery that changed since its last save, then trim its log."""
        saved = 0
        with self._entries_lock:
            entries = list(self._entries.items())
        for gid, entry in entries:
            with entry.lock.read():
                index = entry.index
                if index is None or index.state.seq == entry.saved_seq:
                    continue
                index.save(self.path(gid))
                seq = index.state.seq
            entry.saved_seq = seq
            self.store.trim_log(gid, seq)
            saved += 1
        return saved

    def start_autosave(self, interval: float) -> threading.Thread:
        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self.save_all()
                except Exception:  # keep checkpointing after a transient failure (disk full)
                    log.exception("index checkpoint failed")

        thread = threading.Thread(target=run, name="index-autosave", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._stop.set()
        self.save_all()
