"""The parts a use case needs, built once per process from the settings.

The Flask app and the command-line scripts both build one of these, so a script adds a
photo through exactly the same code as ``POST /images``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import faiss

from index.galleries import GalleryIndexes
from index.store import Store
from models.analyzer import FaceAnalyzer
from models.packs import ModelPack, load_pack

from .config import Settings
from .keys import KeyRing
from .photos import PhotoFiles
from .threshold import search_threshold

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    store: Store
    keys: KeyRing
    photos: PhotoFiles
    indexes: GalleryIndexes
    pack: ModelPack

    @cached_property
    def analyzer(self) -> FaceAnalyzer:
        """Loaded on first use so key management never pays for the models."""
        return FaceAnalyzer(self.pack, self.settings.model_threads, self.settings.max_pixels)

    def default_threshold(self, gallery: int) -> float:
        return self.threshold_for(self.store.gallery(gallery).faces)

    def threshold_for(self, faces: int) -> float:
        """The default for a gallery of ``faces`` faces: the fixed setting, else scaled with its size."""
        if self.settings.threshold is not None:
            return self.settings.threshold
        return search_threshold(self.pack, faces)

    def close(self) -> None:
        self.indexes.close()
        self.store.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *_exc: object) -> None:
        """Closed however the block ends: the checkpoint is written and LMDB released."""
        self.close()


def build_services(settings: Settings, serving: bool = False) -> Services:
    """Open the data directory; a serving process also recovers from a crash and checkpoints."""
    pack = settings.detection.applied_to(load_pack(settings.models))
    store = Store(settings.lmdb_dir, settings.lmdb_map_bytes)
    services = Services(
        settings=settings,
        store=store,
        keys=KeyRing(store),
        photos=PhotoFiles(settings.photos_dir),
        indexes=GalleryIndexes(store, settings.index_dir, settings.index, serving=serving),
        pack=pack,
    )
    if settings.api_key and settings.api_secret:
        services.keys.ensure(settings.api_key, settings.api_secret)
    if serving:
        log.info("model pack %s; weights licence: %s", pack.name, pack.licence)
        # one OpenMP thread per search: the request threads already run searches side by side,
        # and a 2-thread search over 100k faces measured 4x slower on a busy 2-core machine
        faiss.omp_set_num_threads(settings.faiss_threads)
        services.photos.remove_orphans(store.image_files())
        services.indexes.open_all()
        if settings.index_save_seconds > 0:
            services.indexes.start_autosave(settings.index_save_seconds)
        services.analyzer  # noqa: B018 - load the models before the first request, not during it
    return services
