"""SCRFD (InsightFace): anchor-based face detection with 5 landmarks.

Decoded as InsightFace's own ``SCRFD.detect`` does (so buffalo_s finds the same boxes
and landmarks as before this module replaced it, to float precision: tested), but on
one session whose input follows the view's shape, rather than one session per shape.
"""

from __future__ import annotations

import functools

import numpy as np

from . import transforms
from .base import DetectorModel, RawDetections

STRIDES = (8, 16, 32)
ANCHORS_PER_CELL = 2
MEAN, STD = 127.5, 128.0  # RGB in [-1, 1)
NMS_IOU = 0.4


class Scrfd(DetectorModel):
    def detect(self, image: np.ndarray, input_size: tuple[int, int], threshold: float) -> RawDetections:
        canvas, scale = transforms.letterboxed(image, input_size)
        outputs = [
            out[0] if out.ndim == 3 else out
            for out in self.run(transforms.blob([canvas], input_size, MEAN, STD, rgb=True))
        ]
        levels = len(STRIDES)
        scores, boxes, points = [], [], []
        for level, stride in enumerate(STRIDES):
            level_scores = outputs[level]
            kept = np.where(level_scores >= threshold)[0]
            # Only the anchors above the threshold are decoded: a few of the thousands there are.
            centres = anchor_centres(canvas.shape[0] // stride, canvas.shape[1] // stride, stride)[kept]
            distances = outputs[level + levels][kept] * stride
            offsets = outputs[level + 2 * levels][kept] * stride
            scores.append(level_scores[kept])
            boxes.append(np.stack([*(centres.T - distances[:, :2].T), *(centres.T + distances[:, 2:].T)], axis=-1))
            points.append((np.tile(centres, 5) + offsets).reshape(-1, 5, 2))
        score = np.vstack(scores).ravel()
        order = np.argsort(-score, kind="stable")
        candidates = np.hstack([np.vstack(boxes) / scale, score[:, None]]).astype(np.float32, copy=False)[order]
        landmarks = (np.vstack(points) / scale)[order]
        keep = suppressed(candidates)
        return RawDetections(
            boxes=candidates[keep, :4], landmarks=landmarks[keep].astype(np.float32), scores=candidates[keep, 4]
        )


@functools.lru_cache(maxsize=64)
def anchor_centres(rows: int, cols: int, stride: int) -> np.ndarray:
    """(rows * cols * anchors, 2) x, y of every anchor, row by row, each cell's anchors together;
    made once per grid (every photo of one input size shares it) and read-only."""
    centres = (np.stack(list(np.mgrid[:rows, :cols][::-1]), axis=-1).astype(np.float32) * stride).reshape(-1, 2)
    centres = np.repeat(centres, ANCHORS_PER_CELL, axis=0)
    centres.flags.writeable = False
    return centres


def suppressed(detections: np.ndarray) -> list[int]:
    """Indices kept by greedy non-maximum suppression, on rows sorted by score (InsightFace's,
    areas counted in whole pixels: ``+ 1``)."""
    x1, y1, x2, y2 = detections[:, 0], detections[:, 1], detections[:, 2], detections[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-detections[:, 4], kind="stable")
    keep = []
    while order.size > 0:
        first, rest = order[0], order[1:]
        keep.append(int(first))
        width = np.maximum(0.0, np.minimum(x2[first], x2[rest]) - np.maximum(x1[first], x1[rest]) + 1)
        height = np.maximum(0.0, np.minimum(y2[first], y2[rest]) - np.maximum(y1[first], y1[rest]) + 1)
        inter = width * height
        order = rest[inter / (areas[first] + areas[rest] - inter) <= NMS_IOU]
    return keep
