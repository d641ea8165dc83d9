"""Thumbnails: a small upright JPEG of any stored format, kept beside its photo and going with it."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from models.decode import thumbnail
from service.core.photos import THUMBNAIL_SUFFIX, PhotoFiles
from service.harness.photos import package_photo, scaled
from tests.unit.core.test_formats import VARIANTS, _pil, _save

SIDE = 256


def _opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_stored_format_gets_a_small_jpeg_of_its_proportions(variant: str) -> None:
    photo = _pil(package_photo("t1.jpg"))  # 1280 x 886
    small = _opened(thumbnail(VARIANTS[variant](photo), SIDE, 80))
    assert max(small.size) == SIDE and abs(small.size[0] / small.size[1] - 1280 / 886) < 0.01, small.size


def test_a_thumbnail_stands_as_the_photo_is_shown_and_a_small_photo_is_not_enlarged() -> None:
    sideways = _pil(package_photo("t1.jpg"))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    upright = _opened(thumbnail(_save(sideways, "JPEG", quality=92, exif=exif.tobytes()), SIDE, 80))
    assert upright.size[1] == SIDE and upright.size[0] < SIDE, "shown upright: taller than wide"
    assert _opened(thumbnail(scaled(package_photo("yaoming.jpg"), 0.5), SIDE, 80)).size == (116, 143)


def test_a_thumbnail_is_kept_with_its_photo_pinned_with_it_and_deleted_with_it(tmp_path: Path) -> None:
    photos = PhotoFiles(tmp_path / "photos")
    live, gone = (
        photos.write(1, b"\xff\xd8\xff live", "image/jpeg"),
        photos.write(1, b"\xff\xd8\xff gone", "image/jpeg"),
    )
    for name in (live, gone):
        photos.write_thumbnail(name, b"small " + name.encode())
    assert photos.read_thumbnail(live) == b"small " + live.encode()
    old = time.time() - 7200
    for path in (tmp_path / "photos" / "1").iterdir():
        os.utime(path, (old, old))
    assert photos.remove_orphans(lambda: {live}, grace=3600) == 2, "the photo no record names, and its thumbnail"
    assert sorted(p.name for p in (tmp_path / "photos" / "1").iterdir()) == sorted(
        [Path(live).name, Path(live).name + THUMBNAIL_SUFFIX]
    ), "a live photo's thumbnail is no orphan"
    assert photos.pin(tmp_path / "pinned") == 2
    photos.delete(live)
    assert not any((tmp_path / "photos" / "1").iterdir())
    with pytest.raises(FileNotFoundError):
        photos.read_thumbnail(live)
    assert (tmp_path / "pinned" / (live + THUMBNAIL_SUFFIX)).read_bytes() == b"small " + live.encode()
