"""``/healthz`` and ``/readyz`` for load balancers and orchestrators.

``/healthz`` says the process answers, and which model pack it runs under which licence
(the weights' licence decides whether a deployment may be commercial). ``/readyz`` says
it can serve searches: the models are loaded, the catalog answers a read, and every
gallery's index is in memory (embedded: checks ``lmdb`` and ``indexes``), or PostgreSQL
and Milvus each answer (cluster mode: ``postgres`` and ``milvus``). Neither needs a key,
and neither reveals more than that.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from .context import use_cases

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> Response:
    pack = use_cases().pack
    return jsonify({"status": "ok", "pack": pack.name, "licence": pack.licence})


@health.get("/readyz")
def readyz() -> Response:
    checks = use_cases().readiness.checks()
    ready = all(checks.values())
    response = jsonify({"status": "ok" if ready else "unavailable", "checks": checks})
    response.status_code = 200 if ready else 503
    response.headers["Cache-Control"] = "no-store"
    return response
