"""The use cases: add, search, update, delete and list images, keys, bulk import, re-embedding,
index maintenance and the default threshold.

Called by the HTTP layer (``service.api``) and by ``scripts/`` alike. Imports no Flask,
werkzeug or pydantic; raises its own errors (``errors``), never HTTP ones.
"""
