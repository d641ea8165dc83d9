"""SCRFD face detection, robust to faces that fill the frame.

SCRFD's anchors stop at faces of a few hundred pixels in its input, so a tightly
cropped face (an ID photo, an avatar, a selfie) scaled up to the input size is missed
entirely. When the first pass finds nothing, or finds a face that fills most of the
frame, the photo is detected again on a canvas padded by half its size on each side,
and the two sets of detections are merged. Boxes and landmarks are always mapped
back to the photo's own coordinates, so alignment reads real pixels, never padding.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
from insightface.model_zoo import get_model

from .faces import Detection
from .packs import ModelPack
from .runtime import PROVIDERS, session_options

# A face whose shorter box side exceeds this share of the photo's shorter side may be
# cut short by the detector's largest anchors: look again on a padded canvas.
CLOSE_UP_SHARE = 0.45
PAD_SHARE = 0.5
MERGE_IOU = 0.4


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-6)


def merge_detections(detections: list[Detection], iou: float = MERGE_IOU) -> list[Detection]:
    """Keep the best-scoring detection of each face seen by several passes."""
    ordered = sorted(detections, key=lambda d: d.score, reverse=True)
    kept: list[Detection] = []
    for detection in ordered:
        if kept and _iou(detection.bbox, np.stack([k.bbox for k in kept])).max() > iou:
            continue
        kept.append(detection)
    return kept


class FaceDetector:
    def __init__(self, pack: ModelPack, threads: int = 1) -> None:
        self.input_size = (pack.detector_input_size, pack.detector_input_size)
        self.score_threshold = pack.detector_score_threshold
        self.model = get_model(str(pack.detector.path), providers=PROVIDERS, sess_options=session_options(threads))
        self.model.prepare(-1, input_size=self.input_size, det_thresh=self.score_threshold)

    def _pass(self, image: np.ndarray, offset: int = 0) -> list[Detection]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            boxes, landmarks = self.model.detect(image, input_size=self.input_size)
        return [
            Detection(
                bbox=(box[:4] - offset).astype(np.float32),
                landmarks=(points - offset).astype(np.float32),
                score=float(box[4]),
            )
            for box, points in zip(boxes, landmarks if landmarks is not None else [], strict=False)
        ]

    def detect(self, image: np.ndarray) -> list[Detection]:
        """All faces in a BGR photo, largest first."""
        found = self._pass(image)
        short_side = min(image.shape[:2])
        if not found or max(d.size for d in found) > CLOSE_UP_SHARE * short_side:
            pad = round(max(image.shape[:2]) * PAD_SHARE)
            canvas = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
            found = merge_detections(found + self._pass(canvas, offset=pad))
        return sorted(found, key=lambda d: d.area, reverse=True)
