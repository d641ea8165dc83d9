"""Photo files: adds arriving together share the fsync of their gallery's directory, and each
returns only after an fsync of the directory that began once its file had its name."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from service.core import photos
from service.core.photos import PhotoFiles


def test_photos_written_together_share_their_directory_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = PhotoFiles(tmp_path / "photos")
    store.write(1, b"first", "image/jpeg")  # the gallery's folder exists before the race
    events: list[tuple[str, float, float, str]] = []  # (what, began, ended, name)
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:  # the real call, timed; a directory's made slow so that adds overlap
        began = time.monotonic()
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            time.sleep(0.2)
        real_fsync(fd)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            events.append(("directory fsync", began, time.monotonic(), ""))

    def replace(source: str | Path, target: str | Path) -> None:
        real_replace(source, target)
        events.append(("renamed", time.monotonic(), time.monotonic(), Path(target).name))

    monkeypatch.setattr(photos.os, "fsync", fsync)
    monkeypatch.setattr(photos.os, "replace", replace)
    returned: dict[str, float] = {}
    start = threading.Barrier(8)

    def add(n: int) -> None:
        start.wait()
        name = store.write(1, f"photo {n}".encode(), "image/jpeg")
        returned[Path(name).name] = time.monotonic()

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    syncs = [(began, ended) for what, began, ended, _ in events if what == "directory fsync"]
    renamed = {name: at for what, at, _, name in events if what == "renamed"}
    assert len(returned) == 8 and set(returned) == set(renamed)
    assert len(syncs) < 8, "each add fsynced the directory alone"
    for name, at in renamed.items():  # durable before acknowledged: an fsync began after the rename, ended before
        assert any(began >= at and ended <= returned[name] for began, ended in syncs), name
    assert sorted(store.read(f"1/{name}") for name in returned) == sorted(f"photo {n}".encode() for n in range(8))
