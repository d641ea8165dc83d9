"""How a long-running script stops: one message and exit status per way, for every script.

A script's work is resumable (imports, re-embeddings), so each message says what was kept
and that the same command picks up where it stopped.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from models.packs import ModelPackError

from ..core.errors import GalleryBusy, ServiceError

EXIT_BUSY = 3  # another process is rebuilding or re-embedding the gallery
EXIT_INTERRUPTED = 130


@contextmanager
def stops(stopped: str, interrupted: str) -> Iterator[None]:
    """Run the script's work; a refusal prints ``stopped: why`` (exit 1), Ctrl-C ``interrupted``."""
    try:
        yield
    except GalleryBusy as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(EXIT_BUSY) from None
    except (ServiceError, ModelPackError) as exc:
        print(f"{stopped}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
