"""Turns image bytes into faces: boxes, landmarks, detection scores and embeddings.

Knows nothing of storage or HTTP.
"""
