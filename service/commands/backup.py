"""Back up the catalog and the photos while the service keeps serving, or restore them.

  python scripts/backup.py DEST             # the catalog and every photo it names
  python scripts/backup.py --restore SRC    # into an empty catalog and photo folder

The catalog is the one the settings name: the LMDB of FACE_SEARCH_DATA_DIR, or in cluster
mode the PostgreSQL database of FACE_SEARCH_CATALOG_URL (with the photos of
FACE_SEARCH_PHOTO_DIR). The copy is consistent: every image acknowledged before the backup
began is in it, with its photo and metadata. Vector indexes are not copied; the restore
builds them from the restored catalog (in cluster mode, Milvus collections of its own).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.backup import backup, restore
from ..core.config import Settings
from .stops import stops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="where to write the backup, or with --restore where it is")
    parser.add_argument("--restore", action="store_true", help="restore the backup in FOLDER instead")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    with stops("stopped", "interrupted: the folder holds an incomplete backup; delete it and start again"):
        if args.restore:
            summary = restore(args.folder, settings)
            print(f"restored {summary.images} images and {summary.photos} photos")
        else:
            summary = backup(settings, args.folder)
            print(
                f"backed up {summary.images} images and {summary.photos} photos to {args.folder} in "
                f"{summary.seconds}s ({summary.dropped} added meanwhile and deleted before their photo was copied)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
