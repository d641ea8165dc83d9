"""``/healthz`` and ``/readyz`` for load balancers and orchestrators.

``/healthz`` says the process answers, and which model pack it runs under which licence
(the weights' licence decides whether a deployment may be commercial). ``/readyz`` says
it can serve searches: the models are loaded, the catalog answers a read, and every
gallery's index is in memory (embedded: checks ``lmdb`` and ``indexes``), or PostgreSQL
and Milvus each answer (cluster mode: ``postgres`` and ``milvus``). Neither needs a key,
and neither reveals more than that.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify

from ..core.services import Services

log = logging.getLogger(__name__)

health = Blueprint("health", __name__)


def _catalog_answers(services: Services) -> bool:
    services.catalog.ping()
    return True


def _indexes_ready(services: Services) -> bool:
    return services.indexes.ready()


EMBEDDED = {"models": lambda services: services.models_loaded, "lmdb": _catalog_answers, "indexes": _indexes_ready}
CLUSTER = {"models": lambda services: services.models_loaded, "postgres": _catalog_answers, "milvus": _indexes_ready}


def readiness(services: Services) -> dict[str, bool]:
    results = {}
    for name, check in (CLUSTER if services.settings.storage.cluster else EMBEDDED).items():
        try:
            results[name] = bool(check(services))
        except Exception:  # a failing check means not ready, whatever the failure
            log.exception("readiness check %s failed", name)
            results[name] = False
    return results


@health.get("/healthz")
def healthz() -> Response:
    pack = current_app.extensions["face_search"].pack
    return jsonify({"status": "ok", "pack": pack.name, "licence": pack.licence})


@health.get("/readyz")
def readyz() -> Response:
    checks = readiness(current_app.extensions["face_search"])
    ready = all(checks.values())
    response = jsonify({"status": "ok" if ready else "unavailable", "checks": checks})
    response.status_code = 200 if ready else 503
    response.headers["Cache-Control"] = "no-store"
    return response
