"""gunicorn settings for ``make run``.

One worker process holds one copy of each gallery's index and one session per model;
its threads serve requests concurrently (ONNX Runtime and FAISS release the GIL while
they compute), and writes are serialised inside the process.
"""

import os

bind = f"{os.environ.get('FACE_SEARCH_HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = 1
worker_class = "gthread"
threads = int(os.environ.get("FACE_SEARCH_THREADS", "4"))
timeout = 120
graceful_timeout = 30
loglevel = os.environ.get("FACE_SEARCH_LOG_LEVEL", "info")
accesslog = "-" if loglevel in ("debug", "info") else None
errorlog = "-"


def worker_exit(server, worker):  # checkpoint the indexes on a clean shutdown
    app = getattr(worker, "wsgi", None)
    services = getattr(app, "extensions", {}).get("face_search") if app is not None else None
    if services is not None:
        services.close()
