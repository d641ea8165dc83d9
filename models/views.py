"""The views of a photo the detector looks at besides the photo itself.

A detector (SCRFD, YuNet) finds faces between roughly 10 and 300 pixels in its input. A face outside that
range is brought into it by changing the view, never the model: a padded canvas shrinks
a face that fills the frame, a larger input enlarges the faces of a large photo, and a
square crop around one detection shows it closer. Each view says where its pixel
(0, 0) lies in the photo, so what is found in it maps back by a plain shift.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

STRIDE = 32  # the coarsest feature stride of SCRFD and YuNet: input sides must be multiples of it
# What fills a view beyond the photo's edges (the close-up canvas, a zoomed crop at the edge).
BORDER = cv2.BORDER_CONSTANT


def padded(image: np.ndarray, share: float, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The photo on a canvas (``BORDER``) with ``share`` of its longer side added on every side.

    The canvas is at most ``side`` pixels (the input the detector shrinks it to anyway):
    the photo is shrunk before padding, so a phone photo's padded canvas, four times its
    size, is never built. Returns the canvas, where its pixel (0, 0) lies in the photo,
    and how many photo pixels (x, y) one canvas pixel stands for (pixel centres aligned,
    as in ``models.analyzer.enlarged``).
    """
    height, width = image.shape[:2]
    shrink = min(1.0, side / (max(height, width) * (1 + 2 * share)))
    if shrink < 1.0:
        image = cv2.resize(
            image, (max(1, round(width * shrink)), max(1, round(height * shrink))), interpolation=cv2.INTER_AREA
        )
    scale = np.array([width / image.shape[1], height / image.shape[0]], np.float32)
    pad = round(max(image.shape[:2]) * share)
    canvas = cv2.copyMakeBorder(image, pad, pad, pad, pad, BORDER, value=0)
    return canvas, (0.5 - pad) * scale - 0.5, scale


def around(image: np.ndarray, box: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """A square crop centred on ``box``, ``margin`` times its longer side wider on each side.

    Parts beyond the photo are filled as in ``padded``, so a face at the edge of a
    close-up is seen the same way the close-up pass saw it.
    """
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    left, top, size = round((x1 + x2 - side) / 2), round((y1 + y2 - side) / 2), max(1, round(side))
    height, width = image.shape[:2]
    top_in, left_in = max(top, 0), max(left, 0)
    bottom_in, right_in = min(top + size, height), min(left + size, width)
    if bottom_in <= top_in or right_in <= left_in:  # wholly outside the photo: nothing to extend
        return np.zeros((size, size, *image.shape[2:]), image.dtype), np.array([left, top], np.float32)
    crop = cv2.copyMakeBorder(
        image[top_in:bottom_in, left_in:right_in],
        top_in - top, top + size - bottom_in, left_in - left, left + size - right_in, BORDER, value=0,
    )  # fmt: skip
    return crop, np.array([left, top], np.float32)


def input_for(image: np.ndarray, longer_side: int) -> tuple[int, int]:
    """(width, height) of a detector input showing the whole photo at ``longer_side`` pixels.

    Shaped like the photo, not square, so no time is spent on padding.
    """
    height, width = image.shape[:2]
    scale = longer_side / max(height, width)
    return (
        max(STRIDE, math.ceil(width * scale / STRIDE) * STRIDE),
        max(STRIDE, math.ceil(height * scale / STRIDE) * STRIDE),
    )
