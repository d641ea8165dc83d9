"""Manage API keys, and the secret photo links are signed with, in the catalog the settings name
(FACE_SEARCH_DATA_DIR, or in cluster mode the PostgreSQL of FACE_SEARCH_CATALOG_URL).

Changes take effect on a running server at once: it reads keys and the link secret from the
catalog on every request.

  python scripts/keys.py create [--key K] [--secret S] [--quota N]
  python scripts/keys.py list
  python scripts/keys.py revoke --key K
  python scripts/keys.py set-quota --key K (--quota N | --unlimited) [--reset-usage]
  python scripts/keys.py rotate-link-secret     # every signed photo link made before stops working
"""

from __future__ import annotations

import argparse
import sys

from ..core.config import Settings
from ..core.keys import KeyRing
from ..core.links import PhotoLinks
from ..core.services import catalog_alone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key; generates and prints what is omitted")
    create.add_argument("--key")
    create.add_argument("--secret")
    create.add_argument("--quota", type=int, help="request quota (default: unlimited)")
    commands.add_parser("list", help="list keys with their quota and usage")
    revoke = commands.add_parser("revoke", help="revoke a key; its gallery is kept")
    revoke.add_argument("--key", required=True)
    quota = commands.add_parser("set-quota", help="change a key's request quota")
    quota.add_argument("--key", required=True)
    limit = quota.add_mutually_exclusive_group(required=True)
    limit.add_argument("--quota", type=int)
    limit.add_argument("--unlimited", action="store_true")
    quota.add_argument("--reset-usage", action="store_true", help="also set the key's request count to 0")
    commands.add_parser(
        "rotate-link-secret", help="sign photo links with a new secret: every earlier link stops working"
    )
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    with catalog_alone(settings) as catalog:
        return _run(parser, args, KeyRing(catalog.keys), PhotoLinks(catalog.secrets, settings.api.link_seconds))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, ring: KeyRing, links: PhotoLinks) -> int:
    try:
        if args.command == "rotate-link-secret":
            links.rotate()
            print("photo links are signed with a new secret: every link made before is refused")
        elif args.command == "create":
            if args.quota is not None and args.quota < 0:
                parser.error("--quota must be 0 or more")
            made = ring.create(args.key, args.secret, args.quota)
            limit = "unlimited" if made.record.quota is None else made.record.quota
            print(f"key: {made.record.name}\nsecret: {made.secret}\nquota: {limit}")
        elif args.command == "list":
            print(f"{'key':<32} {'quota':>10} {'used':>10}  state    created")
            for record, used in ring.all():
                state = "revoked" if record.revoked else "active"
                quota_text = "unlimited" if record.quota is None else str(record.quota)
                print(f"{record.name:<32} {quota_text:>10} {used:>10}  {state:<8} {record.created_at}")
        elif args.command == "revoke":
            if not ring.revoke(args.key):
                print(f"no key {args.key!r}", file=sys.stderr)
                return 1
            print(f"revoked {args.key}")
        else:
            new_quota = None if args.unlimited else args.quota
            if not ring.set_quota(args.key, new_quota, args.reset_usage):
                print(f"no key {args.key!r}", file=sys.stderr)
                return 1
            print(f"quota of {args.key}: {new_quota if new_quota is not None else 'unlimited'}")
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
