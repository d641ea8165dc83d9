"""Face detection across the whole range of face sizes, with a quality gate, for any detector model.

The passes below are the same whichever network runs them (SCRFD, YuNet: models/base.py
DetectorModel); what differs per network is tuned per pack (models/packs.py DetectorTuning).

One pass finds the faces of an ordinary photo, on an input shaped like the photo (no time
spent on padding) whose longer side is the pack's (640). Three variations run only on the
photos that need them (what they cost and save: docs/benchmarks/2026-11-25-detection.md):

- Small photos: a 250x250 thumbnail enlarged to 640 costs a full pass for pixels that
  carry nothing new. It is enlarged at most ``small_photo_zoom`` times instead, which
  still shows its smallest kept face well inside the detector's range.
- Large photos: a 4000x3000 photo shrunk to 640 loses faces under ~150 pixels. When the
  photo's longer side is at least 1.35 times the input, its one pass runs at up to
  ``large_photo_side`` pixels instead (an input shaped like the photo, so no time goes
  to padding). SCRFD still finds faces up to ~380 pixels in such an input, more than
  the close-up share below leaves to it.
- Close-ups: a detector's anchors stop at faces of a few hundred pixels in its input, so a
  tightly cropped face (an ID photo, an avatar, a selfie) scaled up to the input size is
  missed entirely. When the pass finds nothing, or a face that fills most of the frame,
  the photo is detected again on a canvas padded by half its size on each side, at a
  small input (the face is large in it, and the pass costs a quarter of the first). The
  photo is shrunk before it is padded, so that canvas is never larger than that input.

Detections of all passes are merged, then gated: a minimum face size, and borderline
scores confirmed on zoomed crops (models/packs.py DetectorTuning). Boxes and landmarks
are always in the photo's own coordinates, so alignment reads real pixels, never padding.
"""

from __future__ import annotations

import numpy as np

from . import views
from .base import DetectorModel
from .faces import Detection
from .packs import ModelPack
from .zoo import detector_model

# A face whose shorter box side exceeds this share of the photo's shorter side may be
# cut short by the detector's largest anchors: look again on a padded canvas.
CLOSE_UP_SHARE = 0.45
PAD_SHARE = 0.5
CLOSE_UP_INPUT = 320
# The large-photo input replaces the first when it shows faces at least this much larger.
LARGE_MIN_GAIN = 1.35
# Zoomed crops that confirm a borderline detection: (margin around the box, input side).
CONFIRM_VIEWS = ((0.5, 160), (0.25, 224))
CONFIRM_IOU = 0.3
MERGE_IOU = 0.4


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one (x1, y1, x2, y2) box with each row of ``boxes``."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-6)


def merge_detections(detections: list[Detection], overlap: float = MERGE_IOU) -> list[Detection]:
    """Keep the best-scoring detection of each face seen by several passes."""
    ordered = sorted(detections, key=lambda d: d.score, reverse=True)
    kept: list[Detection] = []
    for detection in ordered:
        if kept and iou(detection.bbox, np.stack([k.bbox for k in kept])).max() > overlap:
            continue
        kept.append(detection)
    return kept


class FaceDetector:
    def __init__(self, pack: ModelPack, threads: int = 1, model: DetectorModel | None = None) -> None:
        """The pack's detector model, or ``model`` (an open one, to share its session) run with the pack's tuning."""
        self.input_size = (pack.detector_input_size, pack.detector_input_size)
        self.score_threshold = pack.detector_score_threshold
        self.tuning = pack.tuning
        self.model = model or detector_model(pack.detector, threads)

    @property
    def working_side(self) -> int:
        """The longest side of a photo the passes make use of: a decoder may shrink to it, not below."""
        return max(self.input_size[0], self.tuning.large_photo_side)

    def _pass(
        self,
        image: np.ndarray,
        input_size: tuple[int, int],
        origin: np.ndarray,
        threshold: float | None = None,
        scale: np.ndarray | None = None,
    ) -> list[Detection]:
        """Detections in a view whose pixel (0, 0) is at ``origin`` in the photo and whose
        pixels stand for ``scale`` (x, y) photo pixels each (1 unless given)."""
        found = self.model.detect(image, input_size, self.score_threshold if threshold is None else threshold)
        scale = np.ones(2, np.float32) if scale is None else scale
        shift, stretch = np.concatenate([origin, origin]), np.concatenate([scale, scale])
        return [
            Detection(
                bbox=(box * stretch + shift).astype(np.float32),
                landmarks=(points * scale + origin).astype(np.float32),
                score=float(score),
            )
            for box, points, score in zip(found.boxes, found.landmarks, found.scores, strict=True)
        ]

    def _needs_close_up(self, image: np.ndarray, found: list[Detection]) -> bool:
        return self.tuning.close_up_pass and (
            not found or max(d.size for d in found) > CLOSE_UP_SHARE * min(image.shape[:2])
        )

    def first_input(self, image: np.ndarray) -> tuple[int, int]:
        """An input shaped like the photo: the pack's side, larger for a large photo, smaller for a small one."""
        longer = max(image.shape[:2])
        side = min(longer, self.tuning.large_photo_side)
        if side < LARGE_MIN_GAIN * self.input_size[0]:
            zoom = self.tuning.small_photo_zoom
            side = min(self.input_size[0], round(zoom * longer)) if zoom else self.input_size[0]
        return views.input_for(image, side)

    def _confirmed(self, image: np.ndarray, detection: Detection) -> bool:
        """A borderline detection seen again closer up; a real face holds its score there."""
        if detection.score >= self.tuning.confirm_below:
            return True
        for margin, side in CONFIRM_VIEWS:
            crop, origin = views.around(image, detection.bbox, margin)
            seen = self._pass(crop, (side, side), origin, threshold=self.tuning.confirm_score)
            if seen and iou(detection.bbox, np.stack([d.bbox for d in seen])).max() > CONFIRM_IOU:
                return True
        return False

    def detect(self, image: np.ndarray, scale: float = 1.0) -> list[Detection]:
        """All faces in a BGR photo that pass the quality gate, largest first.

        ``scale`` is how many photo pixels one pixel of ``image`` stands for when it is a
        reduced decode: the minimum face size is in the photo's own pixels.
        """
        found = self._pass(image, self.first_input(image), np.zeros(2, np.float32))
        if self._needs_close_up(image, found):
            canvas, shift, stretch = views.padded(image, PAD_SHARE, CLOSE_UP_INPUT)
            found += self._pass(canvas, (CLOSE_UP_INPUT, CLOSE_UP_INPUT), shift, scale=stretch)
        kept = [
            d
            for d in merge_detections(found)
            if d.size * scale >= self.tuning.min_face_size and self._confirmed(image, d)
        ]
        return sorted(kept, key=lambda d: d.area, reverse=True)
