"""The face pipeline over many photos at once: detect each, embed the faces of all in one call.

One model call for the faces of several photos costs less than one per photo, which is
what makes a bulk import or a re-embedding of a large gallery affordable. The steps are
those of ``FaceAnalyzer.faces_in_bytes`` (reduced decode, detection, alignment frame),
so the faces are the ones ``POST /images`` would store for the same photo.
"""

from __future__ import annotations

from collections.abc import Sequence

from models.analyzer import FaceAnalyzer, enlarged
from models.decode import ImageDecodeError
from models.faces import Face


def faces_of_many(analyzer: FaceAnalyzer, photos: Sequence[bytes]) -> list[list[Face] | None]:
    """Every face of each photo, largest first, embedded in one batched call; None for
    bytes that are not a photo."""
    frames = []
    for data in photos:
        try:
            image, factor = analyzer.decode(data)
        except ImageDecodeError:
            frames.append(None)
            continue
        frames.append(analyzer.alignment_frame(data, image, analyzer.detector.detect(image, factor), factor))
    crops = [analyzer.embedder.align(image, d.landmarks) for image, found, _ in filter(None, frames) for d in found]
    vectors = iter(analyzer.embedder.embed_crops(crops))
    return [
        None if frame is None else [Face(detection=enlarged(d, frame[2]), embedding=next(vectors)) for d in frame[1]]
        for frame in frames
    ]
