"""Every add makes its photo file, the file's directory entry and its catalog commit durable
before the answer leaves: checked on a real server's system calls, traced by strace."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from service.harness.live import LiveServer
from service.harness.photos import b64, package_photo

CALL = re.compile(r"^\d+ +(\w+)\((.*)\) += -?\d+")
FD = re.compile(r"^\d+<([^>]*)>")  # strace -y writes a descriptor with its path
ORDER = ["photo fsync", "rename", "directory fsync", "catalog fsync", "answer"]


def _steps(trace: Path) -> dict[str, int]:
    """Where in the trace the first add's durability steps and its answer happened."""
    steps: dict[str, int] = {}
    for position, line in enumerate(trace.read_text(errors="replace").splitlines()):
        match = CALL.match(line)
        if not match:
            continue
        call, arguments = match[1], match[2]
        descriptor = FD.match(arguments)
        path = descriptor[1] if descriptor else ""
        if call in ("fsync", "fdatasync"):
            if "/photos/" in path and path.endswith(".tmp"):
                steps.setdefault("photo fsync", position)
            elif path.endswith("/photos/1"):
                steps.setdefault("directory fsync", position)
            elif path.endswith("/lmdb/data.mdb") and "photo fsync" in steps:
                steps.setdefault("catalog fsync", position)
        elif call.startswith("rename") and "/photos/1/" in arguments and "photo fsync" in steps:
            steps.setdefault("rename", position)
        elif (
            call in ("sendto", "sendmsg", "write", "writev") and "HTTP/1.1 200" in arguments and "photo fsync" in steps
        ):
            steps.setdefault("answer", position)
    return steps


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (make test installs it as root)")
def test_an_add_is_durable_before_it_is_answered(tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    calls = "trace=fsync,fdatasync,rename,renameat,renameat2,sendto,sendmsg,write,writev"
    tracer = ["strace", "-f", "-y", "-qq", "-s", "32", "-e", calls, "-o", str(trace)]
    server = LiveServer(tmp_path / "data", {"FACE_SEARCH_WORKERS": "1"}, wrap=tracer).start(timeout=120)
    try:
        answer = server.call("POST", "/images", json={"image": {"base64": b64(package_photo("yaoming.jpg"))}})
        assert answer.status_code == 200
    finally:  # stop gunicorn itself: strace only passes signals on to what it traces
        master = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True).stdout
        for pid in master.split():
            subprocess.run(["kill", f"-{int(signal.SIGTERM)}", pid], check=False)
        server.process.wait(timeout=60)
    steps = _steps(trace)
    assert all(step in steps for step in ORDER), steps
    assert [steps[step] for step in ORDER] == sorted(steps[step] for step in ORDER), steps
