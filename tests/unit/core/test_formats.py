"""Every image format phones and cameras produce is read; anything else is code 1 with a reason."""

from __future__ import annotations

import io
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from PIL import Image

from service.api.errors import Code, answer_to
from service.core.errors import NoFace, NotAPhoto
from service.harness.photos import package_photo
from tests.usecases import add, find

FACE = "yaoming.jpg"


def _pil(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png16(image: Image.Image) -> bytes:
    grey = np.asarray(image.convert("L"), dtype=np.uint16) * 257
    ok, encoded = cv2.imencode(".png", grey)
    assert ok
    return encoded.tobytes()


def _rgba(image: Image.Image) -> bytes:
    rgba = image.convert("RGBA")
    rgba.putalpha(200)
    return _save(rgba, "PNG")


VARIANTS: dict[str, Callable[[Image.Image], bytes]] = {
    "jpeg-baseline": lambda im: _save(im, "JPEG", quality=90),
    "jpeg-progressive": lambda im: _save(im, "JPEG", quality=90, progressive=True),
    "jpeg-cmyk": lambda im: _save(im.convert("CMYK"), "JPEG", quality=95),
    "png-alpha": _rgba,
    "png-16bit": _png16,
    "png-grey": lambda im: _save(im.convert("L"), "PNG"),
    "png-palette": lambda im: _save(im.convert("P", palette=Image.Palette.ADAPTIVE, colors=256), "PNG"),
    "webp": lambda im: _save(im, "WEBP", quality=90),
    "bmp": lambda im: _save(im, "BMP"),
    "tiff": lambda im: _save(im, "TIFF"),
    "gif-first-frame": lambda im: _save(
        im.convert("P", palette=Image.Palette.ADAPTIVE),
        "GIF",
        save_all=True,
        append_images=[Image.new("P", im.size)],
        duration=100,
    ),
}


@pytest.fixture
def key(services):
    return services.catalog.keys.get("test-key")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_format_is_read_and_its_face_found(services, key, variant: str) -> None:
    original = package_photo(FACE)
    reference = add(services, key, original, {"reference": True})
    data = VARIANTS[variant](_pil(original))
    record = add(services, key, data, {"variant": variant})
    assert len(record.faces) == 1
    served, mime = services.gallery.photo(key.gallery, record.id)
    assert served == data and mime.startswith("image/")
    hits = find(services, key, data, top_k=2)
    assert {hit.image.id for hit in hits} == {reference.id, record.id}


def test_exif_orientation_is_honoured(services, key) -> None:
    upright = _pil(package_photo(FACE))
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # stored turned; EXIF says how to stand it up
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    data = _save(sideways, "JPEG", quality=92, exif=exif.tobytes())
    ignoring = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    lying = services.analyzer.faces(ignoring)[0].detection.bbox
    assert lying[2] - lying[0] > lying[3] - lying[1], "precondition: read as stored, the face lies on its side"
    record = add(services, key, data, {})
    assert len(record.faces) == 1
    x1, y1, x2, y2 = record.faces[0].bbox
    assert y2 - y1 > x2 - x1, "the box is of the upright face"
    assert x2 <= upright.width + 2 and y2 <= upright.height + 2, "in the upright photo's coordinates"
    hits = find(services, key, package_photo(FACE), top_k=1)
    assert hits and hits[0].image.id == record.id


def _truncated_jpeg() -> bytes:
    data = package_photo(FACE)
    return data[: len(data) // 3]


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"GIF89a" + b"\x00" * 20, "decoded"),
        (b"%PDF-1.7\n" + b"x" * 100, "not a JPEG"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not a JPEG"),
        (b"\x00\x00\x00\x20ftypheic" + b"\x00" * 64, "not a JPEG"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "decoded"),
    ],
)
def test_what_is_not_a_photo_is_code_1_with_a_reason(services, key, data: bytes, reason: str) -> None:
    with pytest.raises(NotAPhoto) as refused:
        add(services, key, data)
    answer = answer_to(refused.value)
    assert answer.code == Code.NO_CONTENT and reason in answer.message
    assert services.catalog.images.gallery(key.gallery).images == 0


def test_a_truncated_jpeg_is_never_an_internal_error(services, key) -> None:
    try:
        record = add(services, key, _truncated_jpeg())
    except (NotAPhoto, NoFace) as refused:
        assert answer_to(refused).code in (Code.NO_CONTENT, Code.NO_FACE)
    else:
        assert record.faces, "stored only with a face"


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_a_decompression_bomb_is_refused_before_decoding(services, key, fmt: str) -> None:
    bomb = _save(Image.new("L" if fmt == "PNG" else "P", (12_000, 9_000)), fmt)
    assert len(bomb) < 2_000_000, "small on the wire"
    with pytest.raises(NotAPhoto) as refused:
        add(services, key, bomb)
    answer = answer_to(refused.value)
    assert answer.code == Code.NO_CONTENT and "12000x9000" in answer.message
