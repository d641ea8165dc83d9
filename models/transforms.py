"""Pixel transforms shared by the models: fitting a view into a network's input, and alignment.

Kept apart from the model classes because a wrong constant here (a template point, an
interpolation, a rounding) silently costs accuracy for every model that uses it.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.transform import SimilarityTransform

# Where the eyes, nose tip and mouth corners land in a 112x112 crop: the template ArcFace
# was trained on (InsightFace's norm_crop), which SFace shares (OpenCV's alignCrop).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
TEMPLATE_SIDE = 112
# What the alignment warp fills beyond the photo's edges (a tight crop's cut forehead and chin).
ALIGN_BORDER = cv2.BORDER_CONSTANT


def letterboxed(image: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """The view resized to fit ``input_size`` (width, height) with its aspect kept, at the
    top-left of a black canvas of that size; and the scale from view to canvas pixels.

    Sides are truncated and one scale (the height's) maps back, as InsightFace's SCRFD
    does; with an input shaped like the view (``views.input_for``) the black margin is
    at most the rounding to the network's stride, which is how OpenCV pads for YuNet.
    """
    width, height = input_size
    ratio = float(image.shape[0]) / image.shape[1]
    if ratio > float(height) / width:
        new_height, new_width = height, int(height / ratio)
    else:
        new_width, new_height = width, int(width * ratio)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    canvas[:new_height, :new_width] = cv2.resize(image, (new_width, new_height))
    return canvas, float(new_height) / image.shape[0]


def alignment_matrix(landmarks: np.ndarray, side: int) -> np.ndarray:
    """The 2x3 similarity (rotation, scale, shift) taking the 5 landmarks nearest to the
    template scaled to ``side`` pixels, by least squares (Umeyama)."""
    template = ARCFACE_TEMPLATE * (float(side) / TEMPLATE_SIDE)
    return SimilarityTransform.from_estimate(np.asarray(landmarks, np.float32), template).params[0:2, :]


def aligned(image: np.ndarray, landmarks: np.ndarray, side: int) -> np.ndarray:
    """The face warped onto the template: a ``side`` x ``side`` BGR crop, black beyond the photo."""
    matrix = alignment_matrix(landmarks, side)
    return cv2.warpAffine(image, matrix, (side, side), borderMode=ALIGN_BORDER, borderValue=0.0)


def blob(images: list[np.ndarray], size: tuple[int, int], mean: float, std: float, rgb: bool) -> np.ndarray:
    """NCHW float32 ``(pixel - mean) / std`` of BGR images, channels swapped to RGB when ``rgb``."""
    return cv2.dnn.blobFromImages(images, 1.0 / std, size, (mean, mean, mean), swapRB=rgb)
