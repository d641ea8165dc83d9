"""Rate limits, failed-login slow-down, the address guard of images by URL, and logs that
never hold secrets or photos."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import pytest

from service.api.errors import Code, refusal
from service.api.throttle import FailedLogins, RateLimiter
from service.core.errors import UrlUnavailable
from service.core.fetch import allowed, parse_networks, vetted_address
from tests.conftest import SECRET, LiveServer
from tests.photos import b64, package_photo


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_bursts_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.acquire("k") for _ in range(3)] == [0, 0, 0]
    assert limiter.acquire("k") == pytest.approx(0.5)
    assert limiter.acquire("other") == 0, "keys have separate buckets"
    clock.now += 0.5
    assert limiter.acquire("k") == 0
    assert limiter.acquire("k") > 0
    assert RateLimiter(rate=0, burst=1).acquire("k") == 0, "rate 0 turns the limit off"


def test_failed_logins_slow_down_per_address_and_reset() -> None:
    clock = Clock()
    logins = FailedLogins(free=2, window=60, max_delay=1.0, clock=clock)
    delays = []
    for _ in range(8):
        delays.append(logins.delay("10.9.9.9"))
        logins.failed("10.9.9.9")
    assert delays[:2] == [0, 0] and delays[2:] == sorted(delays[2:]) and 0 < delays[2] < delays[4]
    assert delays[-1] == 1.0, "capped"
    assert logins.delay("10.8.8.8") == 0, "other addresses are not slowed"
    clock.now += 61
    assert logins.delay("10.9.9.9") == 0, "failures expire"
    logins.failed("10.9.9.9")
    logins.failed("10.9.9.9")
    logins.failed("10.9.9.9")
    logins.succeeded("10.9.9.9")
    assert logins.delay("10.9.9.9") == 0


@pytest.mark.slow
def test_rate_limit_and_login_slow_down_over_http(tmp_path: Path) -> None:
    env = {"FACE_SEARCH_RATE_LIMIT": "1", "FACE_SEARCH_RATE_BURST": "3"}
    server = LiveServer(tmp_path / "data", env).start()
    try:
        answers = [server.call("GET", "/images") for _ in range(4)]
        assert [a.json()["status_code"] for a in answers[:3]] == [0, 0, 0]
        assert answers[3].status_code == 429 and answers[3].json()["status_code"] == 4
        assert int(answers[3].headers["Retry-After"]) >= 1
        time.sleep(1.1)
        assert server.call("GET", "/images").json()["status_code"] == 0

        timings = []
        for _ in range(8):
            started = time.monotonic()
            assert server.call("GET", "/images", secret="wrong").json()["status_code"] == 5
            timings.append(time.monotonic() - started)
        assert timings[-1] >= 0.2 > timings[0] / 2, timings
    finally:
        server.stop()


@pytest.mark.slow
def test_logs_hold_no_secret_and_no_image(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    server = LiveServer(tmp_path / "data", {"FACE_SEARCH_LOG_LEVEL": "debug"}, log=log).start()
    photo = b64(package_photo("Tom_Hanks_54745.png"))
    try:
        server.call("POST", "/images", json={"image": {"base64": photo, "metadata": {"a": 1}}})
        server.call("POST", "/search", json={"image": {"base64": photo}})
        server.call("POST", "/search", json={"image": {"base64": photo[:-10] + "!!!"}})
        server.call("GET", "/images", secret="a-wrong-secret-xyz")
    finally:
        server.stop()
    text = log.read_text(errors="replace")
    assert "POST /api/v2/face_search/images" in text, "the access log was written"
    for secret in (SECRET, "a-wrong-secret-xyz"):
        assert secret not in text
    assert photo[100:160] not in text and photo[-200:-150] not in text


@pytest.mark.parametrize(
    "address, public",
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("127.0.0.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("192.0.2.10", False),  # documentation
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:10.0.0.1", False),  # a private IPv4 address written as IPv6
    ],
)
def test_only_public_addresses_pass_the_guard_without_an_allow_list(address: str, public: bool) -> None:
    assert allowed(ipaddress.ip_address(address), ()) is public


def test_a_name_is_judged_by_every_address_it_resolves_to_without_connecting() -> None:
    with pytest.raises(UrlUnavailable) as refused:
        vetted_address("localhost", 80, ())
    assert refusal(refused.value).code == Code.URL_UNAVAILABLE and "non-public" in refusal(refused.value).message
    assert vetted_address("localhost", 80, parse_networks("127.0.0.0/8, ::1/128")).is_loopback
