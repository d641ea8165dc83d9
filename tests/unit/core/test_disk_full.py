"""A full disk: a clear error, nothing half-written, the earlier data intact, and recovery
once space is freed. The data directory is a real size-limited tmpfs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from service.api.errors import Code, answer_to
from service.core.config import Settings
from service.core.errors import StorageFull
from service.core.services import build_services
from service.harness.photos import package_photo, recompressed
from tests.usecases import add, find, page

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
    settings = Settings().at(small_disk / "data")
    settings = replace(settings, storage=replace(settings.storage, lmdb_map_bytes=64 << 20))
    with build_services(settings, serving=True) as services:
        key = services.keys.create("k", "s").record
        photo = package_photo("t1.jpg")
        stored = [add(services, key, photo, {"n": 0})]
        filler = small_disk / "filler"
        with open(filler, "wb") as handle:  # take the rest of the disk but a little
            try:
                while True:
                    handle.write(b"\0" * 65536)
            except OSError:
                pass
        filler.write_bytes(filler.read_bytes()[: -3 * len(photo)])
        refused = None
        for n in range(1, 50):
            try:
                stored.append(add(services, key, recompressed(photo, 90 - n), {"n": n}))
            except StorageFull as exc:
                refused = exc
                break
        assert refused is not None, "the disk filled up"
        assert answer_to(refused).code == Code.STORAGE_ERROR and answer_to(refused).http_status == 507
        listed, total = page(services, key, 0, 100)
        assert [r.id for r in listed] == [r.id for r in stored] and total == len(stored)
        for record in stored:
            assert services.photos.read(record.file), "earlier photos are intact"
        assert services.photos.remove_orphans(services.catalog.images.files, grace=0) == 0, "no half-written file"
        assert services.indexes.verify(key.gallery)

        filler.unlink()
        again = add(services, key, photo, {"after": "space freed"})
        hits = find(services, key, photo, top_k=100, threshold=0.9)
        assert again.id in {hit.image.id for hit in hits}
