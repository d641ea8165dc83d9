"""Run a server in a network namespace of its own, reachable from this machine's loopback only.

  python -m service.harness.isolated --forward PORT [--forward PORT ...] -- COMMAND [ARG ...]

Some servers cannot be told which address to listen on: the Milvus 2.3 standalone server
binds its client port, its metrics port and every internal gRPC port on all interfaces,
whatever its ``ip:`` settings say. Started through this, it runs in a new network namespace
that holds nothing but a loopback interface, so whatever it binds is reachable from inside
that namespace only; each ``--forward`` port is then listened on at 127.0.0.1 of this machine
and every connection to it is relayed to the same port on the namespace's loopback. Nothing
of the server is reachable from any other address.

The process becomes ``COMMAND`` (exec): its pid, process group and resources are the
server's, as when it is started bare. The relay is a child forked before the exec, in the
same process group (a SIGKILL of the group ends both) and killed by the kernel when the
server exits (``PR_SET_PDEATHSIG``), so its ports close with the server.

A new network namespace needs CAP_SYS_ADMIN (root) or, for another user, a user namespace of
its own, which most distributions allow; where neither is allowed this exits with status 3
and says so, rather than start the server reachable from the network.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import os
import signal
import socket
import struct
import sys
import threading

LOOPBACK = "127.0.0.1"
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
IFREQ = "16sH22x"  # struct ifreq: the interface's name, then its flags (40 bytes on Linux)
RELAY_BYTES = 1 << 18  # read at a time per direction: a Milvus insert request is a few MB
NOT_ISOLATED = 3  # the exit status when no network namespace can be made


def isolate() -> None:
    """Move this (single-threaded) process into a new network namespace with its loopback up."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0 and libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"no network namespace of its own: {os.strerror(error)}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        _, flags = struct.unpack(IFREQ, fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack(IFREQ, b"lo", 0)))
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))


def relay(listeners: list[socket.socket]) -> None:
    """Relay every connection to one of ``listeners`` (bound outside the namespace) to the same
    port on the namespace's loopback (connected from inside it), until the process is killed."""
    for listener in listeners:
        threading.Thread(target=_accept, args=(listener,), daemon=True).start()
    threading.Event().wait()


def _accept(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_connect, args=(client, port), daemon=True).start()


def _connect(client: socket.socket, port: int) -> None:
    with client:
        try:
            server = socket.create_connection((LOOPBACK, port))
        except OSError:  # not listening yet (starting) or any more: refused, as it would be bare
            return
        with server:
            for sock in (client, server):  # gRPC's small frames must not wait for Nagle's timer
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            back = threading.Thread(target=_pump, args=(server, client), daemon=True)
            back.start()
            _pump(client, server)
            back.join()


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy ``source`` to ``target`` until ``source`` ends; then end ``target``'s writing side,
    so each direction closes on its own (a half-closed connection stays half-open)."""
    buffer = bytearray(RELAY_BYTES)
    view = memoryview(buffer)
    with contextlib.suppress(OSError):
        while count := source.recv_into(buffer):
            target.sendall(view[:count])
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--forward", type=int, action="append", default=[], metavar="PORT")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")
    # in this machine's namespace; SO_REUSEADDR (create_server's default): a server restarted right
    # after a SIGKILL finds its old connections in TIME_WAIT
    listeners = [socket.create_server((LOOPBACK, port), backlog=128) for port in args.forward]
    try:
        isolate()
    except OSError as exc:
        print(f"isolated: {exc}; refusing to start {command[0]} reachable from the network", file=sys.stderr)
        return NOT_ISOLATED
    server = os.getpid()
    if os.fork() == 0:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != server:  # the server exited before the line above took effect
            os._exit(0)
        relay(listeners)
        os._exit(0)
    for listener in listeners:
        listener.close()
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main())
