"""ARCHITECTURE.md names every module under latentkit/ with its job, and no module that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_architecture_lists_every_module_and_no_other():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    section = text.split("## Every module and its job", 1)[1]
    listed = re.findall(r"^- `(latentkit/[\w/]+\.py)`: \S", section, flags=re.M)
    assert len(listed) == len(set(listed)), "a module is listed twice"
    files = {p.relative_to(ROOT).as_posix() for p in (ROOT / "latentkit").rglob("*.py")}
    missing, stale = sorted(files - set(listed)), sorted(set(listed) - files)
    assert not missing, "add to ARCHITECTURE.md ('- `path`: its job'):\n" + "\n".join(missing)
    assert not stale, "ARCHITECTURE.md lists modules that do not exist:\n" + "\n".join(stale)


def test_lazy_public_names_are_visible_to_type_checkers():
    """Every lazy name of ``latentkit/__init__.py`` is also imported under ``if TYPE_CHECKING:``, from its module."""
    import ast

    import latentkit

    tree = ast.parse((ROOT / "latentkit" / "__init__.py").read_text())
    seen: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                seen.update({alias.name: imp.module for alias in imp.names})
    assert seen == latentkit._LAZY
