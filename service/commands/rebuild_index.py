"""Rebuild galleries' indexes from the catalog while the service keeps serving them.

  python scripts/rebuild_index.py --key K            # one key's gallery
  python scripts/rebuild_index.py --all [--if-needed]

The IVF is retrained on the gallery's live vectors and every vector re-added; the new
index is written beside the old one and a running server swaps it in at its next
search, with the writes made meanwhile. ``--if-needed`` (for a nightly cron job) skips
galleries whose index is fine: right kind for their size, churn since training within
FACE_SEARCH_REBUILD_CHURN. A rebuild already running on a gallery is left to finish.
Exit status: 0 done, 1 bad arguments, 3 a gallery was busy.

In cluster mode the index is Milvus's, which builds each sealed segment's index by itself:
a rebuild applies the gallery's outbox, flushes and compacts its collection (deleted rows
dropped, segments merged and re-indexed) and reports it; ``--if-needed`` finds nothing to do.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from ..core.config import Settings
from ..core.errors import UnknownKey
from ..core.services import build_services
from .stops import EXIT_BUSY


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--key", help="rebuild this key's gallery")
    which.add_argument("--all", action="store_true", help="rebuild every gallery")
    parser.add_argument("--if-needed", action="store_true", help="only galleries whose index drifted")
    parser.add_argument("--wait", action="store_true", help="wait for a running rebuild instead of skipping")
    parser.add_argument("--threads", type=int, help="FAISS threads (default FACE_SEARCH_REBUILD_THREADS)")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    if args.threads:
        settings = replace(settings, index=replace(settings.index, rebuild_threads=args.threads))
    services = build_services(settings)
    try:
        outcomes = services.maintenance.rebuild_indexes(
            args.key, args.if_needed, args.wait, lambda line: print(line, flush=True)
        )
    except UnknownKey as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        services.close()
    print(f"{'key':<32} {'gallery':>7} {'kind':<5} {'vectors':>10} {'lists':>6} {'seconds':>8}  reason")
    for outcome in outcomes:
        result = outcome.result
        if result is None:
            state = "busy" if outcome.busy else "ok"
            print(f"{outcome.key:<32} {outcome.gallery:>7} {state:<5} {'':>10} {'':>6} {'':>8}  {outcome.reason or ''}")
            continue
        print(
            f"{outcome.key:<32} {outcome.gallery:>7} {result.kind:<5} {result.vectors:>10} {result.lists:>6} "
            f"{result.seconds:>8.1f}  {outcome.reason}"
        )
    return EXIT_BUSY if any(outcome.busy for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
