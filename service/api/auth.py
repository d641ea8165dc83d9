"""Who is calling: credentials (slowed down after repeated failures), the rate limit, the quota.

Runs before every API request; the key it finds is ``g.key`` for the routes.
"""

from __future__ import annotations

import math
import time

from flask import current_app, g, request

from ..core.errors import BadCredentials
from ..core.services import Services
from ..core.throttle import Throttles
from .errors import ApiError, Code


def services() -> Services:
    return current_app.extensions["face_search"]


def authenticate() -> None:
    throttles: Throttles = current_app.extensions["face_search.throttles"]
    auth = request.authorization
    address = request.remote_addr or "unknown"
    pause = throttles.logins.delay(address)
    if pause:
        time.sleep(pause)
    try:
        key = services().keys.authenticate(auth.username if auth else None, auth.password if auth else None)
    except BadCredentials:
        throttles.logins.failed(address)
        raise
    throttles.logins.succeeded(address)
    wait = throttles.rate.acquire(key.name)
    if wait:
        retry = str(max(1, math.ceil(wait)))
        raise ApiError(Code.OUT_OF_REQUESTS, "rate limit exceeded; retry later", headers={"Retry-After": retry})
    services().keys.charge(key)
    g.key = key
