"""YuNet (OpenCV Zoo, 2023mar): anchor-free face detection with 5 landmarks.

Decoded as OpenCV's ``FaceDetectorYN`` does (modules/objdetect/src/face_detect.cpp):
the network takes BGR pixels 0-255 as they are, padded at the bottom and right to a
multiple of 32; each stride's outputs give per cell a class and an objectness score
(already through a sigmoid; the score is the square root of their product, clipped to
0-1), a box centre offset and log-size, and the five landmarks, in cells. Overlaps are
suppressed on whole-pixel boxes at IoU 0.3, as OpenCV does.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import transforms
from .base import DetectorModel, RawDetections

STRIDES = (8, 16, 32)
NMS_IOU = 0.3
TOP_K = 5000


class YuNet(DetectorModel):
    def detect(self, image: np.ndarray, input_size: tuple[int, int], threshold: float) -> RawDetections:
        canvas, scale = transforms.letterboxed(image, input_size)
        outputs = self.run(transforms.blob([canvas], input_size, mean=0.0, std=1.0, rgb=False))
        levels = len(STRIDES)
        scores, boxes, points = [], [], []
        for level, stride in enumerate(STRIDES):
            cols = canvas.shape[1] // stride
            cells = np.arange(outputs[level].shape[1])
            cell = np.stack([cells % cols, cells // cols], axis=-1).astype(np.float32)
            score = np.sqrt(np.clip(outputs[level][0, :, 0], 0, 1) * np.clip(outputs[level + levels][0, :, 0], 0, 1))
            kept = score >= threshold
            box = outputs[level + 2 * levels][0][kept]
            centre = (cell[kept] + box[:, :2]) * stride
            size = np.exp(box[:, 2:]) * stride
            scores.append(score[kept])
            boxes.append(np.hstack([centre - size / 2, size]))
            points.append((outputs[level + 3 * levels][0][kept].reshape(-1, 5, 2) + cell[kept, None, :]) * stride)
        score, xywh, landmarks = np.concatenate(scores), np.vstack(boxes), np.vstack(points)
        keep = np.asarray(
            cv2.dnn.NMSBoxes(xywh.astype(np.int32).tolist(), score.tolist(), threshold, NMS_IOU, top_k=TOP_K), np.int64
        ).reshape(-1)
        corners = np.hstack([xywh[keep, :2], xywh[keep, :2] + xywh[keep, 2:]])
        return RawDetections(
            boxes=(corners / scale).astype(np.float32),
            landmarks=(landmarks[keep] / scale).astype(np.float32),
            scores=score[keep].astype(np.float32),
        )
