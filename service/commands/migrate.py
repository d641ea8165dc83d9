"""Copy an embedded data directory (LMDB + FAISS + photos) into cluster mode (PostgreSQL + Milvus).

  face-search-migrate --from DATA_DIR   # the cluster from FACE_SEARCH_CATALOG_URL, _MILVUS_URI, _PHOTO_DIR
                      [--sample 20] [--batch 500]   (or: python scripts/migrate.py ...)

Stop the embedded server first (writes it takes meanwhile would be missed; running this
again copies them). Every key (secret hash, quota, requests made), gallery, image, face
and photo keeps its id and name; the embeddings are copied, not recomputed, and reach
Milvus through the outbox, as any write does. Resumable: what was copied is skipped, so
after an interruption run the same command again. At the end it checks, per gallery, that
both sides hold the same images and faces, and that a sample of searches (stored faces as
queries) gives the same best matches on both sides; exit status 1 when they disagree.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

from ..core.config import Settings
from ..core.migration import migration


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", type=Path, required=True, help="the embedded data directory")
    parser.add_argument("--sample", type=int, default=20, help="searches compared per gallery")
    parser.add_argument("--batch", type=int, default=500, help="images copied per transaction")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if not (args.source / "lmdb").is_dir():
        parser.error(f"{args.source} holds no embedded data directory (no lmdb/ folder)")
    with ExitStack() as opened:
        try:
            moving = opened.enter_context(
                migration(args.source, settings.storage, settings.photos_dir, settings.indexing)
            )
        except ValueError as exc:  # the settings name no cluster to copy into
            parser.error(str(exc))
        galleries = moving.galleries()
        if clashes := moving.clashes():
            print(f"the cluster's catalog holds other keys ({', '.join(clashes[:5])}): migrate into an empty one")
            return 1
        moving.copy(args.batch, lambda line: print(line, flush=True))
        disagreements = {gid: moving.compare(gid, args.sample) for gid in sorted(galleries)}
    for gid, problems in disagreements.items():
        verdict = "same" if not problems else "DIFFERENT: " + "; ".join(problems[:3])
        print(f"gallery {gid} ({galleries[gid]}): {verdict}")
    return 1 if any(disagreements.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
