"""The application object and typed access to what it holds, for the blueprints: the
settings, the use cases and the throttles, as attributes, not string keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from flask import Flask, current_app
from prometheus_client import CollectorRegistry

from ..core.config import Settings
from ..core.services import UseCases
from ..core.throttle import Throttles


class FaceSearchApp(Flask):
    settings: Settings
    use_cases: UseCases
    throttles: Throttles
    registry: CollectorRegistry  # the app's own metrics: gallery sizes and index state
    shutdown: Callable[[], None]  # closes the storage (checkpoints written), at a worker's clean exit


def app() -> FaceSearchApp:
    return cast(FaceSearchApp, current_app)


def use_cases() -> UseCases:
    return app().use_cases
