"""The HTTP layer: the Flask app factory, blueprints, request types, the envelope and the
error-to-code table, the OpenAPI document and /docs, health, metrics, request logs, the web
page and the gunicorn configuration. Thin: every route parses, calls ``service.core``, renders.
"""
