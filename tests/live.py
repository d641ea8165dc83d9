"""What the tests of the HTTP API share: the names they check answers by, spelt out, and a
raw socket for requests no client library would send. The live server they test against is
service/harness/live.py's."""

from __future__ import annotations

import base64
import json
import socket
from dataclasses import dataclass
from pathlib import Path

from service.harness.live import KEY, SECRET

ROOT = Path(__file__).resolve().parents[1]
OTHER_KEY, OTHER_SECRET = "other-key", "other-secret"
API = "/api/v2/face_search"  # spelt out, not taken from service/api/paths.py: a path the service moves fails


# The names under which the vendor's docs give an answer's code and message, as deployed clients
# read them: spelt out here, not taken from the service, so that a name it gets wrong fails.
CODE_PAIRS = (("status_code", "message"), ("errorCode", "error_message"), ("invalidCode", "invalidMessage"))


def code_of(body: dict) -> int:
    """The answer's code, once every pair of names is seen to carry the same code and message."""
    carried = {(body[code], body[message]) for code, message in CODE_PAIRS}
    assert len(carried) == 1, f"the pairs of names disagree: {body}"
    return body["status_code"]


def basic(key: str = KEY, secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()}


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def raw_http(port: int, request: bytes, timeout: float = 60.0) -> RawAnswer:
    """Send ``request`` byte for byte (headers as a client library wrote them, malformed ones
    included) and read one answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", 0))
        while len(body) < length and (chunk := sock.recv(65536)):
            body += chunk
    return RawAnswer(int(lines[0].split()[1]), headers, body)
