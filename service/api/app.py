"""The Flask application factory: settings, services, blueprints, and one place where every
error becomes the envelope."""

from __future__ import annotations

import logging

from flask import Response
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from ..core.config import Settings
from ..core.errors import ServiceError, StorageDown, StorageUnavailable
from ..core.services import Services, build_services
from ..core.throttle import Throttles
from . import metrics, request_log
from .context import FaceSearchApp
from .drain import DrainUnreadBody
from .envelope import failure
from .errors import ApiError, Code, refusal
from .health import health
from .openapi import docs
from .requests import request_types
from .routes import api, v1
from .web import web

log = logging.getLogger(__name__)

_HTTP_CODES = {RequestEntityTooLarge: Code.TOO_LARGE, NotFound: Code.NO_ROUTE, MethodNotAllowed: Code.NO_ROUTE}


def create_app(settings: Settings | None = None, services: Services | None = None) -> FaceSearchApp:
    settings = settings or Settings.from_env()
    app = FaceSearchApp(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.limits.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]  # the default provider has it
    services = services or build_services(settings, serving=True)
    app.settings = settings
    app.use_cases = services.use_cases
    app.shutdown = services.close
    app.request_types = request_types(settings.limits)
    server = settings.server
    throttles = settings.storage.data_dir / "run" / "throttle"  # shared by this server's workers
    app.throttles = Throttles.shared(throttles, server.rate_limit, server.rate_burst)
    app.wsgi_app = DrainUnreadBody(app.wsgi_app)  # type: ignore[method-assign]  # Flask's way to wrap it
    if server.proxy_hops:
        hops = server.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    for blueprint in (api, v1, docs, health, web):
        app.register_blueprint(blueprint)
    metrics.install(app, app.use_cases)
    request_log.install(app)

    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> Response:
        return failure(error)

    @app.errorhandler(ServiceError)
    def service_error(error: ServiceError) -> Response:
        return failure(refusal(error))

    @app.errorhandler(StorageDown)
    def storage_unavailable(error: StorageDown) -> Response:
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
