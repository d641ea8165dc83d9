"""Image bytes to pixels, refusing what is not a photo with a reason a client can act on."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

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


DEFAULT_MAX_PIXELS = 50_000_000


def checked_size(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int] | None:
    """The (width, height) a photo's header declares, refusing more than ``max_pixels``
    before anything is decoded; None when Pillow cannot read the header (OpenCV's decode
    then decides).

    A few kilobytes of PNG or GIF can declare a 100,000 x 100,000 canvas (a decompression
    bomb) whose decode would take gigabytes; only the header is read here.
    """
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"the image declares too many pixels (at most {max_pixels:,}): {exc}") from exc
    except (OSError, ValueError, SyntaxError):
        return None
    if width * height > max_pixels:
        raise ImageDecodeError(f"the image is {width}x{height} pixels; at most {max_pixels:,} pixels are accepted")
    return width, height


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


# libjpeg scales by 1/2, 1/4 or 1/8 inside the inverse DCT: far cheaper than a full decode.
_REDUCED_FLAGS = {8: cv2.IMREAD_REDUCED_COLOR_8, 4: cv2.IMREAD_REDUCED_COLOR_4, 2: cv2.IMREAD_REDUCED_COLOR_2}


def reduction_for(data: bytes, size: tuple[int, int] | None, min_side: int) -> int:
    """The largest JPEG reduction (1, 2, 4, 8) that keeps the longer side of ``size`` (the
    header's, before EXIF rotation) at least ``min_side``; 1 for other formats."""
    if size is None or content_type(data) != "image/jpeg":
        return 1
    return next((factor for factor in (8, 4, 2) if max(size) // factor >= min_side), 1)


def decode_reduced(data: bytes, factor: int) -> np.ndarray:
    """Decode a JPEG at 1/``factor`` of its size (EXIF orientation honoured), or fully for 1."""
    if factor == 1:
        return decode_image(data)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _REDUCED_FLAGS[factor])
    if image is None or image.size == 0:
        raise ImageDecodeError("the image could not be decoded (corrupt or truncated file)")
    return image


def thumbnail(data: bytes, side: int, quality: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A JPEG of the photo, upright, whose longer side is at most ``side`` pixels. A large JPEG
    is decoded already reduced (see ``decode_reduced``), then shrunk by area averaging."""
    image = decode_reduced(data, reduction_for(data, checked_size(data, max_pixels), side))
    height, width = image.shape[:2]
    scale = side / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    encoded, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not encoded:
        raise ImageDecodeError("the thumbnail could not be encoded")
    return jpeg.tobytes()
