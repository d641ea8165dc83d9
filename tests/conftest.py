"""Shared fixtures: real services on a temporary data directory, and a Flask client over them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.api.app import create_app
from service.core.config import Settings
from service.core.services import Services, build_services
from service.harness.live import KEY, SECRET
from tests.cluster import engines  # noqa: F401 - the session's PostgreSQL and Milvus, for the cluster tests
from tests.live import OTHER_KEY, OTHER_SECRET


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings().at(tmp_path / "data")


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    with build_services(settings, serving=True) as built:
        built.keys.create(KEY, SECRET)
        built.keys.create(OTHER_KEY, OTHER_SECRET)
        yield built


@pytest.fixture
def client(settings: Settings, services: Services):
    return create_app(settings, services).test_client()
