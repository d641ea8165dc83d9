"""Keeps records and vectors: LMDB as the source of truth, FAISS indexes derived from it.

Knows nothing of images or HTTP.
"""
