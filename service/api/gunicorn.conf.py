"""gunicorn settings for ``make run``, read from the same settings as the app (service/core/config.py).

One worker process holds one copy of each gallery's index and one session per model;
its threads serve requests concurrently (ONNX Runtime and FAISS release the GIL while
they compute), and writes are serialised inside the process.
"""

from service.core.config import Settings

_server = Settings.from_env().server
bind = f"{_server.host}:{_server.port}"
workers = 1
worker_class = "gthread"
threads = _server.threads
timeout = 120
graceful_timeout = 30
loglevel = _server.log_level
errorlog = "-"
# One JSON line per log record on stderr, for the server's and the app's loggers alike. The app
# writes one line per request with its id, key, route, status, code and duration
# (service/api/request_log.py), so gunicorn's own access log is off.
accesslog = None
_json = {"level": loglevel.upper(), "handlers": ["json"], "propagate": False}
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": loglevel.upper(), "handlers": ["json"]},
    "loggers": {
        "gunicorn.error": {**_json, "qualname": "gunicorn.error"},
        "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
    },
    "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "formatters": {"json": {"()": "service.api.request_log.JsonFormatter"}},
}


def worker_exit(server, worker):  # checkpoint the indexes on a clean shutdown
    app = getattr(worker, "wsgi", None)
    services = getattr(app, "extensions", {}).get("face_search") if app is not None else None
    if services is not None:
        services.close()
