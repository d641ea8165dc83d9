"""Add a folder tree of photos to a key's gallery, as POST /images would, without HTTP.

  python scripts/import_folder.py DIR --key K [--metadata-from-path] [--batch 16] [--lease-seconds 300]

Photos are detected one by one and the faces of a batch of photos embedded in one model
call. Every photo is remembered by its content hash, so an interrupted import (Ctrl-C,
kill, crash) is resumed by running the same command again: nothing is added twice. A
running server sees the new photos at its next search. With ``--metadata-from-path``
each image gets ``{"path": "<relative path>", "folder": "<parent folder>"}``.
Ends with a summary: added, no face, unreadable, already imported.

In cluster mode, run the same command on as many machines as you like (the folder on a
shared filesystem): they share the job, each claiming batches through the catalog, and a
killed worker's batch goes to another once its lease (``--lease-seconds``) runs out. Each
prints the summary of its own part.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ..core.bulk_import import LEASE_SECONDS, photo_files
from ..core.config import Settings
from ..core.services import build_services
from .stops import stops

RESUME = "interrupted: run the same command again to resume"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--key", required=True)
    parser.add_argument("--metadata-from-path", action="store_true", help="store each photo's relative path")
    parser.add_argument("--batch", type=int, default=16, help="photos whose faces are embedded together")
    parser.add_argument(
        "--lease-seconds", type=float, default=LEASE_SECONDS, help="cluster mode: how long a claimed batch stays ours"
    )
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    if args.batch < 1:
        parser.error("--batch must be 1 or more")

    # a gallery of another pack, a full disk: nothing of the photo at hand was stored
    with stops("stopped", RESUME), build_services(Settings.from_env()) as services:
        key = services.keys.named(args.key)
        with tqdm(total=len(photo_files(args.folder)), unit="photo") as bar:
            summary = services.importer.run(
                key, args.folder, args.metadata_from_path, args.batch, bar.update, args.lease_seconds
            )
    print(summary.line())
    for path in summary.unreadable:
        print(f"unreadable: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
