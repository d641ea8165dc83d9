"""What the tests and the benchmark scripts share to run the service's real parts: PostgreSQL
and Milvus from their wheels (engines.py; Milvus in a network namespace of its own,
isolated.py), a real gunicorn server on loopback (live.py), real photos from the installed
wheels and the shared data sets (photos.py), and synthetic face embeddings shaped like real
ones (synthetic.py).

It lives inside the installed tree, beside ``service.api`` and ``service.commands``, because
both tests/ and scripts/ import it: an installed package needs no ``sys.path`` edit, and a
script need not import tests/ (the top level is fixed, and index/ and models/ may not import
the service it drives). The service itself never imports it (tests/unit/test_layers.py).
"""
