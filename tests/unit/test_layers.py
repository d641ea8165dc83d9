"""The folders read like the architecture: who may import whom (docs/architecture.md).

Checked twice: statically, over every import statement of every module, and at run time,
by importing the use cases in a fresh interpreter and looking at what got loaded. The
storage seam is checked the same way: the use cases and the HTTP layer see storage only
through the protocols, each backend sees the others only through them, and nothing above
the seam asks which backend is behind it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live import ROOT

STORAGE_LIBRARIES = ("lmdb", "faiss", "psycopg", "psycopg_pool", "pymilvus")
# a layer, and the top-level names its modules must never import
OUTER = ("service.commands", "service.harness", "tests", "scripts")  # what nothing of the service proper imports
FORBIDDEN = {
    "models": ("index", "service", "scripts", "tests", "flask", "werkzeug", "pydantic", *STORAGE_LIBRARIES),
    "index": ("models", "service", "scripts", "tests", "flask", "werkzeug", "pydantic", "cv2"),
    "service/core": ("service.api", *OUTER, "flask", "werkzeug", "pydantic", *STORAGE_LIBRARIES),
    "service/api": ("index", *OUTER, *STORAGE_LIBRARIES),
    # the operator's commands are a layer over the use cases; the harness drives the whole service
    "service/commands": ("service.api", "index", "tests", "scripts", *STORAGE_LIBRARIES),
    "service/harness": ("service.commands", "tests", "scripts"),
    # scripts reach shared helpers through service.harness, never through the tests; and the tests
    # run a script as a command (its file, or its console script), never by importing its insides
    "scripts": ("service.api", "tests"),
    "tests": ("scripts",),
}
# what a layer may import of a name it is forbidden: the scripts, like the client, read the API's paths,
# and the codes its answers carry
ALLOWED = {"scripts": ("service.api.paths", "service.api.errors")}
WEB_FRAMEWORKS = ("flask", "werkzeug", "pydantic")
# what of index/ the use cases may use: the protocols, the values that cross the seam (records, the
# filter tree of a scope), the factory
SEAM = ("index.backend", "index.catalog", "index.vectors", "index.records", "index.filters", "index.errors")
# each backend's package, and the modules of index/ all of them may share
BACKENDS = ("index/lmdb", "index/postgres", "index/faiss", "index/milvus")
SHARED = (
    "index.catalog",
    "index.vectors",
    "index.records",
    "index.filters",
    "index.errors",
    "index.locks",
    "index.persons",
)
# attributes that say which backend is behind the seam, which nothing above it may ask
BACKEND_QUESTIONS = ("cluster", "catalog_url", "milvus_uri")


def modules(folder: str) -> list[Path]:
    found = sorted((ROOT / folder).rglob("*.py"))
    assert found, folder
    return found


def imported_names(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names, with relative imports resolved."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return names


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_module_imports_what_its_layer_may_not(layer: str) -> None:
    broken = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in modules(layer)
        for name in imported_names(path)
        if under(name, FORBIDDEN[layer]) and not under(name, ALLOWED.get(layer, ()))
    }
    assert not broken, sorted(broken)


# a change to the module search path, in code or in a program a test or script runs
SYS_PATH_EDIT = re.compile(r"sys\.path\.(?:insert|append|extend|remove)\b|sys\.path\s*(?:\+?=|\[)")


def test_nothing_edits_the_module_search_path() -> None:
    """Every module is reached through the installed packages (make install), never by adding
    a folder to ``sys.path``."""
    edits = {
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("service", "index", "models", "scripts", "tests", "face_search_client")
        for path in modules(folder)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if SYS_PATH_EDIT.search(line) and path != Path(__file__)
    }
    assert not edits, sorted(edits)
    assert SYS_PATH_EDIT.search("sys.path.insert(0, 'scripts')") and SYS_PATH_EDIT.search("sys.path[:0] = [x]")


def test_the_use_cases_see_storage_only_through_the_seam() -> None:
    broken = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in modules("service/core")
        for name in imported_names(path)
        if under(name, ("index",)) and not under(name, SEAM)
    }
    assert not broken, sorted(broken)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_backend_sees_the_others_only_through_the_protocols(backend: str) -> None:
    """The vector backends depend on the catalog protocols, never on a catalog backend (and the
    other way round); only index/backend.py, the factory, names the backends."""
    own = backend.replace("/", ".")
    broken = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in modules(backend)
        for name in imported_names(path)
        if under(name, ("index",)) and not under(name, (own, *SHARED))
    }
    assert not broken, sorted(broken)


@pytest.mark.parametrize("layer", ["service/core", "service/api", "service/commands"])
def test_nothing_above_the_seam_asks_which_backend_is_behind_it(layer: str) -> None:
    """Use cases and the HTTP layer behave the same on every backend: what differs is a
    protocol member's business (bulk jobs, backups, readiness checks). The settings check
    their own consistency (``StorageSettings.problem``)."""
    asked = {
        f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}"
        for path in modules(layer)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr in BACKEND_QUESTIONS
    }
    assert not asked, sorted(asked)


def test_loading_every_use_case_loads_no_web_framework() -> None:
    core = sorted(p.stem for p in (ROOT / "service" / "core").glob("*.py") if p.stem != "__init__")
    program = (
        "import importlib, sys\n"
        f"for name in {core!r}: importlib.import_module('service.core.' + name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {WEB_FRAMEWORKS!r}))"
    )
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_the_client_reads_of_the_service_only_where_the_api_lives() -> None:
    """face_search_client is what a user's program calls the service with: of the service it
    reads the API's paths alone (service/api/paths.py), which import nothing."""
    broken = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in modules("face_search_client")
        for name in imported_names(path)
        if under(name, ("service", "index", "models", "scripts")) and not under(name, ("service.api.paths",))
    }
    assert not broken, sorted(broken)
    assert not imported_names(ROOT / "service" / "api" / "paths.py")
