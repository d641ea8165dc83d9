"""What an operator's script does to a gallery's index (``scripts/rebuild_index.py``,
``scripts/reembed.py``): rebuild it in this process, hold it against rebuilds, swap a
re-embedding's staged vectors in. A serving process adopts the result at its next search."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..catalog import Catalog
from ..errors import StagingIncompleteError
from ..vectors import IndexSettings, RebuildResult
from .files import IndexFiles
from .rebuild import rebuild_gallery, saved_rebuild_reason, write_base, yield_cpu
from .vector_index import VectorIndex

log = logging.getLogger(__name__)


class Maintenance:
    def __init__(self, catalog: Catalog, files: IndexFiles, settings: Callable[[], IndexSettings]) -> None:
        self.catalog, self.files, self.settings = catalog, files, settings

    def rebuild_reason(self, gid: int) -> str | None:
        return saved_rebuild_reason(self.catalog, self.files, gid, self.settings())

    def rebuild(
        self, gid: int, wait: bool, progress: Callable[[str], None], yield_to_searches: bool
    ) -> RebuildResult | None:
        """Rebuild in this process; ``yield_to_searches``: a script's, it gives up CPU priority
        and keeps to ``rebuild_threads``."""
        settings = self.settings()
        if yield_to_searches:
            yield_cpu(settings.rebuild_threads)
        return rebuild_gallery(self.catalog, self.files, gid, settings, wait, progress)

    @contextmanager
    def exclusive(self, gid: int, wait: bool = False) -> Iterator[bool]:
        with self.files.lock(gid, wait) as held:
            yield held

    def swap(self, gid: int, pack: str, dim: int) -> bool:
        """Write the index of the staged vectors as the next generation, then swap vectors,
        pack and generation in one catalog write."""
        staged = self.catalog.staging.snapshot(gid, pack)
        if staged.missing:
            return False
        settings = self.settings()
        index = VectorIndex.build(dim, staged.ids, staged.vectors.reshape(len(staged.ids), dim), settings)
        generation = staged.gallery.index_generation + 1
        write_base(self.files, gid, generation, staged.gallery, index)
        try:
            self.catalog.staging.swap(gid, pack, dim, staged.gallery.seq, staged.gallery.index_generation)
        except StagingIncompleteError:
            return False
        self.files.remove_unused(gid, generation)
        return True
