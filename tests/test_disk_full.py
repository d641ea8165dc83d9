"""A full disk: a clear error, nothing half-written, the earlier data intact, and recovery
once space is freed. The data directory is a real size-limited tmpfs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from service import images
from service.config import Settings
from service.context import build_services
from service.errors import ApiError, Code
from service.search import search
from tests.photos import package_photo, recompressed

SIZE = "4m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a {SIZE} tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_is_a_clear_error_and_loses_nothing(small_disk: Path) -> None:
    settings = replace(Settings(), data_dir=small_disk / "data", index_save_seconds=0, lmdb_map_bytes=64 << 20)
    with build_services(settings, serving=True) as services:
        key = services.keys.create("k", "s").record
        photo = package_photo("t1.jpg")
        stored = [images.add_image(services, key, photo, {"n": 0})]
        filler = small_disk / "filler"
        with open(filler, "wb") as handle:  # take the rest of the disk but a little
            try:
                while True:
                    handle.write(b"\0" * 65536)
            except OSError:
                pass
        filler.write_bytes(filler.read_bytes()[: -3 * len(photo)])
        refusal = None
        for n in range(1, 50):
            try:
                stored.append(images.add_image(services, key, recompressed(photo, 90 - n), {"n": n}))
            except ApiError as exc:
                refusal = exc
                break
        assert refusal is not None, "the disk filled up"
        assert refusal.code == Code.STORAGE_ERROR and refusal.http_status == 507
        listed, total = images.list_images(services, key, 0, 100)
        assert [r.id for r in listed] == [r.id for r in stored] and total == len(stored)
        for record in stored:
            assert services.photos.read(record.file), "earlier photos are intact"
        assert services.photos.remove_orphans(services.store.image_files()) == 0, "no half-written file"
        assert services.indexes.verify(key.gallery)

        filler.unlink()
        again = images.add_image(services, key, photo, {"after": "space freed"})
        hits = search(services, key, photo, top_k=100, threshold=0.9)
        assert again.id in {hit.image.id for hit in hits}
