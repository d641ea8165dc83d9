"""A small picture of one face, cut from its photo: what a list of persons shows."""

from __future__ import annotations

import cv2
import numpy as np

from .decode import checked_size, content_type, decode_reduced
from .views import around

SIDE = 160  # pixels of the square thumbnail
MARGIN = 0.3  # of the face's longer side, around it on each side
QUALITY = 85  # JPEG


def face_thumbnail(data: bytes, box: list[float], side: int = SIDE, max_pixels: int | None = None) -> bytes:
    """A ``side`` x ``side`` JPEG of the face whose box (pixels of the upright photo) is ``box``.

    A large JPEG is decoded at 1/2, 1/4 or 1/8 of its size when the face stays at least
    ``side`` pixels wide there: a thumbnail of a face in a 24-megapixel photo decodes a
    fraction of it."""
    if max_pixels is not None:
        checked_size(data, max_pixels)
    x1, y1, x2, y2 = box
    wanted = max(x2 - x1, y2 - y1) * (1 + 2 * MARGIN)
    factor = 1
    if content_type(data) == "image/jpeg":
        factor = next((f for f in (8, 4, 2) if wanted / f >= side), 1)
    image = decode_reduced(data, factor)
    crop, _ = around(image, np.asarray(box, np.float32) / factor, MARGIN)
    interpolation = cv2.INTER_AREA if crop.shape[0] > side else cv2.INTER_CUBIC
    ok, encoded = cv2.imencode(".jpg", cv2.resize(crop, (side, side), interpolation=interpolation),
                               [cv2.IMWRITE_JPEG_QUALITY, QUALITY])  # fmt: skip
    if not ok:
        raise ValueError("the thumbnail could not be encoded")
    return encoded.tobytes()
