"""The Flask application factory: settings, services, blueprints, and the one place where every
error becomes the envelope."""

from __future__ import annotations

import logging

from flask import Response
from werkzeug.middleware.proxy_fix import ProxyFix

from ..core.config import Settings
from ..core.services import Services, build_services
from ..core.throttle import Throttles
from . import metrics, request_log
from .context import FaceSearchApp
from .drain import DrainUnreadBody
from .envelope import failure
from .errors import Code, answer_to
from .health import health
from .openapi import docs
from .routes import api, v1
from .web import web

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, services: Services | None = None) -> FaceSearchApp:
    settings = settings or Settings.from_env()
    app = FaceSearchApp(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.limits.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]  # the default provider has it
    services = services or build_services(settings, serving=True)
    app.settings = settings
    app.use_cases = services.use_cases
    app.shutdown = services.close
    server = settings.server
    throttles = settings.storage.data_dir / "run" / "throttle"  # shared by this server's workers
    app.throttles = Throttles.shared(throttles, server.rate_limit, server.rate_burst, server.free_logins)
    app.wsgi_app = DrainUnreadBody(app.wsgi_app)  # type: ignore[method-assign]  # Flask's way to wrap it
    if server.proxy_hops:
        hops = server.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    for blueprint in (api, v1, docs, health, web):
        app.register_blueprint(blueprint)
    metrics.install(app, app.use_cases)
    request_log.install(app)

    @app.errorhandler(Exception)
    def refused(error: Exception) -> Response:
        """Every error, as the code its record in service/api/errors.py gives it."""
        answer = answer_to(error)
        if answer.code is Code.INTERNAL:
            log.exception("unhandled error")
        return failure(answer)

    return app
