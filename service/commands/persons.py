"""Group a key's faces into persons now, in this process (a grouping run, as a server's job runs it).

  face-search-persons group --key K [--full] [--wait]     (or: python scripts/persons.py ...)

A run looks at the faces added since the last run and at the faces near them (``--full``: at
every face), and commits what it groups a batch at a time, never undoing a user's edit; a
run stopped at any point (Ctrl-C, SIGKILL) keeps what it committed, and the next run goes
on from there. It runs at a lower CPU priority, like a server's. When another process runs
the gallery's job already, the script says so and exits 3 (``--wait``: waits for it to end).
Prints one JSON line at the end: the job, the run's seconds and its peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

from tqdm import tqdm

from ..core.config import Settings
from ..core.jobs import NICE
from ..core.services import build_services
from .stops import EXIT_BUSY, stops

WAIT_SECONDS = 2.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    group = commands.add_parser("group", help="group the key's faces into persons now")
    group.add_argument("--key", required=True)
    group.add_argument("--full", action="store_true", help="look at every face, not only the new ones")
    group.add_argument("--wait", action="store_true", help="wait for a run another process has under way")
    args = parser.parse_args(argv)

    os.nice(NICE)
    started = time.monotonic()
    with build_services(Settings.from_env()) as services, stops("grouping stopped", "grouping interrupted"):
        (gid,) = services.maintenance.galleries_of(args.key)
        with tqdm(unit="step", desc=f"grouping {args.key}", file=sys.stderr) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            job = services.jobs.run_here(gid, args.full, progress)
        while not job.ended and args.wait:
            time.sleep(WAIT_SECONDS)
            job = services.jobs.get(gid, job.id)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({**job.__dict__, "seconds": round(time.monotonic() - started, 1), "peak_memory_bytes": peak}))
    if not job.ended:
        print(f"job {job.id} is running in another process", file=sys.stderr)
        return EXIT_BUSY
    return 0 if job.state == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
