"""The Flask application factory: settings, services, blueprint, and one error funnel."""

from __future__ import annotations

import logging

from flask import Flask, Response
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from . import metrics, request_log
from .config import Settings
from .context import Services, build_services
from .envelope import failure
from .errors import ApiError, Code
from .health import health
from .openapi import docs
from .routes import api
from .throttle import FailedLogins, Limits, RateLimiter
from .web import web

log = logging.getLogger(__name__)

_HTTP_CODES = {RequestEntityTooLarge: Code.TOO_LARGE, NotFound: Code.NO_ROUTE, MethodNotAllowed: Code.NO_ROUTE}


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.extensions["face_search"] = services or build_services(settings, serving=True)
    app.extensions["face_search.limits"] = Limits(RateLimiter(settings.rate_limit, settings.rate_burst), FailedLogins())
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops, x_host=settings.proxy_hops
        )
    app.register_blueprint(api)
    for blueprint in (docs, health, web):
        app.register_blueprint(blueprint)
    metrics.install(app, app.extensions["face_search"])
    request_log.install(app)

    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> Response:
        return failure(error)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        code = _HTTP_CODES.get(type(error), Code.BAD_REQUEST)
        allow = {"Allow": ", ".join(error.valid_methods or ())} if isinstance(error, MethodNotAllowed) else {}
        return failure(ApiError(code, error.description, error.code, headers=allow))

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        if isinstance(error, OSError):
            log.error("storage error: %s", error)
            return failure(ApiError(Code.STORAGE_ERROR, "the service could not write its data; nothing was stored"))
        log.exception("unhandled error")
        return failure(ApiError(Code.INTERNAL))

    return app
