"""The Flask application factory: settings, services, blueprints, and one place where every
error becomes the envelope."""

from __future__ import annotations

import logging

from flask import Flask, Response
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from ..core.config import Settings
from ..core.errors import ServiceError, StorageUnavailable, StorageUnavailableError
from ..core.services import Services, build_services
from . import metrics, request_log
from .drain import DrainUnreadBody
from .envelope import failure
from .errors import ApiError, Code, refusal
from .health import health
from .openapi import docs
from .requests import request_types
from .routes import api, v1
from .throttle import Throttles
from .web import web

log = logging.getLogger(__name__)

_HTTP_CODES = {RequestEntityTooLarge: Code.TOO_LARGE, NotFound: Code.NO_ROUTE, MethodNotAllowed: Code.NO_ROUTE}


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.limits.max_body_bytes
    app.json.sort_keys = False
    app.extensions["face_search"] = services or build_services(settings, serving=True)
    app.extensions["face_search.requests"] = request_types(settings.limits)
    server = settings.server
    throttles = settings.storage.data_dir / "run" / "throttle"  # shared by this server's workers
    app.extensions["face_search.throttles"] = Throttles.shared(throttles, server.rate_limit, server.rate_burst)
    app.wsgi_app = DrainUnreadBody(app.wsgi_app)
    if server.proxy_hops:
        hops = server.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    for blueprint in (api, v1, docs, health, web):
        app.register_blueprint(blueprint)
    metrics.install(app, app.extensions["face_search"])
    request_log.install(app)

    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> Response:
        return failure(error)

    @app.errorhandler(ServiceError)
    def service_error(error: ServiceError) -> Response:
        return failure(refusal(error))

    @app.errorhandler(StorageUnavailableError)
    def storage_unavailable(error: StorageUnavailableError) -> Response:
        """A read that met a component down (a write's is already a ServiceError): code 12, 503."""
        return failure(refusal(StorageUnavailable(f"{error}; retry once it is back")))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        code = _HTTP_CODES.get(type(error), Code.BAD_REQUEST)
        allow = {"Allow": ", ".join(error.valid_methods or ())} if isinstance(error, MethodNotAllowed) else {}
        return failure(ApiError(code, error.description, error.code, headers=allow))

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return failure(ApiError(Code.INTERNAL))

    return app
