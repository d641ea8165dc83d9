"""Re-embed a key's gallery with another model pack and swap the new vectors in at once.

  python scripts/reembed.py --key K --pack NAME_OR_DIR [--batch 16]

Runs the new pack over the gallery's stored photos and keeps the vectors aside until
all are done; then one transaction switches the gallery's vectors, pack and index.
Until then the gallery keeps serving the old pack's vectors. Resumable: run the same
command again after an interruption. Afterwards restart the service with
FACE_SEARCH_MODELS set to the new pack, unless the running pack serves it already
(buffalo_s_edgeface serves both itself and buffalo_s): a server refuses a gallery whose
pack its models do not make.

Between a pack and one it serves, a move costs less: buffalo_s to buffalo_s_edgeface runs the
detector (for the stored faces' landmarks) and EdgeFace only, and back runs no model at all.

In cluster mode the same command can run on several machines at once: they share the
gallery's photos batch by batch through leases in the catalog, and one of them swaps.
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from ..core.config import Settings
from ..core.services import build_services
from .stops import stops

RESUME = "interrupted, nothing swapped: run the same command again to resume"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--key", required=True)
    parser.add_argument("--pack", required=True, help="model pack name or directory")
    parser.add_argument("--batch", type=int, default=16, help="photos whose faces are embedded together")
    args = parser.parse_args(argv)

    with stops("stopped, nothing swapped", RESUME), build_services(Settings.from_env()) as services:
        key = services.keys.named(args.key, active=False)
        total = services.catalog.images.gallery(key.gallery).images
        with tqdm(total=total, unit="photo") as bar:
            summary = services.reembedding.run(key, args.pack, args.batch, bar.update)
        serves = services.pack.pack_named(summary.pack) is not None
    then = (
        f"the service's pack {services.pack.name} serves it"
        if serves
        else f"restart the service with FACE_SEARCH_MODELS={args.pack}"
    )
    print(
        f"gallery of {args.key} now in pack {summary.pack}: {summary.images} photos, {summary.faces} faces "
        f"re-embedded, {summary.lost} not found again, {summary.seconds}s; {then}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
