"""Download a photo by URL without letting a request reach internal services.

Every hop (the URL and each redirect, at most three) is resolved once, every address it
resolves to is checked against the guard, and the connection goes to that checked
address (TLS still verifies the host name), so neither DNS rebinding nor a redirect can
lead to a private, loopback, link-local or multicast address unless the operator allowed
its network. Timeouts, a size cap and a content-type check bound what one URL can cost.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import urllib3

from .errors import UrlUnavailable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class FetchSettings:
    allow_networks: tuple[Network, ...] = ()
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 3
    schemes: tuple[str, ...] = field(default=("http", "https"))


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"127.0.0.0/8, ::1/128"`` to networks: the allow-list setting."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


def is_public(address: Address) -> bool:
    """Globally routable unicast (IANA's special-purpose registries): no private, loopback,
    link-local, carrier-grade NAT (100.64.0.0/10), documentation or reserved address."""
    return address.is_global and not address.is_multicast


def allowed(address: Address, allow: Sequence[Network]) -> bool:
    """Public addresses pass; any other only inside an allowed network."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return is_public(address) or any(address in network for network in allow)


def resolve(host: str, port: int) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UrlUnavailable(f"cannot resolve {host!r}") from exc
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))


def vetted_address(host: str, port: int, allow: Sequence[Network]) -> Address:
    """The address to connect to, after checking every address the name resolves to."""
    addresses = resolve(host, port)
    refused = [str(a) for a in addresses if not allowed(a, allow)]
    if refused or not addresses:
        raise UrlUnavailable(f"{host!r} resolves to a non-public address ({', '.join(refused)})")
    return addresses[0]


def _pool(scheme: str, host: str, address: Address, port: int, settings: FetchSettings) -> urllib3.HTTPConnectionPool:
    timeout = urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout)
    if scheme == "https":
        return urllib3.HTTPSConnectionPool(
            str(address), port, timeout=timeout, server_hostname=host, assert_hostname=host, retries=False
        )
    return urllib3.HTTPConnectionPool(str(address), port, timeout=timeout, retries=False)


def fetch_image(url: str, settings: FetchSettings) -> bytes:
    """The body of an image URL; code 2 for anything that keeps it from being fetched."""
    for _ in range(settings.max_redirects + 1):
        parts = urlsplit(url)
        if parts.scheme not in settings.schemes or not parts.hostname:
            raise UrlUnavailable("the url must be an absolute http or https url")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise UrlUnavailable("the url has an invalid port") from exc
        address = vetted_address(parts.hostname, port, settings.allow_networks)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        pool = _pool(parts.scheme, parts.hostname, address, port, settings)
        try:
            response = pool.urlopen(
                "GET", path, headers={"Host": host_header, "Accept": "image/*"}, redirect=False, preload_content=False
            )
            try:
                if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                    url = urljoin(url, response.headers["Location"])
                    continue
                return _read_body(response, settings)
            finally:
                response.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise UrlUnavailable(f"cannot download the url ({type(exc).__name__})") from exc
        finally:
            pool.close()
    raise UrlUnavailable(f"more than {settings.max_redirects} redirects")


def _read_body(response: urllib3.BaseHTTPResponse, settings: FetchSettings) -> bytes:
    if response.status != 200:
        raise UrlUnavailable(f"the url answered HTTP {response.status}")
    kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if not (kind.startswith("image/") or kind == "application/octet-stream"):
        raise UrlUnavailable(f"the url is not an image (content type {kind or 'missing'!r})")
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > settings.max_bytes:
        raise UrlUnavailable(f"the image is larger than {settings.max_bytes} bytes")
    body = bytearray()
    for chunk in response.stream(65536):
        body += chunk
        if len(body) > settings.max_bytes:
            raise UrlUnavailable(f"the image is larger than {settings.max_bytes} bytes")
    return bytes(body)
