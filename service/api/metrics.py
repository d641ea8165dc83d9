"""Prometheus metrics at ``/metrics``.

Request counts and latencies are recorded per request by service/api/request_log.py. The time spent
in detection and embedding comes through the hook the analyzer offers
(``FaceAnalyzer.observe_stages``), and that of index searches through the hook every vector
index offers (``VectorIndexes.observe_searches``), so every caller counts (the API, the bulk
importer) and models/ and index/ stay free of metrics.
Gallery sizes, index kinds and rebuilds are read from the catalog and the indexes when scraped.

Under gunicorn the server runs several worker processes, and a scrape reaches one of them:
service/api/gunicorn.conf.py points ``PROMETHEUS_MULTIPROC_DIR`` at a folder of the data
directory, where each worker's counters live in files that every scrape adds up
(prometheus_client's multiprocess mode). In a single process (tests, scripts) the default
registry holds them. In cluster mode each replica has a data directory of its own, so a
scrape counts that replica's requests (scrape every replica and sum); gallery sizes and
the outbox lag come from the shared catalog, so every replica reports the same values.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from flask import Response
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..core.services import UseCases
from .context import FaceSearchApp, app
from .operations import Routes

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "face_search_http_requests",
    "HTTP requests by method, route, HTTP status and API code (the envelope's status_code).",
    ["method", "endpoint", "status", "code"],
)
LATENCY = Histogram(
    "face_search_http_request_duration_seconds",
    "Time from the request's arrival at the app to its answer.",
    ["method", "endpoint"],
    buckets=_LATENCY,
)
STEPS = Histogram(
    "face_search_step_duration_seconds",
    "Time spent in each costly step: face detection (one photo), embedding (one batch of faces), "
    "index search (one gallery query).",
    ["step"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
REFUSALS = Counter(
    "face_search_refusals",
    "Requests refused with code 4: the key's quota is used up, or it went over the rate limit.",
    ["reason"],
)
for _reason in ("quota", "rate_limit"):
    REFUSALS.labels(_reason)


def observe_request(method: str, endpoint: str, status: int, code: str, seconds: float, retry_after: bool) -> None:
    REQUESTS.labels(method, endpoint, str(status), code).inc()
    LATENCY.labels(method, endpoint).observe(seconds)
    if code == "4":  # only the rate limit tells the client when to retry
        REFUSALS.labels("rate_limit" if retry_after else "quota").inc()


def observe_step(step: str, seconds: float) -> None:
    STEPS.labels(step).observe(seconds)


def instrument(use_cases: UseCases) -> None:
    """Time detection and embedding on the models' objects, and index searches."""
    use_cases.reader.analyzer().observe_stages(observe_step)
    use_cases.maintenance.observe_searches(STEPS.labels("index_search").observe)


class GalleryCollector(Collector):
    """Gallery sizes and index state, read when scraped (labelled by gallery id, not key name)."""

    def __init__(self, use_cases: UseCases) -> None:
        self.use_cases = use_cases

    def collect(self) -> Iterator[Metric]:
        labels = ["gallery"]
        keys = GaugeMetricFamily("face_search_keys", "API keys, revoked ones included.")
        images = GaugeMetricFamily("face_search_gallery_images", "Images stored per gallery.", labels=labels)
        faces = GaugeMetricFamily("face_search_gallery_faces", "Faces indexed per gallery.", labels=labels)
        vectors = GaugeMetricFamily("face_search_index_vectors", "Vectors in the in-memory index.", labels=labels)
        kind = GaugeMetricFamily(
            "face_search_index_info", "The gallery's index kind (1 for the kind in use).", labels=["gallery", "kind"]
        )
        rebuilding = GaugeMetricFamily("face_search_index_rebuilding", "1 while a rebuild runs.", labels=labels)
        rebuilds = CounterMetricFamily(
            "face_search_index_rebuilds", "Index rebuilds committed (the gallery's index generation).", labels=labels
        )
        pending = GaugeMetricFamily(
            "face_search_outbox_pending",
            "Committed changes not in the vector index yet (cluster: the outbox lag).",
            labels=labels,
        )
        pending_age = GaugeMetricFamily(
            "face_search_outbox_lag_seconds", "Age of the oldest change not in the vector index yet.", labels=labels
        )
        pack = GaugeMetricFamily("face_search_model_pack_info", "The model pack in use.", labels=["pack"])
        pack.add_metric([self.use_cases.pack.name], 1)
        overview = self.use_cases.maintenance.overview()
        keys.add_metric([], overview.keys)
        for gallery in overview.galleries:
            label = [str(gallery.gallery)]
            images.add_metric(label, gallery.images)
            faces.add_metric(label, gallery.faces)
            state = gallery.index
            if state is None:  # the vector server is down: the scrape still reports the catalog's side
                continue
            vectors.add_metric(label, state.vectors)
            kind.add_metric([str(gallery.gallery), state.kind], 1)
            rebuilding.add_metric(label, int(state.rebuilding))
            rebuilds.add_metric(label, gallery.rebuilds)
            pending.add_metric(label, state.pending)
            pending_age.add_metric(label, state.pending_seconds)
        yield from (pack, keys, images, faces, vectors, kind, rebuilding, rebuilds, pending, pending_age)


metrics = Routes("metrics", __name__, tag="operations", secured=False, enveloped=False)


def install(flask_app: FaceSearchApp, use_cases: UseCases) -> None:
    """Time the costly steps and give the app its /metrics endpoint."""
    instrument(use_cases)
    flask_app.registry = CollectorRegistry(auto_describe=False)
    flask_app.registry.register(GalleryCollector(use_cases))
    flask_app.register_blueprint(metrics)


def _requests_registry() -> CollectorRegistry:
    """Every worker's request counters when several processes serve, else this process's."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


@metrics.operation("GET", "/metrics", answer="text/plain", summary="Prometheus metrics")
def scrape() -> Response:
    return Response(generate_latest(_requests_registry()) + generate_latest(app().registry), content_type=CONTENT_TYPE)
