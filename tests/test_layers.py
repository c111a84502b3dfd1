"""The import direction (floor, rooms, roof), held by an AST walk over every module: top-level and lazy imports.

- the floor (errors, registry, value parsing, records, paths) imports nothing of ours but the floor;
- kernels import nothing of ours; extensions import only the floor and kernels; reports only the floor and reports;
- nothing imports the CLI (the roof);
- no module imports another module's private name (`from x import _y`).

What the tree breaks today is listed in KNOWN_DEBT (issue 35 removes it as the rooms are split). The walk must find
exactly that list: a new violation fails, and so does a fixed one left on the list, so the list stays true.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("harness", "extensions", "kernels", "evals", "reports")
FLOOR = {"harness.errors", "harness.registry", "harness.config", "harness.records", "harness.paths"}
ALLOWED = {  # room → what it may import of ours (besides itself)
    "kernels": set(),
    "extensions": FLOOR | {"kernels"},
    "reports": FLOOR,
}
ROOF = "harness.cli"

KNOWN_DEBT: set = set()


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports(source: str) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import of ours in `source`, however deeply nested."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] in OURS]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] in OURS:
            out.append((node.module, [a.name for a in node.names]))
    return out


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _allowed(module: str, target: str) -> bool:
    room = module.split(".")[0]
    if module in FLOOR:
        return target in FLOOR
    if room in ALLOWED:
        return target.split(".")[0] == room or any(target == a or target.startswith(a + ".") for a in ALLOWED[room])
    return True


def violations(module: str, source: str) -> set[tuple[str, str]]:
    """(module, the module or private name it should not import) for one module's source."""
    found = set()
    for target, names in _imports(source):
        if _in(target, ROOF) and not _in(module, ROOF):
            found.add((module, ROOF))
        elif not _allowed(module, target):
            found.add((module, target))
        found |= {(module, n) for n in names if n.startswith("_") and not n.startswith("__") and target != module}
    return found


def _tree() -> dict[str, str]:
    return {_module(p): p.read_text() for pkg in OURS for p in (ROOT / pkg).rglob("*.py")}


def test_the_tree_keeps_its_layers():
    found = set()
    for module, source in _tree().items():
        found |= violations(module, source)
    new, fixed = sorted(found - KNOWN_DEBT), sorted(KNOWN_DEBT - found)
    assert not new, f"imports against the layers: {new}"
    assert not fixed, f"fixed, so strike them from KNOWN_DEBT: {fixed}"


def test_a_planted_violation_is_caught():
    assert violations("kernels.spec", "def f():\n    from harness.errors import UserError\n") == \
        {("kernels.spec", "harness.errors")}
    assert violations("harness.errors", "import harness.runners\n") == {("harness.errors", "harness.runners")}
    assert violations("reports.html", "from extensions import EXTENSIONS\n") == {("reports.html", "extensions")}
    assert violations("harness.sweep", "from harness.cli import main\n") == {("harness.sweep", ROOF)}
    assert violations("harness.sweep", "from harness.memory import _meta_model\n") == \
        {("harness.sweep", "_meta_model")}
    assert violations("extensions.rope", "from harness.support import x\n") == \
        {("extensions.rope", "harness.support")}
