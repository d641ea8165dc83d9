"""The whole model pipeline: image bytes or pixels in, embedded faces out.

A phone photo is several times larger than the detector's input, so decoding it in
full only to shrink it again wastes most of the time spent on it. Large JPEGs are
decoded at 1/2, 1/4 or 1/8 size (libjpeg's DCT scaling, nearly free) as long as the
longer side still covers what the detector uses (its input, or its larger input for
large photos: ``FaceDetector.working_side``); faces are aligned on those pixels when
every face still spans at least the embedder's crop size, and on a full decode
otherwise. Boxes and landmarks are always returned in the photo's own coordinates.

Embeddings are the running pack's, or (``pack``) those of a pack it serves, for which only
that pack's embedder runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .decode import DEFAULT_MAX_PIXELS, ImageDecodeError, checked_size, decode_image, decode_reduced, reduction_for
from .detector import FaceDetector
from .embedder import FaceEmbedder
from .faces import Detection, Face
from .packs import ModelPack, ModelPackError

StageObserver = Callable[[str, float], None]
"""Told each model stage's wall time: ``("detection" | "embedding", seconds)``."""


class FaceAnalyzer:
    """Owns one detector and one embedder session; safe to share between threads."""

    def __init__(self, pack: ModelPack, threads: int = 1, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.pack = pack
        self.max_pixels = max_pixels
        self.detector = FaceDetector(pack, threads)
        self.embedder = FaceEmbedder(pack, threads)
        self.observers: list[StageObserver] = []

    def observe_stages(self, observer: StageObserver) -> None:
        """Tell ``observer`` the time of every detection and embedding run (the service's metrics).
        The same observer added twice (a second app over the same services) is told once."""
        if observer not in self.observers:
            self.observers.append(observer)

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            for observer in self.observers:
                observer(name, time.perf_counter() - start)

    @property
    def pack_name(self) -> str:
        return self.pack.name

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def dim_for(self, pack: str | None) -> int:
        """The width of ``pack``'s vectors (None: the running pack's)."""
        return self.embedder.dim_of(self.parts(pack))

    def parts(self, pack: str | None) -> tuple[int, ...] | None:
        """The embedders that make ``pack``'s vectors (None: all of them, the running pack's)."""
        if pack is None or pack == self.pack.name:
            return None
        parts = self.pack.parts_for(pack)
        if parts is None:
            raise ModelPackError(f"model pack {self.pack.name!r} cannot make the vectors of pack {pack!r}")
        return parts

    def faces(self, image: np.ndarray, pack: str | None = None) -> list[Face]:
        """Every face in a BGR photo, largest first, each embedded (in ``pack``'s vectors if given)."""
        with self._stage("detection"):
            detections = self.detector.detect(image)
        return self._embed([Frame(image, detections, 1)], pack)[0]

    def _embed(self, frames: list[Frame], pack: str | None = None) -> list[list[Face]]:
        """Align every frame's faces and embed them all in one model call; boxes in each photo's frame."""
        crops = [self.embedder.align(frame.image, d.landmarks) for frame in frames for d in frame.detections]
        with self._stage("embedding"):
            vectors = iter(self.embedder.embed_crops(crops, self.parts(pack)))
        return [[Face(enlarged(d, frame.factor), next(vectors)) for d in frame.detections] for frame in frames]

    def decode(self, data: bytes) -> tuple[np.ndarray, int]:
        """The photo's pixels for detection, and the reduction they were decoded at."""
        factor = reduction_for(data, checked_size(data, self.max_pixels), self.detector.working_side)
        return decode_reduced(data, factor), factor

    def alignment_frame(
        self, data: bytes, image: np.ndarray, detections: list[Detection], factor: int
    ) -> tuple[np.ndarray, list[Detection], int]:
        """Pixels to align on: the reduced decode if every face still fills a crop, else the full photo."""
        if factor == 1 or all(d.size >= self.embedder.crop_size for d in detections):
            return image, detections, factor
        return decode_image(data), [enlarged(d, factor) for d in detections], 1

    def _detect(self, data: bytes, limit: int | None = None) -> Frame:
        image, factor = self.decode(data)
        with self._stage("detection"):
            detections = self.detector.detect(image, factor)[:limit]
        return Frame(*self.alignment_frame(data, image, detections, factor))

    def faces_in_bytes(self, data: bytes, limit: int | None = None, pack: str | None = None) -> list[Face]:
        """Every face in an encoded photo (the ``limit`` largest), decoding large JPEGs at
        reduced size, embedded in ``pack``'s vectors if given. Faces past the limit are neither
        aligned nor embedded."""
        return self._embed([self._detect(data, limit)], pack)[0]

    def faces_in_many(self, photos: Sequence[bytes], pack: str | None = None) -> list[list[Face] | None]:
        """``faces_in_bytes`` of several photos with one embedder call for all their faces
        (what makes a bulk import affordable); None for bytes that are not a photo."""
        frames: list[Frame | None] = []
        for data in photos:
            try:
                frames.append(self._detect(data))
            except ImageDecodeError:
                frames.append(None)
        embedded = iter(self._embed([frame for frame in frames if frame is not None], pack))
        return [None if frame is None else next(embedded) for frame in frames]


@dataclass(frozen=True)
class Frame:
    """Detections on the pixels they will be aligned on, ``factor`` times smaller than the photo."""

    image: np.ndarray
    detections: list[Detection]
    factor: int


def enlarged(detection: Detection, factor: int) -> Detection:
    """A detection on a 1/``factor`` decode mapped to the full photo (pixel centres aligned)."""
    if factor == 1:
        return detection
    return Detection(
        bbox=(detection.bbox + 0.5) * factor - 0.5,
        landmarks=(detection.landmarks + 0.5) * factor - 0.5,
        score=detection.score,
    )
