"""The folders read like the architecture: who may import whom (see docs/architecture.md).

Checked twice: statically, over every import statement of every module, and at run time,
by importing the use cases in a fresh interpreter and looking at what got loaded.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live import ROOT

# a layer, and the top-level names its modules must never import
FORBIDDEN = {
    "models": ("index", "service", "scripts", "flask", "werkzeug", "pydantic", "lmdb", "faiss"),
    "index": ("models", "service", "scripts", "flask", "werkzeug", "pydantic", "cv2"),
    "service/core": ("service.api", "scripts", "flask", "werkzeug", "pydantic"),
    "service/api": ("scripts",),
    "scripts": ("service.api",),
}
WEB_FRAMEWORKS = ("flask", "werkzeug", "pydantic")


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


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_module_imports_what_its_layer_may_not(layer: str) -> None:
    modules = sorted((ROOT / layer).rglob("*.py"))
    assert modules, layer
    broken = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in modules
        for name in imported_names(path)
        for forbidden in FORBIDDEN[layer]
        if name == forbidden or name.startswith(forbidden + ".")
    }
    assert not broken, sorted(broken)


def test_loading_every_use_case_loads_no_web_framework() -> None:
    core = sorted(p.stem for p in (ROOT / "service" / "core").glob("*.py") if p.stem != "__init__")
    program = (
        "import importlib, sys\n"
        f"for name in {core!r}: importlib.import_module('service.core.' + name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {WEB_FRAMEWORKS!r}))"
    )
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
