"""model/ and impl/ never import each other (DESIGN section 2)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "lockstep"

FORBIDDEN = {
    "model": ("lockstep.impl", "lockstep.harness"),
    "impl": ("lockstep.model", "lockstep.harness"),
}


def imported_modules(source: str, module: str) -> list[str]:
    """Absolute names of every module imported by `source`, the text of `module`."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(module.split(".")[: -node.level])
                names.append(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                names.append(node.module)
    return names


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_does_not_import_forbidden(layer: str) -> None:
    files = sorted((ROOT / layer).rglob("*.py"))
    assert files, f"no modules found under lockstep/{layer}"
    offenders = [
        f"{module_name(path)} imports {name}"
        for path in files
        for name in imported_modules(path.read_text(), module_name(path))
        if name.startswith(FORBIDDEN[layer])
    ]
    assert not offenders, "layering broken:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    "source",
    ["from lockstep.impl import pathlocks\n", "from ..impl import pathlocks\n",
     "import lockstep.harness.cli\n"],
)
def test_checker_catches_a_forbidden_import(source: str) -> None:
    names = imported_modules(source, "lockstep.model.probe")
    assert any(n.startswith(FORBIDDEN["model"]) for n in names)
