"""Who is calling: credentials (slowed down after repeated failures), the rate limit, the quota.

Runs before every API request; the key it finds is ``g.key`` for the routes.
"""

from __future__ import annotations

import math
import time

from flask import g, request

from ..core.errors import BadCredentials
from .context import app, use_cases
from .errors import ApiError, Code


def authenticate() -> None:
    throttles = app().throttles
    auth = request.authorization
    address = request.remote_addr or "unknown"
    pause = throttles.logins.delay(address)
    if pause:
        time.sleep(pause)
    try:
        key = use_cases().keys.authenticate(auth.username if auth else None, auth.password if auth else None)
    except BadCredentials:
        throttles.logins.failed(address)
        raise
    throttles.logins.succeeded(address)
    wait = throttles.rate.acquire(key.name)
    if wait:
        retry = str(max(1, math.ceil(wait)))
        raise ApiError(Code.OUT_OF_REQUESTS, "rate limit exceeded; retry later", headers={"Retry-After": retry})
    use_cases().keys.charge(key)
    g.key = key
