"""The docs say what the code does: the tables the code can make are the code's, checked here.

``UPDATE_DOCS=1 .venv/bin/python -m pytest tests/unit/test_docs.py`` writes them in place. A
generated table runs from its header line to the next blank line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from service.api.errors import codes_table
from service.core.config import settings_table
from tests.live import ROOT

GENERATED: dict[str, tuple[Path, Callable[[], str]]] = {
    "codes": (ROOT / "docs" / "api.md", codes_table),
    "settings": (ROOT / "docs" / "operations.md", settings_table),
}


def replace_table(text: str, table: str) -> str:
    """``text`` with the table that starts with ``table``'s header line replaced by ``table``."""
    header = table.split("\n", 1)[0]
    start = text.index(header)
    end = text.find("\n\n", start)
    return text[:start] + table + (text[end:] if end >= 0 else "\n")


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_a_generated_table_in_the_docs_is_the_one_the_code_makes(name: str) -> None:
    path, make = GENERATED[name]
    text, table = path.read_text(), make()
    if os.environ.get("UPDATE_DOCS"):
        path.write_text(text := replace_table(text, table))
    assert table in text, f"the {name} table of {path.relative_to(ROOT)} is stale: run UPDATE_DOCS=1 on {__file__}"
