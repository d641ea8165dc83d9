"""gunicorn settings for ``make run``, read from the same settings as the app (service/core/config.py).

A worker process per core (``FACE_SEARCH_WORKERS``), each with one session per model and
its request threads (ONNX Runtime and FAISS release the GIL while they compute). The
workers share the data directory: the catalog serialises their writes, each keeps its
indexes in step through the change log, and the indexes' base files are memory-mapped, so
their pages are in memory once whatever the number of workers.
"""

import os
import shutil

from service.core.config import Settings

_settings = Settings.from_env()
_server = _settings.server
# Every worker counts its requests in files that /metrics adds up (service/api/metrics.py).
# prometheus_client reads this when it is first imported: set it before anything can import it.
_METRICS = _settings.storage.data_dir / "run" / "metrics"
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_METRICS)
bind = f"{_server.host}:{_server.port}"
workers = _settings.worker_count
# gthread, with the server's own refusals in the API's envelope (service/api/server.py)
worker_class = "service.api.server.EnvelopeWorker"
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
    "formatters": {"json": {"()": "service.api.json_log.JsonFormatter"}},
}


def worker_exit(server, worker):  # checkpoint the indexes on a clean shutdown
    shutdown = getattr(getattr(worker, "wsgi", None), "shutdown", None)
    if shutdown is not None:
        shutdown()


def on_starting(server):  # the counts of an earlier run are not this one's
    shutil.rmtree(_METRICS, ignore_errors=True)
    _METRICS.mkdir(parents=True)


def child_exit(server, worker):  # a dead worker's live gauges go; its counts stay in the sums
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
