"""Back up the data directory of FACE_SEARCH_DATA_DIR while the server keeps serving, or restore one.

  python scripts/backup.py DEST             # the catalog (compacted) and every photo it names
  python scripts/backup.py --restore SRC    # into an empty FACE_SEARCH_DATA_DIR

The copy is consistent: every image acknowledged before the backup began is in it, with
its photo and metadata. Index files are not copied; a server started on a restored
directory builds them from the catalog. In cluster mode it refuses and says what to run
instead: PostgreSQL's own pg_dump, and the photo folder (docs/operations.md, cluster mode).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stops import stops

from service.core.backup import backup, restore
from service.core.config import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="where to write the backup, or with --restore where it is")
    parser.add_argument("--restore", action="store_true", help="restore the backup in FOLDER instead")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    with stops("stopped", "interrupted: the folder holds an incomplete backup; delete it and start again"):
        if args.restore:
            summary = restore(args.folder, settings)
            print(f"restored {summary.images} images and {summary.photos} photos into {settings.storage.data_dir}")
        else:
            summary = backup(settings, args.folder)
            print(
                f"backed up {summary.images} images and {summary.photos} photos to {args.folder} in "
                f"{summary.seconds}s ({summary.dropped} added meanwhile and deleted before their photo was copied)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
