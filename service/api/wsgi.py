"""The WSGI entry point for gunicorn: ``gunicorn -c service/api/gunicorn.conf.py service.api.wsgi:app``."""

from .app import create_app

app = create_app()
