"""Keeps records and vectors behind two small interfaces; knows nothing of images or HTTP.

- ``catalog.Catalog``: keys, quotas, galleries, image records, metadata, embeddings, the
  change log and snapshots: the source of truth.
- ``vectors.VectorIndexes``: per-gallery search, derived from the catalog's change log.
- ``backend.open_backend``: the one factory. ``lmdb/`` and ``faiss/`` are the embedded
  implementations; ``records`` and ``errors`` are what crosses the seam.
"""
