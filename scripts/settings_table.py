"""Write the settings table of service/core/config.py into README.md, in place of the old one.

python scripts/settings_table.py          # a test fails until the README's table is this one
"""

from __future__ import annotations

import sys
from pathlib import Path

from service.core.config import settings_table

README = Path(__file__).resolve().parents[1] / "README.md"
HEADER = "| variable [default] | meaning |"


def main() -> int:
    text = README.read_text()
    start = text.index(HEADER)
    end = text.find("\n\n", start)
    README.write_text(text[:start] + settings_table() + (text[end:] if end >= 0 else "\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
