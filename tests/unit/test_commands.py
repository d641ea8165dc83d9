"""Every operator's command is a console script of the package and a file of scripts/ that
runs the same ``main`` (service/commands/)."""

from __future__ import annotations

import ast
import configparser
import importlib

from tests.live import ROOT


def console_scripts() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(line.replace(" ", "").split("=", 1) for line in lines if not line.lstrip().startswith("#"))


def test_each_command_is_a_console_script_and_a_script_running_its_main() -> None:
    commands = sorted(path.stem for path in (ROOT / "service" / "commands").glob("*.py") if path.stem[0] != "_")
    installed = console_scripts()
    for name in (c for c in commands if c != "stops"):  # stops.py: how every command stops
        target = installed[f"face-search-{name.replace('_', '-')}"]
        assert target == f"service.commands.{name}:main"
        assert callable(importlib.import_module(f"service.commands.{name}").main)
        shim = ast.parse((ROOT / "scripts" / f"{name}.py").read_text())
        imported = {(node.module, alias.name) for node in ast.walk(shim) if isinstance(node, ast.ImportFrom)
                    for alias in node.names}  # fmt: skip
        assert (f"service.commands.{name}", "main") in imported, name
