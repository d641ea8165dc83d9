"""Settings: every variable read once, with its default written once and documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.core.config import ENV, Settings


def test_unset_variables_keep_the_defaults_and_set_ones_are_read() -> None:
    assert Settings.from_env({}) == Settings()
    read = Settings.from_env(
        {
            "PORT": "9001",
            "FACE_SEARCH_DATA_DIR": "/srv/faces",
            "FACE_SEARCH_MAX_TOP_K": "50",
            "FACE_SEARCH_IVF_STORAGE": "sq8",
            "FACE_SEARCH_URL_ALLOW_NETWORKS": "10.0.0.0/8, ::1/128",
            "FACE_SEARCH_CLOSE_UP_PASS": "off",
            "FACE_SEARCH_THRESHOLD": "0.5",
            "FACE_SEARCH_RATE_LIMIT": "",  # empty is unset
        }
    )
    assert read.server.port == 9001 and read.storage.data_dir == Path("/srv/faces")
    assert read.limits.max_top_k == 50 and read.index.storage == "sq8" and read.threshold == 0.5
    assert [str(n) for n in read.fetch.allow_networks] == ["10.0.0.0/8", "::1/128"]
    assert read.detection.close_up_pass is False and read.server.rate_limit == Settings().server.rate_limit


@pytest.mark.parametrize(
    "name, value",
    [("PORT", "http"), ("FACE_SEARCH_NPROBE", "0"), ("FACE_SEARCH_IVF_STORAGE", "opq"), ("FACE_SEARCH_THRESHOLD", "2")],
)
def test_a_value_that_cannot_be_read_stops_start_up_naming_it(name: str, value: str) -> None:
    with pytest.raises(SystemExit, match=name):
        Settings.from_env({name: value})


def test_each_variable_sets_one_setting() -> None:
    names, paths = [entry.name for entry in ENV], [entry.path for entry in ENV]
    assert len(set(names)) == len(names) and len(set(paths)) == len(paths)
    for entry in ENV:
        entry.default()  # the path exists in Settings
