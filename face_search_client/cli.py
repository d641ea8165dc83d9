"""``face-search``: add, search, list, delete and import photos from the command line.

The server and key come from ``--url``, ``--key`` and ``--secret`` or from the environment
(``FACE_SEARCH_URL``, ``FACE_SEARCH_API_KEY``, ``FACE_SEARCH_API_SECRET``). Answers are
printed as JSON on stdout; refusals go to stderr with the API's code, and exit status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .client import NO_FACE, OUT_OF_REQUESTS, FaceSearchClient, FaceSearchError, Image

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
RATE_LIMIT_RETRIES = 5


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("metadata must be a JSON object")
    return value


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value


def _print(value: Any) -> None:
    plain = _plain(value)
    if isinstance(plain, list):
        plain = [_plain(item) for item in plain]
    print(json.dumps(plain, indent=2, ensure_ascii=False))


def photos_in(folder: Path, recursive: bool) -> list[Path]:
    pattern = folder.rglob("*") if recursive else folder.glob("*")
    return sorted(p for p in pattern if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)


def add_with_retry(client: FaceSearchClient, path: Path, metadata: dict) -> Image:
    """Add a photo, waiting out the rate limit (a spent quota has no Retry-After: not retried)."""
    for attempt in range(RATE_LIMIT_RETRIES + 1):
        try:
            return client.add_image(path, metadata)
        except FaceSearchError as error:
            if error.status_code != OUT_OF_REQUESTS or error.retry_after is None or attempt == RATE_LIMIT_RETRIES:
                raise
            time.sleep(error.retry_after)
    raise AssertionError("unreachable")


def import_folder(client: FaceSearchClient, folder: Path, metadata: dict, workers: int, recursive: bool) -> dict:
    """Add every photo under ``folder`` with its relative path as ``metadata["file"]``."""
    paths = photos_in(folder, recursive)
    summary: dict[str, Any] = {"added": 0, "faces": 0, "no_face": [], "failed": {}}
    with (
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(total=len(paths), unit="photo", desc="import", file=sys.stderr) as bar,
    ):
        futures = {
            pool.submit(add_with_retry, client, path, {**metadata, "file": str(path.relative_to(folder))}): path
            for path in paths
        }
        for future in as_completed(futures):
            name = str(futures[future].relative_to(folder))
            try:
                image = future.result()
                summary["added"] += 1
                summary["faces"] += len(image.faces)
            except FaceSearchError as error:
                if error.status_code == NO_FACE:
                    summary["no_face"].append(name)
                else:
                    summary["failed"][name] = str(error)
            bar.update()
            bar.set_postfix(added=summary["added"], no_face=len(summary["no_face"]), failed=len(summary["failed"]))
    summary["no_face"].sort()
    return summary


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="face-search", description="Add, search, list, delete and import photos.")
    top.add_argument("--url", default=os.environ.get("FACE_SEARCH_URL", "http://127.0.0.1:8000"))
    top.add_argument("--key", default=os.environ.get("FACE_SEARCH_API_KEY", ""))
    top.add_argument("--secret", default=os.environ.get("FACE_SEARCH_API_SECRET", ""))
    commands = top.add_subparsers(dest="command", required=True)

    add = commands.add_parser("add", help="add photos; prints each stored image")
    add.add_argument("files", nargs="+", type=Path)
    add.add_argument("--metadata", type=_json_object, default=None, help="a JSON object for every photo")

    search = commands.add_parser("search", help="search with a photo's largest face")
    search.add_argument("file", type=Path)
    search.add_argument("--top-k", type=int, default=10)
    search.add_argument("--threshold", type=float, default=None)
    search.add_argument("--all-faces", action="store_true", help="search with every face of the photo")

    listing = commands.add_parser("list", help="list images, oldest first")
    listing.add_argument("--offset", type=int, default=0)
    listing.add_argument("--limit", type=int, default=50)

    delete = commands.add_parser("delete", help="delete images by id")
    delete.add_argument("ids", nargs="+", type=int)

    bulk = commands.add_parser("import", help="add every photo in a folder, with a progress bar")
    bulk.add_argument("folder", type=Path)
    bulk.add_argument("--metadata", type=_json_object, default={}, help="a JSON object added to every photo")
    bulk.add_argument("--workers", type=int, default=2, help="requests at once (default 2)")
    bulk.add_argument("--no-recursive", dest="recursive", action="store_false", help="skip sub-folders")
    return top


def run(args: argparse.Namespace, client: FaceSearchClient) -> int:
    if args.command == "add":
        for path in args.files:
            _print(client.add_image(path, args.metadata))
    elif args.command == "search":
        find = client.search_all_faces if args.all_faces else client.search
        _print(find(args.file, top_k=args.top_k, threshold=args.threshold))
    elif args.command == "list":
        _print(client.list_images(args.offset, args.limit))
    elif args.command == "delete":
        _print(client.delete_images(args.ids))
    elif args.command == "import":
        if not args.folder.is_dir():
            print(f"error: {args.folder} is not a folder", file=sys.stderr)
            return 2
        summary = import_folder(client, args.folder, args.metadata, args.workers, args.recursive)
        _print(summary)
        return 1 if summary["failed"] else 0
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    client = FaceSearchClient(args.url, args.key, args.secret)
    try:
        return run(args, client)
    except FaceSearchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
