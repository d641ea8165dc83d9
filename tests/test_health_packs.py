"""/healthz names the pack being served and its weights' licence, whichever pack it is."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from service.app import create_app
from service.config import Settings
from service.context import build_services


def test_healthz_states_the_commercial_packs_licence(tmp_path: Path) -> None:
    settings = replace(Settings(), data_dir=tmp_path / "data", index_save_seconds=0, models="yunet_sface")
    with build_services(settings, serving=True) as services:
        answer = create_app(settings, services).test_client().get("/healthz").get_json()
    assert answer == {
        "status": "ok",
        "pack": "yunet_sface",
        "licence": "YuNet: MIT; SFace: Apache-2.0; commercial use allowed",
    }
