"""Whether this process can serve searches: the models are loaded, and every storage
component answers. Each storage check is named after its component (``Catalog.component``,
``VectorIndexes.component``: ``lmdb`` and ``indexes`` embedded, ``postgres`` and ``milvus``
in cluster mode), so the answer says which one is down."""

from __future__ import annotations

import logging
from collections.abc import Callable

from index.catalog import Catalog
from index.vectors import VectorIndexes

log = logging.getLogger(__name__)


class Readiness:
    def __init__(self, catalog: Catalog, indexes: VectorIndexes, models_loaded: Callable[[], bool]) -> None:
        self.catalog, self.indexes, self.models_loaded = catalog, indexes, models_loaded

    def _catalog_answers(self) -> bool:
        self.catalog.ping()
        return True

    def checks(self) -> dict[str, bool]:
        results = {}
        named: dict[str, Callable[[], bool]] = {
            "models": self.models_loaded,
            self.catalog.component: self._catalog_answers,
            self.indexes.component: self.indexes.ready,
        }
        for name, check in named.items():
            try:
                results[name] = bool(check())
            except Exception:  # a failing check means not ready, whatever the failure
                log.exception("readiness check %s failed", name)
                results[name] = False
        return results
