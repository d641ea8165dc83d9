"""The composition root: the parts of a process, built once from the settings, and each use
case built from the two or three of them it uses.

The Flask app and the command-line scripts both build one of these, so a script adds a
photo through exactly the same code as ``POST /images``. The HTTP layer sees only
``UseCases``; the parts themselves are for the scripts and the tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

from index.backend import open_backend, open_catalog
from index.catalog import Catalog
from index.vectors import VectorIndexes
from models.analyzer import FaceAnalyzer
from models.packs import ModelPack, load_pack, with_runtime

from .bulk_import import BulkImport
from .config import Settings
from .filters import FilterKeys
from .group_run import Attacher, GroupingRun
from .images import FaceReader, Gallery, ImageAdder
from .jobs import Jobs
from .keys import KeyRing
from .links import PhotoLinks
from .maintenance import Maintenance
from .persons import PersonNames, Persons, PersonSearcher
from .photos import PhotoFiles, PhotoStore
from .readiness import Readiness
from .reembed import Reembedding
from .search import Searcher, Thresholds
from .threshold import link_threshold

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UseCases:
    """What the HTTP layer calls."""

    keys: KeyRing
    reader: FaceReader
    gallery: Gallery
    adder: ImageAdder
    searcher: Searcher
    maintenance: Maintenance
    readiness: Readiness
    pack: ModelPack  # named with its weights' licence by /healthz
    links: PhotoLinks
    persons: Persons
    person_searcher: PersonSearcher
    jobs: Jobs


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

    @cached_property
    def reader(self) -> FaceReader:
        return FaceReader(self.pack, lambda: self.analyzer, self.settings.fetch)

    @cached_property
    def filter_keys(self) -> FilterKeys:
        return FilterKeys(self.catalog.metadata, self.settings.filters)

    @cached_property
    def names(self) -> PersonNames:
        return PersonNames(self.catalog.persons)

    @cached_property
    def link_threshold(self) -> float:
        """The cosine that links two faces into one person (grouping runs and adds)."""
        grouping = self.settings.grouping
        return link_threshold(self.pack, grouping.far, grouping.threshold)

    @cached_property
    def gallery(self) -> Gallery:
        attacher = Attacher(self.catalog.persons, self.indexes, self.link_threshold, self.settings.grouping)
        return Gallery(
            self.catalog.images, self.indexes, self.photos, self.filter_keys, self.settings.limits.max_pixels,
            self.names.of_faces, attacher.persons_of,
        )  # fmt: skip

    @cached_property
    def adder(self) -> ImageAdder:
        return ImageAdder(self.reader, self.gallery)

    @cached_property
    def thresholds(self) -> Thresholds:
        return Thresholds(self.settings.threshold)

    @cached_property
    def searcher(self) -> Searcher:
        return Searcher(
            self.reader, self.catalog.images, self.indexes, self.thresholds, self.filter_keys, self.names.of_faces
        )

    @cached_property
    def persons(self) -> Persons:
        return Persons(self.catalog, self.indexes, self.photos, self.gallery, self.adder, self.filter_keys)

    @cached_property
    def person_searcher(self) -> PersonSearcher:
        return PersonSearcher(self.reader, self.catalog, self.indexes, self.thresholds, self.persons)

    def group_run(self) -> GroupingRun:
        return GroupingRun(self.catalog, self.indexes, self.link_threshold, self.settings.grouping)

    @cached_property
    def jobs(self) -> Jobs:
        return Jobs(self.catalog, self.group_run, self.settings)

    @cached_property
    def maintenance(self) -> Maintenance:
        return Maintenance(self.catalog, self.indexes)

    @cached_property
    def importer(self) -> BulkImport:
        return BulkImport(self.catalog, self.reader, self.gallery, self.settings.limits)

    @cached_property
    def reembedding(self) -> Reembedding:
        return Reembedding(self.catalog, self.indexes, self.photos, self.settings.threads_per_model)

    @cached_property
    def readiness(self) -> Readiness:
        return Readiness(self.catalog, self.indexes, lambda: self.models_loaded)

    @cached_property
    def links(self) -> PhotoLinks:
        return PhotoLinks(self.catalog.secrets, self.settings.api.link_seconds)

    @cached_property
    def use_cases(self) -> UseCases:
        return UseCases(
            self.keys, self.reader, self.gallery, self.adder, self.searcher, self.maintenance, self.readiness,
            self.pack, self.links, self.persons, self.person_searcher, self.jobs,
        )  # fmt: skip

    def close(self) -> None:
        """The jobs' children and the key indexer first (it writes to the catalog), then the vector
        index: closing it writes checkpoints that read the catalog."""
        if "jobs" in vars(self):
            self.jobs.close()
        if "filter_keys" in vars(self):
            self.filter_keys.close()
        self.indexes.close()
        self.catalog.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *_exc: object) -> None:
        """Closed however the block ends: the checkpoint is written and the catalog released."""
        self.close()


def build_services(settings: Settings, serving: bool = False) -> Services:
    """Open the storage; a serving process also recovers from a crash and loads the models."""
    pack = with_runtime(settings.detection.applied_to(load_pack(settings.models)), settings.model_runtime)
    catalog, indexes = open_backend(settings.storage, settings.indexing, serving=serving)
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
        services.filter_keys.index_galleries(catalog.images.galleries())
        services.jobs.serve()
        services.analyzer  # noqa: B018 - load the models before the first request, not during it
    return services


@contextmanager
def catalog_alone(settings: Settings) -> Iterator[Catalog]:
    """The catalog alone, for key and secret management: neither models nor vectors are loaded."""
    catalog = open_catalog(settings.storage)
    try:
        yield catalog
    finally:
        catalog.close()
