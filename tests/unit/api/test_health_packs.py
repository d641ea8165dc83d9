"""/healthz names the pack being served and its weights' licence, whichever pack it is."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from service.api.app import create_app
from service.core.config import Settings
from service.core.services import build_services


def test_healthz_states_the_commercial_packs_licence(tmp_path: Path) -> None:
    settings = replace(Settings().at(tmp_path / "data"), models="yunet_sface")
    with build_services(settings, serving=True) as services:
        answer = create_app(settings, services).test_client().get("/healthz").get_json()
    assert answer == {
        "status": "ok",
        "pack": "yunet_sface",
        "licence": "YuNet: MIT; SFace: Apache-2.0; commercial use allowed",
    }


def test_a_serving_process_logs_the_packs_licence_in_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings().at(tmp_path / "data")
    with caplog.at_level(logging.INFO, logger="service.core.services"), build_services(settings, serving=True):
        pass
    [line] = [r.getMessage() for r in caplog.records if "licence" in r.getMessage()]
    assert line.startswith("model pack buffalo_s_edgeface (also serves galleries of buffalo_s); ") and "\n" not in line
    assert line.endswith("weights licence: InsightFace pretrained models: non-commercial research use only; EdgeFace: "
                         "CC BY-NC-SA 4.0 (non-commercial)")  # fmt: skip
