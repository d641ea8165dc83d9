"""``service.harness.isolated``: a server in a network namespace of its own, reached through
127.0.0.1 relays only. The server here echoes whatever it reads, bound inside the namespace."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from service.harness.engines import LOOPBACK, free_port
from service.harness.isolated import main

ECHO = """
import socket, sys, threading
def echo(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    threading.Thread(target=echo, args=(listener.accept()[0],)).start()
"""


@contextmanager
def isolated_echo() -> Iterator[tuple[subprocess.Popen, int]]:
    port = free_port()
    command = [sys.executable, "-m", "service.harness.isolated", "--forward", str(port), "--", sys.executable]
    server = subprocess.Popen([*command, "-c", ECHO, str(port)], start_new_session=True)
    try:
        yield server, port
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _connect(port: int, timeout: float = 30.0) -> socket.socket:
    """A connection that the echo server answers (the relay listens before the server does,
    and a connection it cannot pass on is closed)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection((LOOPBACK, port), timeout=10)
        except ConnectionRefusedError:  # the relay is not listening yet
            sock = None
        if sock is not None:
            try:
                sock.sendall(b"?")
                if sock.recv(1) == b"?":
                    return sock
            except OSError:
                pass
            sock.close()
        if time.monotonic() > deadline:
            raise TimeoutError("the isolated echo server never answered")
        time.sleep(0.1)


def test_the_server_runs_in_a_namespace_of_its_own_and_is_reached_through_the_relay() -> None:
    with isolated_echo() as (server, port), _connect(port) as sock:
        assert os.readlink(f"/proc/{server.pid}/ns/net") != os.readlink("/proc/self/ns/net")
        assert Path(f"/proc/{server.pid}/cmdline").read_text().split("\0")[1] == "-c", "exec'd into the server"
        payload = os.urandom(8 << 20)  # both directions at once, far past the relay's buffer

        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)  # half-closed: the echo must still come back whole

        sender = threading.Thread(target=send)
        sender.start()
        received = bytearray()
        while chunk := sock.recv(1 << 20):
            received += chunk
        sender.join()
        assert bytes(received) == payload


def test_the_relay_ends_with_the_server() -> None:
    with isolated_echo() as (server, port):
        _connect(port).close()
        os.kill(server.pid, signal.SIGKILL)  # the server alone: the relay is its child, not killed here
        server.wait()
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((LOOPBACK, port), timeout=2).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "the relay still listens after the server died"
            time.sleep(0.05)


def test_a_command_is_required() -> None:
    with pytest.raises(SystemExit):
        main(["--forward", str(free_port())])
