"""The default search threshold: strict enough that a stranger's query comes back empty.

A search compares the query with every face of the gallery, so the chance that some
stranger passes a threshold grows with the gallery: about 1 - (1 - FAR)^N for N faces
and a per-pair false-accept rate FAR. A fixed threshold is therefore either too strict
for small galleries or lets strangers through in large ones. When the pack's manifest
holds a calibration table (per-pair FAR -> cosine, measured by ``scripts/evaluate.py``
on different-person pairs), the threshold is the cosine whose per-pair FAR is the
target stranger rate divided by the number of faces: a stranger's query then comes
back empty with the same probability whatever the gallery's size. Without a table the
pack's fixed ``search_threshold`` applies. A client can still pass its own.
"""

from __future__ import annotations

import math

import numpy as np

from models.packs import ModelPack


def cosine_at_far(table: list[list[float]], far: float) -> float:
    """The cosine for a per-pair FAR, interpolated in log(FAR) and held at the table's ends."""
    points = sorted((math.log10(f), c) for f, c in table)
    return float(np.interp(math.log10(far), [x for x, _ in points], [c for _, c in points]))


def search_threshold(pack: ModelPack, gallery_faces: int) -> float:
    """The pack's default threshold for a gallery of ``gallery_faces`` faces."""
    calibration = pack.manifest.get("calibration")
    if not calibration:
        return pack.search_threshold
    far = calibration["stranger_rate"] / max(gallery_faces, calibration.get("min_faces", 1))
    return round(cosine_at_far(calibration["far_cosine"], far), 4)


def link_threshold(pack: ModelPack, far: float | None, fixed: float | None) -> float:
    """The cosine at which a grouping run links two faces: ``fixed``, else the pack's cosine at
    per-pair false-accept rate ``far`` (None: the pack's own, its manifest's ``grouping.far``)
    in its calibration table, else its fixed search threshold."""
    if fixed is not None:
        return fixed
    calibration = pack.manifest.get("calibration")
    far = far if far is not None else pack.manifest.get("grouping", {}).get("far")
    if not calibration or far is None:
        return pack.search_threshold
    return round(cosine_at_far(calibration["far_cosine"], far), 4)
