"""``/healthz`` and ``/readyz`` for load balancers and orchestrators.

``/healthz`` says the process answers, and which model pack it runs under which licence
(the weights' licence decides whether a deployment may be commercial). ``/readyz`` says
it can serve searches: the models are loaded, the catalog answers a read, and every
gallery's index is in memory (embedded: checks ``lmdb`` and ``indexes``), or PostgreSQL
and Milvus each answer (cluster mode: ``postgres`` and ``milvus``). Neither needs a key,
and neither reveals more than that.
"""

from __future__ import annotations

from flask import Response, jsonify

from .context import use_cases
from .operations import Routes
from .responses import Health

health = Routes("health", __name__, tag="operations", secured=False, enveloped=False)


@health.operation("GET", "/healthz", answer=Health, summary="The process is up")
def healthz() -> Response:
    pack = use_cases().pack
    return jsonify({"status": "ok", "pack": pack.name, "licence": pack.licence})


@health.operation(
    "GET", "/readyz", answer=Health, also={503: "Not ready: see checks"},
    summary="Models loaded, storage answering, indexes loaded (503 otherwise)",
)  # fmt: skip
def readyz() -> Response:
    checks = use_cases().readiness.checks()
    ready = all(checks.values())
    response = jsonify({"status": "ok" if ready else "unavailable", "checks": checks})
    response.status_code = 200 if ready else 503
    response.headers["Cache-Control"] = "no-store"
    return response
