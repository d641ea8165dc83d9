"""Index rebuilds as an operator runs them: one key's gallery, or all, or only those that drifted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from index.errors import IndexBusyError
from index.vectors import RebuildResult

from .errors import UnknownKey
from .services import Services


@dataclass(frozen=True)
class Outcome:
    key: str
    gallery: int
    reason: str | None  # why it was rebuilt; None when --if-needed found nothing to do
    result: RebuildResult | None = None
    busy: bool = False


def galleries_of(services: Services, key: str | None) -> dict[int, str]:
    """Gallery id to key name: the one key's, or every gallery's when ``key`` is None."""
    if key is None:
        return {gid: gallery.key for gid, gallery in services.catalog.images.galleries().items()}
    record = services.catalog.keys.get(key)
    if record is None:
        raise UnknownKey(f"no key named {key!r}")
    return {record.gallery: key}


def rebuild_indexes(
    services: Services,
    key: str | None,
    if_needed: bool = False,
    wait: bool = False,
    progress: Callable[[str], None] = print,
) -> list[Outcome]:
    """Rebuild the chosen galleries' indexes; a running server adopts each at its next search."""
    outcomes = []
    for gid, name in galleries_of(services, key).items():
        reason = services.indexes.rebuild_reason(gid)
        if if_needed and reason is None:
            outcomes.append(Outcome(name, gid, None))
            continue
        reason = reason or "asked for"
        progress(f"key {name} (gallery {gid}): rebuilding: {reason}")
        try:
            result = services.indexes.rebuild(gid, wait, progress)
        except IndexBusyError as exc:
            progress(str(exc))
            outcomes.append(Outcome(name, gid, reason, busy=True))
            continue
        outcomes.append(Outcome(name, gid, reason, result))
    return outcomes
