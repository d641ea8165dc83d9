"""Synthetic face embeddings shaped like real ones, for index tests that must be able to fail.

Uniform random unit vectors are all equally far apart, so any index ranks them trivially.
Real embeddings come in identities (several faces of one person, close together) and
lookalike groups (people who resemble each other); these do too, at the cosines buffalo_s
gives: a face at 0.6-0.8 to its identity's centre, an identity at 0.65-0.75 to its group's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIM = 512


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def around(
    centres: np.ndarray, low: float, high: float, rng: np.random.Generator, dtype: type = np.float64
) -> np.ndarray:
    """Unit vectors at a cosine drawn from [low, high] to their row of ``centres``; ``dtype``: the
    type the random directions are drawn in (each draws its own numbers from the same seed)."""
    tangent = np.sqrt(1 / rng.uniform(low, high, size=(len(centres), 1)) ** 2 - 1)
    return unit(centres + tangent * unit(rng.standard_normal(centres.shape, dtype=dtype)))


@dataclass(frozen=True)
class Faces:
    vectors: np.ndarray  # (identities * per_identity, dim), identity by identity
    identity: np.ndarray  # the identity of each row
    queries: np.ndarray  # one unseen face per identity
    centres: np.ndarray


def faces(identities: int, per_identity: int = 4, group: int = 10, dim: int = DIM, seed: int = 0) -> Faces:
    rng = np.random.default_rng(seed)
    groups = unit(rng.standard_normal((max(1, identities // group), dim)))
    centres = around(groups[np.arange(identities) % len(groups)], 0.65, 0.75, rng)
    identity = np.repeat(np.arange(identities), per_identity)
    return Faces(around(centres[identity], 0.6, 0.8, rng), identity, around(centres, 0.6, 0.8, rng), centres)


def exact_top(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> list[list[int]]:
    """The ids of the ``k`` nearest vectors per query by brute-force inner product."""
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[int(ids[j]) for j in row] for row in order]
