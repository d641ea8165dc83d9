"""The parts a use case needs, built once per process from the settings.

The Flask app and the command-line scripts both build one of these, so a script adds a
photo through exactly the same code as ``POST /images``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

from index.backend import open_backend, open_catalog
from index.catalog import Catalog
from index.errors import PackMismatchError
from index.vectors import VectorIndexes
from models.analyzer import FaceAnalyzer
from models.packs import ModelPack, load_pack

from .config import Settings
from .errors import PackMismatch
from .keys import KeyRing
from .photos import PhotoFiles, PhotoStore
from .threshold import search_threshold

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    catalog: Catalog
    indexes: VectorIndexes
    keys: KeyRing
    photos: PhotoStore
    pack: ModelPack

    @cached_property
    def analyzer(self) -> FaceAnalyzer:
        """Loaded on first use so key management never pays for the models."""
        return FaceAnalyzer(self.pack, self.settings.threads_per_model, self.settings.limits.max_pixels)

    @property
    def models_loaded(self) -> bool:
        return "analyzer" in vars(self)

    def pack_for(self, gallery_pack: str | None) -> ModelPack:
        """The pack whose vectors a gallery holding ``gallery_pack``'s is searched and filled with:
        that pack when the running models make its vectors (the running pack, or one it serves),
        the running pack for a gallery that holds none yet; PackMismatch otherwise."""
        if gallery_pack is None:
            return self.pack
        served = self.pack.pack_named(gallery_pack)
        if served is None:
            raise PackMismatch(str(PackMismatchError(gallery_pack, self.pack.name)))
        return served

    def default_threshold(self, gallery: int) -> float:
        record = self.catalog.images.gallery(gallery)
        return self.threshold_for(self.pack_for(record.pack), record.faces)

    def threshold_for(self, pack: ModelPack, faces: int) -> float:
        """The default for a gallery of ``faces`` faces of ``pack``: the fixed setting, else scaled with its size."""
        if self.settings.threshold is not None:
            return self.settings.threshold
        return search_threshold(pack, faces)

    def close(self) -> None:
        """The vector index first: closing it writes checkpoints that read the catalog."""
        self.indexes.close()
        self.catalog.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *_exc: object) -> None:
        """Closed however the block ends: the checkpoint is written and the catalog released."""
        self.close()


def build_services(settings: Settings, serving: bool = False) -> Services:
    """Open the storage; a serving process also recovers from a crash and loads the models."""
    pack = settings.detection.applied_to(load_pack(settings.models))
    catalog, indexes = open_backend(settings.storage, settings.index, serving=serving)
    services = Services(settings, catalog, indexes, KeyRing(catalog.keys), PhotoFiles(settings.photos_dir), pack)
    if settings.api_key and settings.api_secret:
        services.keys.ensure(settings.api_key, settings.api_secret)
    if serving:
        served = f" (also serves galleries of {', '.join(pack.packs()[1:])})" if pack.serves else ""
        log.info("model pack %s%s; weights licence: %s", pack.name, served, pack.licence)
        # in cluster mode every replica and importer writes to the same photo folder: the grace
        # period is what keeps an add in flight on another machine from losing its photo
        services.photos.remove_orphans(catalog.images.files, settings.orphan_grace_seconds)
        indexes.open_all()
        services.analyzer  # noqa: B018 - load the models before the first request, not during it
    return services


@contextmanager
def key_ring(settings: Settings) -> Iterator[KeyRing]:
    """Keys alone, for key management: neither models nor vectors are loaded."""
    catalog = open_catalog(settings.storage)
    try:
        yield KeyRing(catalog.keys)
    finally:
        catalog.close()
