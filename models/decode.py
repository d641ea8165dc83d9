"""Image bytes to pixels, refusing what is not a photo with a reason a client can act on."""

from __future__ import annotations

import cv2
import numpy as np

# Leading bytes of the formats OpenCV decodes here, to name the type of a stored photo.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


class ImageDecodeError(ValueError):
    """The bytes are not a photo this service can read."""


def content_type(data: bytes) -> str | None:
    """The MIME type of an image from its leading bytes, or None when unknown."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for signature, mime in _SIGNATURES:
        if data.startswith(signature):
            return mime
    return None


def decode_image(data: bytes) -> np.ndarray:
    """Decode to 8-bit BGR, honouring EXIF orientation so rotated phone photos stand upright."""
    if not data:
        raise ImageDecodeError("the image is empty")
    if content_type(data) is None:
        raise ImageDecodeError("the bytes are not a JPEG, PNG, WebP, BMP, TIFF or GIF image")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageDecodeError("the image could not be decoded (corrupt or truncated file)")
    return image
