"""The address guard of images by URL: which addresses pass, judged without connecting."""

from __future__ import annotations

import ipaddress

import pytest

from service.api.errors import Code, answer_to
from service.core.errors import UrlUnavailable
from service.core.fetch import allowed, parse_networks, vetted_address


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
    assert answer_to(refused.value).code == Code.URL_UNAVAILABLE and "non-public" in answer_to(refused.value).message
    assert vetted_address("localhost", 80, parse_networks("127.0.0.0/8, ::1/128")).is_loopback
