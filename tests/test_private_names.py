"""No module uses another latentkit module's private names (``_x``): neither ``from latentkit.m import _x``
nor attribute access ``m._x`` on an imported latentkit module (``import latentkit.m as m``,
``from latentkit import m``, ``latentkit.m._x``). Function-level and TYPE_CHECKING imports count too."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "latentkit"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` of a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def violations(path: Path, own: str | None = None) -> list[str]:
    """``'<module>: <what>'`` for every private name of another latentkit module used in ``path``."""
    own = own or _module_name(path)
    tree = ast.parse(path.read_text())
    bound: dict[str, str] = {}  # local name -> latentkit module it stands for
    wrong = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("latentkit"):
                    if alias.asname:
                        bound[alias.asname] = alias.name
                    else:
                        bound["latentkit"] = "latentkit"
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("latentkit"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in MODULES:
                    bound[alias.asname or alias.name] = sub
                elif _private(alias.name) and node.module != own:
                    wrong.append(f"{own}: from {node.module} import {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = _dotted(node.value)
            if base is None:
                continue
            head, _, rest = base.partition(".")
            if head not in bound:
                continue
            target = bound[head] + (f".{rest}" if rest else "")
            if target in MODULES and target != own:
                wrong.append(f"{own}: {target}.{node.attr}")
    return wrong


def test_no_module_uses_private_names_of_another():
    wrong = [v for path in sorted(PACKAGE.rglob("*.py")) for v in violations(path)]
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_attribute_access(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from latentkit.latent import prior\nimport latentkit.hub as hub\nimport latentkit.io\n"
                     "from latentkit.checks import _private_thing\n"
                     "def f(p):\n    return prior._STATS_CHUNK, hub._urlopen, latentkit.io._x, p._matrices, hub.__name__\n")
    found = violations(probe, own="latentkit.latent.probe")
    assert found == ["latentkit.latent.probe: from latentkit.checks import _private_thing",
                     "latentkit.latent.probe: latentkit.latent.prior._STATS_CHUNK",
                     "latentkit.latent.probe: latentkit.hub._urlopen",
                     "latentkit.latent.probe: latentkit.io._x"]
